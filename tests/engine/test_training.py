"""The trained scorer's pieces on small synthetic data: inputs, network round trip, training, CV metrics."""
import dataclasses

import numpy as np
import pytest
import torch

from saywell.engine.features.model_inputs import SENTENCE_SCALARS, TIMING_SCALARS, WORD_SCALARS, build_inputs
from saywell.engine.features.utterance import UtteranceFeatures, WordFeatures
from saywell.engine.offline.cross_validation import (confirmation_metrics, fit_scorer, fold_metrics, labelled_word_predictions, predict,
                                                     recognised_word_metrics, train_network)
from saywell.engine.offline.items import (UNMATCHED_RECOGNISED_LABELS, TrainingItem, overlap_targets,
                                          recognised_word_labels, split_by_speaker)
from saywell.engine.scorers.network import load_network, save_network
from saywell.engine.stages.alignment import AlignedPhone, AlignedWord


def word(text, start, end, gop):
    phone = AlignedPhone(phone="AH", canonical="AH1", start_frame=start, end_frame=end, aligned_loglik=-10.0,
                         loop_loglik=-10.0 - gop * (end - start), gop=gop, loop_phones=("AH",))
    aligned = AlignedWord(text=text, start_frame=start, end_frame=end, phones=(phone,))
    return WordFeatures(aligned, {"gop_mean": gop, "gop_min": gop, "ms_per_phone": (end - start) * 10.0,
                                  "asr_match": 1.0}, recognized=True)


def utterance(gops):
    words = tuple(word(f"w{i}", 10 + 30 * i, 35 + 30 * i, g) for i, g in enumerate(gops))
    return UtteranceFeatures(words=words, sentence={"gop_mean": float(np.mean(gops)), "n_words": len(gops)})


def test_inputs_pool_the_encoder_over_each_word_span():
    encoder = np.arange(200, dtype=np.float32)[:, None].repeat(4, axis=1)  # value = frame index
    inputs = build_inputs(utterance([1.0, -2.0]), encoder)
    assert inputs.word_scalars.shape == (2, len(WORD_SCALARS) + len(TIMING_SCALARS))
    # word 0 spans 100..350 ms -> encoder frames 5..17 (20 ms each)
    assert inputs.word_encoder[0, 0] == pytest.approx(np.mean(np.arange(5, 18)))
    assert inputs.sentence.shape == (len(SENTENCE_SCALARS) + 2 * 4,)
    assert inputs.word_scalars[1, WORD_SCALARS.index("gop_mean")] == -2.0


def synthetic_items(n, seed=0):
    """Word accuracy is a clean function of GOP; sentence scores of the mean GOP."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n):
        gops = rng.uniform(-6, 1, size=rng.integers(2, 7))
        encoder = rng.normal(size=(60 + 30 * len(gops), 8)).astype(np.float32)
        inputs = build_inputs(utterance(gops), encoder)
        acc = np.clip(10 + gops * 1.4, 0, 10).astype(np.float32)
        targets = np.stack([acc, np.full_like(acc, 10), acc], axis=1)
        sentence = np.full(4, np.clip(10 + np.mean(gops), 0, 10), np.float32)
        spans = tuple((100 + 300 * i, 350 + 300 * i) for i in range(len(gops)))
        items.append(TrainingItem(f"u{k}", f"s{k % 12}", inputs, targets, sentence, spans, spans, targets, sentence))
    return items


def test_training_lowers_the_loss_and_learns_the_relation():
    items = synthetic_items(120)
    train, stop = split_by_speaker(items, 0.2, 1)
    assert not {i.speaker for i in train} & {i.speaker for i in stop}
    untrained_words, _ = predict(train_network(train, stop, epochs=1, seed=3)[0], stop)
    model, best_epoch = train_network(train, stop, epochs=40, seed=3)
    words, sentences = predict(model, stop)
    truth = np.concatenate([i.word_targets[:, 0] for i in stop])
    err_before = np.mean((np.concatenate([w[:, 0] for w in untrained_words]) - truth) ** 2)
    err_after = np.mean((np.concatenate([w[:, 0] for w in words]) - truth) ** 2)
    assert err_after < err_before * 0.5, (err_before, err_after)
    assert np.corrcoef(np.concatenate([w[:, 0] for w in words]), truth)[0, 1] > 0.8
    assert sentences.shape == (len(stop), 4) and ((0 <= sentences) & (sentences <= 10)).all()


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    items = synthetic_items(30)
    model, _ = train_network(items[:24], items[24:], epochs=2, seed=0)
    save_network(model, tmp_path / "m.pt", {"flag_thresholds": [[0.0, 6.0], [0.5, 7.0], [1.0, 8.0]], "version": "t"})
    loaded, meta = load_network(tmp_path / "m.pt")
    assert meta["flag_thresholds"][1] == [0.5, 7.0]
    a, b = predict(model, items[24:]), predict(loaded, items[24:])
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
    assert all(np.allclose(x, y, atol=1e-6) for x, y in zip(a[0], b[0]))


def test_an_ensemble_checkpoint_averages_its_members(tmp_path):
    items = synthetic_items(30)
    members = [train_network(items[:24], items[24:], epochs=2, seed=seed)[0] for seed in (0, 1)]
    save_network(members, tmp_path / "e.pt", {"version": "t"})
    loaded, _ = load_network(tmp_path / "e.pt")
    singles = [predict(m, items[24:]) for m in members]
    words, sentences = predict(loaded, items[24:])
    np.testing.assert_allclose(sentences, (singles[0][1] + singles[1][1]) / 2, atol=1e-5)
    np.testing.assert_allclose(words[0], (singles[0][0][0] + singles[1][0][0]) / 2, atol=1e-5)
    assert not np.allclose(singles[0][1], singles[1][1])  # different seeds: the average is not either member


def test_open_mode_word_targets_come_from_overlapping_labels():
    labels = np.array([[10, 10, 10], [4, 10, 5]], np.float32)
    targets = overlap_targets([(0, 90), (90, 300), (500, 600)], [(0, 95), (95, 300)], labels)
    assert targets[0, 0] == 10 and np.isnan(targets[2]).all()
    assert targets[1, 0] == pytest.approx((5 * 10 + 205 * 4) / 210)  # weighted by overlap


def test_recognised_words_are_compared_with_the_mean_of_the_labels_they_overlap():
    labels = np.array([[10, 10, 10], [4, 5, 5], [2, 10, 3]], float)
    spans = [(0, 100), (100, 300), (300, 400)]
    heard = [(0, 150), (310, 390), (500, 600), (100, 100)]  # spans two words, inside one, in a pause, empty
    out = recognised_word_labels(heard, spans, labels)
    np.testing.assert_allclose(out[0], [7, 7.5, 7.5])  # plain mean, as MultiPA's evaluation takes it
    np.testing.assert_allclose(out[1], labels[2])
    np.testing.assert_allclose(out[2], UNMATCHED_RECOGNISED_LABELS)
    np.testing.assert_allclose(out[3], UNMATCHED_RECOGNISED_LABELS)


def test_recognised_word_metrics_count_an_extra_word_against_the_bottom_of_the_scales():
    items = synthetic_items(12)
    labels = {i.utt: i.labels for i in items}
    words = [i.labels + np.random.default_rng(n).normal(0, 0.5, i.labels.shape) for n, i in enumerate(items)]
    same = recognised_word_metrics(items, words, labels)
    assert same["recognised_word_accuracy"] == pytest.approx(fold_metrics(items, words, np.zeros((12, 4)), labels,
                                                                           9.0)["word_accuracy"])
    extra = [TrainingItem(i.utt, i.speaker, i.inputs, i.word_targets, i.sentence_targets,
                          i.word_spans + ((99000, 99100),), i.label_spans, i.labels, i.sentence_labels) for i in items]
    scored_low = [np.vstack([w, [0.5, 5.5, 1.5]]) for w in words]  # the extra word scored near the bottom: agrees
    scored_high = [np.vstack([w, [9.5, 10, 9.5]]) for w in words]
    low = recognised_word_metrics(extra, scored_low, labels)["recognised_word_accuracy"]
    high = recognised_word_metrics(extra, scored_high, labels)["recognised_word_accuracy"]
    assert low > same["recognised_word_accuracy"] > high


def test_labelled_word_predictions_average_overlapping_recognised_words():
    item = synthetic_items(1)[0]
    shifted = TrainingItem(item.utt, item.speaker, item.inputs, item.word_targets, item.sentence_targets,
                           tuple((s + 10, e + 10) for s, e in item.word_spans), item.label_spans, item.labels,
                           item.sentence_labels)
    predictions = np.arange(len(item.word_spans) * 3, dtype=float).reshape(-1, 3)
    mapped = labelled_word_predictions(shifted, predictions)
    assert mapped.shape == (len(item.label_spans), 3)
    np.testing.assert_allclose(mapped[0], predictions[0])  # word 0 overlaps only recognised word 0


def test_fold_metrics_report_correlations_and_flag_precision():
    items = synthetic_items(40)
    labels = {i.utt: i.labels for i in items}
    words = [i.word_targets + 0.01 for i in items]
    sentences = np.stack([i.sentence_targets for i in items])
    metrics = fold_metrics(items, words, sentences, labels, threshold=9.0)
    assert metrics["word_accuracy"] > 0.99 and metrics["sentence_accuracy"] > 0.99
    assert metrics["flag_precision"] == 1.0 and 0 < metrics["flag_recall"] <= 1.0
    assert metrics["word_stress"] is None  # constant labels: undefined


def test_network_outputs_stay_in_range_for_extreme_inputs():
    items = synthetic_items(10)
    model, _ = train_network(items[:8], items[8:], epochs=1, seed=0)
    scalars = torch.full((1, 3, model.config.word_scalar_dim), 1e6)
    encoder = torch.full((1, 3, model.config.encoder_dim), -1e6)
    words, sentence = model(scalars, encoder, torch.zeros(1, 3, dtype=torch.bool),
                            torch.zeros(1, model.config.sentence_dim))
    assert torch.isfinite(words).all() and ((words >= 0) & (words <= 10)).all()
    assert ((sentence >= 0) & (sentence <= 10)).all()


def test_confirmation_metrics_score_a_fitted_scorer_on_speakers_it_never_saw():
    seen, unseen = synthetic_items(120, seed=1), synthetic_items(36, seed=2)
    unseen = [dataclasses.replace(i, utt=f"c{k}", speaker=f"confirm{k % 3}") for k, i in enumerate(unseen)]
    fitted, stop = fit_scorer(seen, epochs=30, seed=4, seeds=2, with_trees=False)
    assert len(fitted.models) == 2 and fitted.train_utterances + fitted.stop_utterances == len(seen)
    assert len(stop) == fitted.stop_utterances
    table = [[0.0, 3.0], [0.5, 6.0], [1.0, 8.0]]
    metrics = confirmation_metrics(fitted, unseen, table)
    assert metrics["n_test"] == 36 and metrics["speakers"] == 3
    assert metrics["flag_threshold"] == 6.0  # the default sensitivity's threshold
    assert metrics["word_accuracy"] > 0.8 and metrics["sentence_accuracy"] > 0.5
    words, _ = fitted.predict(unseen)
    predicted = np.concatenate([w[:, 0] for w in words])
    needs = np.concatenate([i.labels[:, 0] for i in unseen]) < 10
    assert metrics["flag_recall"] == pytest.approx((predicted < 6.0)[needs].mean())


def test_the_model_card_says_what_is_cv_and_what_the_confirmation_speakers_gave():
    from saywell.engine.offline.cross_validation import SENTENCE_TARGETS, WORD_TARGETS, model_card

    keys = [f"sentence_{t}" for t in SENTENCE_TARGETS] + [f"word_{t}" for t in WORD_TARGETS]
    summary = {k: {"mean": 0.8, "std": 0.02} for k in keys} | {"flag_precision": None, "flag_recall": None}
    confirmation = {k: 0.612 for k in keys} | {"flag_precision": 0.9, "flag_recall": None, "n_test": 240,
                                               "speakers": 12}
    report = {"date": "2026-12-05", "utterances": 2500, "failed": 0, "seed": 762, "folds": 5, "validation_fold": 0,
              "asr": "tiny.en", "target_asr": "base", "seeds": 3, "targets": "stress-experts",
              "confirmation_utterances_left_out": 240,
              "modes": {"closed": {"summary": summary, "confirmation": confirmation}}}
    card = model_card(report)
    assert "## Cross-validation, CV" in card and "leaves out the 240 utterances" in card
    section = card.split("## Confirmation speakers")[1]
    assert "| closed | 12 | 240 | 0.612 |" in section and "| 0.900 | — |" in section
    assert "equated" in card


def test_out_of_fold_equating_leaves_out_the_validation_folds_predictions():
    from saywell.engine.offline.cross_validation import out_of_fold_equating

    rng = np.random.default_rng(3)
    folds = {k: (rng.normal(7 + k, 1.0, size=(50, 4)), rng.normal(7.5, 1.7, size=(50, 4))) for k in range(3)}
    folds[0] = (np.full((50, 4), 100.0) + rng.normal(size=(50, 4)), folds[0][1])  # would dominate if used
    table = out_of_fold_equating({"out_of_fold_sentences": folds}, exclude_fold=0)
    kept = np.concatenate([folds[1][0], folds[2][0]])
    assert [row["aspect"] for row in table] == ["accuracy", "fluency", "prosody", "total"]
    assert table[0]["from_mean"] == pytest.approx(kept[:, 0].mean(), abs=1e-3)
    assert table[2]["to_sd"] == pytest.approx(np.concatenate([folds[1][1], folds[2][1]])[:, 2].std(), abs=1e-3)
    every = out_of_fold_equating({"out_of_fold_sentences": folds}, exclude_fold=None)
    assert every[0]["from_mean"] > 30
