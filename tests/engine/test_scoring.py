"""Calibrated baseline scorer on hand-built alignments, and the fitting helpers that produce its numbers."""
import json

import numpy as np
import pytest

from saywell.engine.features.prosody import ProsodyTrack
from saywell.engine.features.utterance import UtteranceFeatures, utterance_features
from saywell.engine.offline.calibration import fit_head
from saywell.engine.scorers.baseline import (DEFAULT_CALIBRATION, OMISSION_MS_PER_PHONE, BaselineCalibration,
                                             BaselineScorer, LinearHead, phone_accuracy)
from saywell.engine.scorers.flags import SENSITIVITY_PRECISION, fit_thresholds, threshold_at
from saywell.engine.scorers.flags import threshold_for_precision as flag_threshold
from saywell.engine.stages.alignment import AlignedPhone, AlignedWord, Alignment
from saywell.engine.types import FRAME_MS, RecognizedWord, SentenceScores, Transcript, WordErrorType

PHONES = {"the": ("DH", "AH0"), "quick": ("K", "W", "IH1", "K"), "brown": ("B", "R", "AW1", "N"),
          "fox": ("F", "AA1", "K", "S"), "jumps": ("JH", "AH1", "M", "P", "S"), "dog": ("D", "AO1", "G")}


def aligned_word(text: str, start_frame: int, frames_per_phone: int, gop: float) -> AlignedWord:
    """A word whose phones all last `frames_per_phone` frames and score `gop` nats/frame."""
    phones = []
    for i, canonical in enumerate(PHONES[text]):
        start = start_frame + i * frames_per_phone
        end = start + frames_per_phone
        phone = canonical.rstrip("012")
        loop = (phone,) if gop > -2 else ("AH",)
        phones.append(AlignedPhone(phone, canonical, start, end, -50.0 * frames_per_phone,
                                   (-50.0 - gop) * frames_per_phone, gop, loop))
    return AlignedWord(text, start_frame, start_frame + frames_per_phone * len(phones), tuple(phones))


def layout(specs) -> tuple[AlignedWord, ...]:
    """specs: (text, frames_per_phone, gop); words follow each other with a 5-frame gap."""
    words, frame = [], 10
    for text, frames_per_phone, gop in specs:
        word = aligned_word(text, frame, frames_per_phone, gop)
        words.append(word)
        frame = word.end_frame + 5
    return tuple(words)


def prosody_for(n_frames: int) -> ProsodyTrack:
    frames = np.arange(n_frames)
    pitch = 150 + 30 * np.sin(frames / 15.0)
    pitch[frames % 20 < 4] = 0.0  # some unvoiced frames
    return ProsodyTrack(pitch.astype(float), (60 + 5 * np.cos(frames / 7.0)).astype(float))


def features(specs, heard: set[str] | None = None, closed: bool = True) -> UtteranceFeatures:
    """Features as the server computes them; `heard` are the words the ASR recognised (default: all)."""
    words = layout(specs)
    n_frames = words[-1].end_frame + 10
    heard = {w.text for w in words} if heard is None else heard
    transcript = Transcript(" ".join(w.text for w in words if w.text in heard), tuple(
        RecognizedWord(w.text, w.start_frame * FRAME_MS, w.end_frame * FRAME_MS, 0.9)
        for w in words if w.text in heard))
    alignment = Alignment(words, n_frames, ())
    reference = [w.text for w in words] if closed else None
    return utterance_features(alignment, transcript, prosody_for(n_frames), reference)


@pytest.fixture(scope="module")
def scorer():
    return BaselineScorer()


# --- LinearHead and the shipped calibration -------------------------------------------------------------------

def test_linear_head_standardises_then_clips():
    head = LinearHead(("a", "b"), (1.0, 2.0), (2.0, 4.0), (1.0, -1.0), 5.0)
    assert head.predict({"a": 3.0, "b": 2.0}) == pytest.approx(6.0)  # z = (1, 0)
    assert head.predict({"a": 1.0, "b": 6.0}) == pytest.approx(4.0)  # z = (0, 1)
    assert head.predict({"b": 2.0}) == pytest.approx(4.5)  # a missing feature counts as 0: z = (-0.5, 0)
    assert head.predict({"a": 1.0, "b": 2.0, "unused": 99.0}) == pytest.approx(5.0)
    assert head.predict({"a": 100.0, "b": 2.0}) == 10.0
    assert head.predict({"a": -100.0, "b": 2.0}) == 0.0


def test_linear_head_from_dict_roundtrip():
    data = {"features": ["x"], "mean": [0.5], "scale": [0.25], "weights": [2.0], "bias": 3}
    head = LinearHead.from_dict(data)
    assert head == LinearHead(("x",), (0.5,), (0.25,), (2.0,), 3.0)
    assert head.predict({"x": 0.75}) == pytest.approx(5.0)


def test_shipped_calibration_has_all_heads():
    cal = BaselineCalibration.load()
    assert DEFAULT_CALIBRATION.name == "baseline.json"
    assert set(cal.word) == {"accuracy", "stress", "total"}
    assert set(cal.sentence_closed) == {"accuracy", "fluency", "prosody"}
    assert set(cal.sentence_open) == {"accuracy", "fluency", "prosody"}
    for head in [*cal.word.values(), *cal.sentence_closed.values(), *cal.sentence_open.values()]:
        n = len(head.features)
        assert n > 0 and len(head.mean) == len(head.scale) == len(head.weights) == n
        assert all(s > 0 for s in head.scale)
        assert 0 <= head.bias <= 10
    raw = json.loads(DEFAULT_CALIBRATION.read_text())
    assert [s for s, _ in cal.flag_thresholds] == [s for s, _ in SENSITIVITY_PRECISION]
    assert [list(row) for row in cal.flag_thresholds] == raw["flag_thresholds"]
    assert all(0 < t < 10 for _, t in cal.flag_thresholds)


def test_threshold_follows_sensitivity():
    cal = BaselineCalibration.load()
    assert cal.threshold(0.5) == pytest.approx(dict(cal.flag_thresholds)[0.5])
    values = [cal.threshold(s) for s in np.linspace(0, 1, 11)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[-1] > values[0]


def test_phone_accuracy_maps_gop_monotonically_onto_0_to_2():
    assert phone_accuracy(0.0) == 2.0
    assert phone_accuracy(-0.5) == pytest.approx(2.0)
    assert phone_accuracy(-2.75) == pytest.approx(1.0)
    assert phone_accuracy(-5.0) == pytest.approx(0.0)
    assert phone_accuracy(-20.0) == 0.0
    grid = [phone_accuracy(g) for g in np.linspace(-8, 1, 50)]
    assert all(0.0 <= a <= 2.0 for a in grid)
    assert all(b >= a for a, b in zip(grid, grid[1:]))


# --- BaselineScorer --------------------------------------------------------------------------------------------

def _expected_total(scores: SentenceScores, closed: bool) -> float:
    completeness = scores.completeness if closed else 10.0
    return float(np.clip(0.8 * scores.accuracy * completeness / 10 + 0.1 * scores.fluency + 0.1 * scores.prosody,
                         0, 10))


GOOD = [("the", 8, -0.3), ("quick", 9, -0.4), ("brown", 9, -0.2), ("fox", 10, -0.5)]


@pytest.mark.parametrize("closed", [True, False])
def test_total_follows_the_rubric(scorer, closed):
    sentence, words = scorer.score(features(GOOD, closed=closed), closed=closed, sensitivity=0.5)
    assert len(words) == 4
    for value in (sentence.accuracy, sentence.fluency, sentence.prosody, sentence.total):
        assert 0.0 <= value <= 10.0
    assert sentence.total == pytest.approx(_expected_total(sentence, closed))
    assert (sentence.completeness == 10.0) if closed else (sentence.completeness is None)


def test_squeezed_unheard_word_is_an_omission_in_closed_mode(scorer):
    specs = [("the", 8, -0.3), ("quick", 9, -0.4), ("brown", 9, -0.2), ("fox", 3, -0.5)]  # fox: 30 ms/phone
    feats = features(specs, heard={"the", "quick", "brown"})
    fox = feats.words[3]
    assert fox.values["ms_per_phone"] == 30.0 < OMISSION_MS_PER_PHONE
    assert not fox.recognized
    sentence, words = scorer.score(feats, closed=True, sensitivity=0.5)
    assert words[3].error_type is WordErrorType.OMISSION
    assert (words[3].accuracy, words[3].stress, words[3].total) == (0.0, 0.0, 0.0)
    assert words[3].needs_improvement
    assert words[3].start_ms == fox.word.start_frame * FRAME_MS and words[3].end_ms == fox.word.end_frame * FRAME_MS
    assert len(words[3].phones) == 4
    assert all(w.error_type is not WordErrorType.OMISSION for w in words[:3])
    assert sentence.completeness == pytest.approx(10.0 * (1 - 1 / 4))
    assert sentence.total == pytest.approx(_expected_total(sentence, True))


def test_unheard_word_of_normal_length_is_not_an_omission(scorer):
    specs = [("the", 8, -0.3), ("quick", 9, -0.4), ("brown", 9, -0.2), ("fox", 10, -0.5)]  # fox: 100 ms/phone
    sentence, words = scorer.score(features(specs, heard={"the", "quick", "brown"}), closed=True, sensitivity=0.5)
    assert words[3].error_type is not WordErrorType.OMISSION
    assert words[3].accuracy > 0
    assert sentence.completeness == 10.0


def test_squeezed_word_is_not_an_omission_in_open_mode(scorer):
    specs = [("the", 8, -0.3), ("quick", 9, -0.4), ("brown", 9, -0.2), ("fox", 3, -0.5)]
    sentence, words = scorer.score(features(specs, closed=False), closed=False, sensitivity=0.5)
    assert all(w.error_type is not WordErrorType.OMISSION for w in words)
    assert sentence.completeness is None


def test_low_gop_word_scores_lower_than_a_good_one(scorer):
    specs = [("the", 8, -0.3), ("quick", 9, -0.3), ("brown", 9, -0.3), ("dog", 9, -0.3)]
    _, good = scorer.score(features(specs), closed=True, sensitivity=0.5)
    specs[2] = ("brown", 9, -7.0)
    # A badly mispronounced word is usually not recognised either: the baseline weighs both signals.
    _, bad = scorer.score(features(specs, heard={"the", "quick", "dog"}), closed=True, sensitivity=0.5)
    assert bad[2].accuracy < good[2].accuracy - 1.0
    assert bad[2].total < good[2].total
    assert good[2].error_type is WordErrorType.NONE
    # phone scores carry the GOP and its accuracy
    assert [p.goodness for p in bad[2].phones] == [-7.0] * 4
    assert [p.accuracy for p in bad[2].phones] == [0.0] * 4
    assert [p.phone for p in bad[2].phones] == ["B", "R", "AW", "N"]
    assert bad[2].phones[0].start_ms == bad[2].start_ms
    assert bad[2].phones[-1].end_ms == bad[2].end_ms


def test_higher_sensitivity_flags_at_least_as_many_words(tmp_path):
    raw = json.loads(DEFAULT_CALIBRATION.read_text())
    raw["flag_thresholds"] = [[0.0, 8.0], [0.5, 9.0], [1.0, 9.9]]  # a table wide enough to span these words
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(raw))
    scorer = BaselineScorer(path)
    specs = [("the", 8, -0.3), ("quick", 9, -1.5), ("brown", 9, -2.5), ("fox", 10, -3.5), ("jumps", 9, -4.5),
             ("dog", 9, -6.0)]
    feats = features(specs)
    counts = []
    for sensitivity in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, words = scorer.score(feats, closed=True, sensitivity=sensitivity)
        flagged = {w.text for w in words if w.needs_improvement}
        if counts:
            assert flagged >= counts[-1][1]  # a word flagged at lower sensitivity stays flagged
        counts.append((sensitivity, flagged))
    assert len(counts[-1][1]) > len(counts[0][1])


def test_fitted_thresholds_meet_their_precision_targets():
    rng = np.random.default_rng(3)
    predicted = rng.uniform(0, 10, 5000)
    needs_work = (predicted + rng.normal(0, 1.5, 5000)) < 7.0
    table = fit_thresholds(predicted, needs_work)
    assert [s for s, _ in table] == [0.0, 0.5, 1.0]
    assert table[0][1] <= table[1][1] <= table[2][1]
    for (sensitivity, threshold), (_, precision) in zip(table, SENSITIVITY_PRECISION):
        assert needs_work[predicted < threshold].mean() >= precision
    assert threshold_at(table, 0.25) == pytest.approx((table[0][1] + table[1][1]) / 2)


def test_empty_features_give_zero_scores(scorer):
    empty = UtteranceFeatures(words=(), sentence={})
    assert scorer.score(empty, closed=True, sensitivity=0.5) == (SentenceScores(0.0, 0.0, 0.0, 0.0, 0.0), ())
    assert scorer.score(empty, closed=False, sensitivity=0.5) == (SentenceScores(0.0, 0.0, 0.0, 0.0, None), ())


# --- Fitting helpers --------------------------------------------------------------------------------------------

def test_fit_head_recovers_a_linear_relationship():
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(0, 2, 300), rng.uniform(0, 2, 300)
    y = 2 * x1 - x2 + 5 + rng.normal(0, 0.05, 300)
    rows = [{"x1": a, "x2": b, "noise": c} for a, b, c in zip(x1, x2, rng.normal(size=300))]
    head = fit_head(rows, list(y), ("x1", "x2"))
    assert head["features"] == ["x1", "x2"]
    assert head["bias"] == pytest.approx(y.mean())
    assert head["mean"] == pytest.approx([x1.mean(), x2.mean()])
    assert head["scale"] == pytest.approx([x1.std(), x2.std()])
    # standardised weights: slope times the feature's spread (ridge alpha 1 shrinks them by < 1% here)
    assert head["weights"] == pytest.approx([2 * x1.std(), -x2.std()], rel=0.02)
    linear = LinearHead.from_dict(head)
    predicted = np.array([linear.predict(r) for r in rows])
    assert np.corrcoef(predicted, y)[0, 1] > 0.99
    assert np.sqrt(np.mean((predicted - y) ** 2)) < 0.1


def test_fit_head_survives_a_constant_feature():
    head = fit_head([{"x": float(i), "c": 1.0} for i in range(20)], [float(i) for i in range(20)], ("x", "c"))
    assert head["scale"][1] == 1.0  # no division by zero
    assert np.isfinite(head["weights"]).all()


def test_flag_threshold_keeps_precision():
    rng = np.random.default_rng(1)
    predicted = rng.uniform(0, 10, 2000)
    needs_work = (predicted + rng.normal(0, 1.0, 2000)) < 6.0
    threshold = flag_threshold(predicted, needs_work, min_precision=0.9)
    flagged = predicted < threshold
    assert flagged.sum() >= 10
    assert needs_work[flagged].mean() >= 0.9
    assert 5.0 < threshold < 7.0  # near the true boundary of 6
    # It is the highest threshold of its grid that keeps the precision: every higher one loses it.
    for higher in np.arange(threshold + 0.05, 10.0, 0.05):
        assert needs_work[predicted < higher].mean() < 0.9


def test_flag_threshold_flags_nothing_when_precision_is_unreachable():
    rng = np.random.default_rng(2)
    predicted = rng.uniform(0, 10, 500)
    needs_work = rng.random(500) < 0.3  # unrelated to the prediction
    threshold = flag_threshold(predicted, needs_work, min_precision=0.9)
    assert threshold == pytest.approx(predicted.min() - 0.01)
    assert not (predicted < threshold).any()


# --- agreement between two transcripts (MultiPA's word-alignment features) --------------------------------------

def test_target_words_carry_how_the_recognising_asr_heard_them():
    words = layout([("the", 6, -0.5), ("quick", 6, -0.5), ("brown", 6, -0.5), ("fox", 6, -4.0)])
    n_frames = words[-1].end_frame + 10
    target = Transcript("the quick brown fox", tuple(
        RecognizedWord(w.text, w.start_frame * FRAME_MS, w.end_frame * FRAME_MS, p)
        for w, p in zip(words, (0.9, 0.8, 0.7, 0.3))))
    # the recognising ASR heard "brown" 60 ms early and "fox" as "box"
    heard = Transcript("the quick brown box", (
        RecognizedWord("the", words[0].start_frame * 10, words[0].end_frame * 10, 0.95),
        RecognizedWord("quick", words[1].start_frame * 10, words[1].end_frame * 10, 0.9),
        RecognizedWord("brown", words[2].start_frame * 10 - 60, words[2].end_frame * 10 - 60, 0.6),
        RecognizedWord("box", words[3].start_frame * 10, words[3].end_frame * 10, 0.2)))
    result = utterance_features(Alignment(words, n_frames, ()), heard, prosody_for(n_frames),
                                [w.text for w in words], target)
    values = {w.word.text: w.values for w in result.words}
    assert [values[t]["asr_match"] for t in ("the", "quick", "brown", "fox")] == [1.0, 1.0, 1.0, 0.0]
    assert values["the"]["asr_char_distance"] == 0.0
    assert values["fox"]["asr_char_distance"] == pytest.approx(1 - 2 * 2 / 6)  # "fox" vs "box": 2 of 3 letters
    assert values["brown"]["asr_time_offset_ms"] == 120  # 60 ms at each end
    assert values["fox"]["asr_time_offset_ms"] == 0  # unmatched: the overlapping recognised word's times
    assert values["fox"]["asr_probability"] == 0.0  # not heard as itself
    assert [values[t]["own_probability"] for t in ("the", "fox")] == [0.9, 0.3]  # the target ASR's confidence
    assert values["fox"]["loop_phone_distance"] > values["the"]["loop_phone_distance"]  # the loop heard AH, AH...
    assert result.sentence["ref_recognized_share"] == 0.75
    # Without a second transcript every recognised word matches itself and is as sure as its recogniser.
    plain = utterance_features(Alignment(words, n_frames, ()), target, prosody_for(n_frames), None)
    assert all(w.values["asr_match"] == 1.0 and w.values["asr_char_distance"] == 0.0 for w in plain.words)
    assert [w.values["own_probability"] for w in plain.words] == [0.9, 0.8, 0.7, 0.3]
