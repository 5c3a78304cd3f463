"""Linear equating of sentence scores (engine/scorers/equating.py)."""
import numpy as np
import pytest

from saywell.engine.scorers.equating import equate, fit_equating

ASPECTS = ("accuracy", "fluency")


def shrunk_predictions(n=400, seed=0):
    """Labels spread like speechocean762's; predictions pulled toward the middle, as a squared-error fit is."""
    rng = np.random.default_rng(seed)
    labels = np.clip(rng.normal(7.6, 1.7, size=(n, 2)), 0, 10)
    predicted = 7.6 + 0.6 * (labels - 7.6) + rng.normal(0, 0.5, size=(n, 2))
    return predicted, labels


def test_equating_gives_the_predictions_the_labels_mean_and_spread_and_keeps_their_order():
    predicted, labels = shrunk_predictions()
    table = fit_equating(predicted, labels, ASPECTS)
    assert [row["aspect"] for row in table] == list(ASPECTS)
    mapped = equate(predicted, table)
    np.testing.assert_allclose(mapped.mean(axis=0), labels.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(mapped.std(axis=0), labels.std(axis=0), atol=0.05)
    for k in range(2):
        assert np.corrcoef(mapped[:, k], labels[:, k])[0, 1] == pytest.approx(
            np.corrcoef(predicted[:, k], labels[:, k])[0, 1], abs=0.005)
    # the top of the scale: learners the labels put at 9.5 or more are no longer pulled down to the middle
    top = labels[:, 0] >= 9.5
    assert predicted[top, 0].mean() < labels[top, 0].mean() - 0.5
    assert abs(mapped[top, 0].mean() - labels[top, 0].mean()) < abs(predicted[top, 0].mean() - labels[top, 0].mean())


def test_equate_clips_to_the_scale_and_leaves_scores_alone_without_a_table():
    table = [{"aspect": a, "from_mean": 5.0, "from_sd": 1.0, "to_mean": 5.0, "to_sd": 3.0} for a in ASPECTS]
    np.testing.assert_allclose(equate(np.array([[9.0, 1.0], [5.0, 6.0]]), table), [[10.0, 0.0], [5.0, 8.0]])
    scores = np.array([8.1, 3.2])
    assert equate(scores, None) is not None and np.array_equal(equate(scores, None), scores)
    with pytest.raises(ValueError, match="2 aspects"):
        equate(np.zeros(3), table)
    assert np.array_equal(equate(scores, table, ASPECTS), equate(scores, table))
    with pytest.raises(ValueError, match="not the scores'"):  # a table in another order is refused
        equate(scores, table, tuple(reversed(ASPECTS)))


def test_fitting_refuses_mismatched_or_constant_predictions():
    predicted, labels = shrunk_predictions(10)
    with pytest.raises(ValueError, match="matching"):
        fit_equating(predicted[:5], labels, ASPECTS)
    predicted[:, 1] = 7.0
    with pytest.raises(ValueError, match="fluency"):
        fit_equating(predicted, labels, ASPECTS)
