"""The word trees: exported trees predict exactly what scikit-learn fitted, survive a save/load round trip,
learn word accuracy and stress from features, and blend into the network's word scores."""
import numpy as np
import pytest

pytest.importorskip("sklearn", reason="fitting word trees needs the `train` extra (scikit-learn)")
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor  # noqa: E402

from saywell.engine.features.model_inputs import ModelInputs  # noqa: E402
from saywell.engine.scorers.word_trees import BOOSTING, TreeEnsemble, fit_word_trees, load_word_trees, word_trees_path  # noqa: E402


def noisy_table(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[rng.random(x.shape) < 0.03] = np.nan  # missing values must follow the fitted side
    y = 2 * np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) ** 2 + rng.normal(scale=0.3, size=n)
    return x, y


def test_exported_regressor_and_classifier_predict_what_sklearn_fitted():
    x, y = noisy_table()
    regressor = HistGradientBoostingRegressor(**BOOSTING).fit(x, y)
    classifier = HistGradientBoostingClassifier(**BOOSTING).fit(x, y > 1)
    assert np.abs(TreeEnsemble.from_sklearn(regressor).predict(x) - regressor.predict(x)).max() < 1e-9
    assert np.abs(TreeEnsemble.from_sklearn(classifier).predict(x) - classifier.predict_proba(x)[:, 1]).max() < 1e-9


def utterances(n, seed=0):
    """Word accuracy follows the first scalar; a stress error (two or more experts) the second."""
    rng = np.random.default_rng(seed)
    inputs, targets = [], []
    for _ in range(n):
        words = int(rng.integers(3, 9))
        scalars = rng.normal(size=(words, 5)).astype(np.float32)
        encoder = rng.normal(size=(words, 8)).astype(np.float32)
        sentence = np.concatenate([rng.normal(size=3), rng.normal(size=16)]).astype(np.float32)  # 3 + 2 * 8
        accuracy = np.clip(7 + 2 * scalars[:, 0], 0, 10)
        experts_hearing_error = np.where(scalars[:, 1] > 1.0, 3, 0)
        stress = 10.0 - experts_hearing_error  # the experts' mean on the 10/5 scale
        inputs.append(ModelInputs(scalars, encoder, sentence))
        targets.append(np.stack([accuracy, stress, accuracy], axis=1).astype(np.float32))
    return inputs, targets


def test_trees_learn_accuracy_and_stress_and_round_trip(tmp_path):
    inputs, targets = utterances(400)
    trees = fit_word_trees(inputs[:300], targets[:300])
    held_in, held_truth = inputs[300:], np.concatenate(targets[300:])
    predicted = np.concatenate([trees.predict(i) for i in held_in])
    assert predicted.shape == held_truth.shape and ((0 <= predicted) & (predicted <= 10)).all()
    assert np.corrcoef(predicted[:, 0], held_truth[:, 0])[0, 1] > 0.9
    assert np.corrcoef(predicted[:, 1], held_truth[:, 1])[0, 1] > 0.8
    path = word_trees_path(tmp_path / "trained-closed.pt")
    assert path.name == "word-trees-closed.npz"
    trees.save(path, {"mode": "closed"})
    loaded, meta = load_word_trees(path)
    assert meta == {"mode": "closed"}
    assert np.array_equal(np.concatenate([loaded.predict(i) for i in held_in]), predicted)


def test_unlabelled_words_are_left_out_of_fitting():
    inputs, targets = utterances(120, seed=1)
    for t in targets[:60]:
        t[:] = np.nan  # open-mode words that overlap no labelled word
    trees = fit_word_trees(inputs, targets)
    predicted = np.concatenate([trees.predict(i) for i in inputs[60:]])
    assert not np.isnan(predicted).any()
