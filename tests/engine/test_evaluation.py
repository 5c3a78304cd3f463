"""Evaluation arithmetic (correlations, time matching, flag precision/recall) and the corpus loader and folds."""
import json
import math
import pathlib

import numpy as np
import pytest
import soundfile as sf

from saywell.engine.offline.dataset import LabeledUtterance, LabeledWord, load_audio, load_corpus, select, speaker_folds
from saywell.engine.offline.evaluation import (collect, correlation_report, flag_report, recognised_word_report,
                                               word_predictions)
from saywell.engine.offline.items import matched_words, overlap_weights
from saywell.engine.types import SentenceScores, UtteranceResult, WordErrorType, WordScore

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
REAL_TRAIN = REPO.parent / "shared" / "data" / "speechocean762" / "train"


# --- correlation_report ---------------------------------------------------------------------------------------

def test_perfect_correlation():
    report = correlation_report([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert report["pcc"] == pytest.approx(1.0)
    assert report["scc"] == pytest.approx(1.0)
    assert report["rmse"] == pytest.approx(math.sqrt((1 + 4 + 9 + 16) / 4))


def test_anticorrelation_and_rank_correlation():
    report = correlation_report([1.0, 2.0, 3.0, 10.0], [4.0, 3.0, 2.0, 1.0])
    assert report["pcc"] < -0.8
    assert report["scc"] == pytest.approx(-1.0)


def test_constant_predictions_have_no_correlation():
    report = correlation_report([5.0, 5.0, 5.0], [1.0, 2.0, 3.0])
    assert report["pcc"] is None and report["scc"] is None
    assert report["rmse"] == pytest.approx(math.sqrt((16 + 9 + 4) / 3))
    assert correlation_report([1.0], [1.0])["pcc"] is None  # one pair says nothing
    assert correlation_report([], []) == {"pcc": None, "scc": None, "rmse": None}


# --- matching labelled words to recognised words (open mode) ---------------------------------------------------

def word(text: str, start: int, end: int, accuracy: float = 8.0, flag: bool = False) -> WordScore:
    return WordScore(text, start, end, accuracy, 10.0, accuracy, WordErrorType.NONE, flag)


def test_overlap_rules():
    spans = [(0, 100), (100, 250), (400, 500)]
    cases = {(0, 100): [0], (50, 150): [0, 1], (100, 100): [], (250, 400): [], (240, 410): [1, 2], (600, 700): []}
    for span, expected in cases.items():
        hits, weights = overlap_weights(span, spans)
        assert hits == expected, span
        assert (weights.sum() == pytest.approx(1.0)) if hits else len(weights) == 0
    hits, weights = overlap_weights((50, 150), spans)
    assert weights == pytest.approx([0.5, 0.5])


def test_open_mode_labelled_words_take_the_overlap_weighted_recognised_scores():
    words = (word("a", 0, 100, accuracy=10.0), word("b", 100, 400, accuracy=4.0, flag=True))
    result = UtteranceResult("a b", "", SentenceScores(5, 5, 5, 5), words, "baseline")
    labelled = LabeledUtterance("u", "s", "A B C", {}, (LabeledWord("a", 10, 10, 10), LabeledWord("b", 4, 10, 4),
                                                        LabeledWord("c", 2, 10, 2)), None)
    predictions = word_predictions(result, labelled, "open", [(0, 120), (120, 400), (500, 600)])
    assert predictions[0]["accuracy"] == pytest.approx((100 * 10 + 20 * 4) / 120)
    assert predictions[0]["flag"] and predictions[1]["accuracy"] == pytest.approx(4.0)
    assert predictions[2]["accuracy"] == pytest.approx(4.0)  # nothing heard there: the nearest word's scores
    assert word_predictions(UtteranceResult("", "", SentenceScores(5, 5, 5, 5), (), "baseline"), labelled, "open",
                            [(0, 120)]) == [None]  # no words at all: collect() scores it with the corpus floor


def test_open_mode_also_counts_each_recognised_word_against_the_labels_it_overlaps():
    labelled = LabeledUtterance("u", "s", "A B C", {a: 5 for a in ("accuracy", "fluency", "prosody", "total",
                                                                  "completeness")},
                                (LabeledWord("a", 10, 10, 10), LabeledWord("b", 4, 10, 4), LabeledWord("c", 2, 5, 2)),
                                None)
    spans = [(0, 100), (100, 300), (300, 400)]
    words = (word("a", 0, 100, accuracy=9.0), word("bc", 120, 390, accuracy=3.0), word("uh", 600, 700, 1.0))
    result = UtteranceResult("a bc uh", "", SentenceScores(5, 5, 5, 5), words, "baseline")
    floor = {a: 0.0 for a in ("accuracy", "fluency", "prosody", "total", "completeness")} | {
        "word_accuracy": 0.0, "word_stress": 5.0, "word_total": 0.0}
    c, failed = collect([(labelled, (labelled, result, spans, 1.0)), (labelled, RuntimeError("x"))], "open", floor)
    assert failed == 1 and len(c.word_pred["accuracy"]) == 6  # per labelled word, the failure's at the floor
    assert len(c.recognised_pred) == 3  # per recognised word: the failed utterance has none
    np.testing.assert_allclose(c.recognised_true, [[10, 10, 10], [3, 7.5, 3], [0, 5, 1]])
    report = recognised_word_report(c)
    assert report["n_words"] == 3 and report["accuracy"]["pcc"] == pytest.approx(
        np.corrcoef([9, 3, 1], [10, 3, 0])[0, 1])


def test_an_unheard_labelled_word_takes_the_nearest_scored_word():
    spans = [(0, 100), (100, 250), (400, 500)]
    assert matched_words((50, 150), spans)[0] == [0, 1]  # overlap wins when there is any
    assert matched_words((260, 300), spans)[0] == [1]  # 10 ms after word 1, 100 ms before word 2
    assert matched_words((380, 390), spans)[0] == [2]
    hits, weights = matched_words((900, 950), spans)
    assert hits == [2] and weights == pytest.approx([1.0])
    assert matched_words((0, 10), [])[0] == []


# --- flag_report --------------------------------------------------------------------------------------------------

def test_flag_report_numbers():
    # (flagged, needs improvement): 3 flagged of which 2 right; 4 needing work of which 2 found
    flags = [(True, True), (True, True), (True, False), (False, True), (False, True), (False, False)]
    report = flag_report(flags, threshold=7.1)
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["recall"] == pytest.approx(2 / 4)
    assert report["threshold"] == 7.1


def test_flag_report_without_flags_or_positives():
    assert flag_report([(False, True), (False, False)], 5.0) == {"precision": None, "recall": 0.0, "threshold": 5.0}
    assert flag_report([(True, False)], 5.0) == {"precision": 0.0, "recall": None, "threshold": 5.0}


# --- speaker folds ------------------------------------------------------------------------------------------------

def utterances(n_speakers: int, per_speaker: int) -> list[LabeledUtterance]:
    return [LabeledUtterance(f"{s:04d}{i:03d}", f"{s:04d}", "WE CALL IT BEAR", {}, (), pathlib.Path("/nowhere"))
            for s in range(n_speakers) for i in range(per_speaker)]


@pytest.mark.parametrize("n_speakers,per_speaker,n_folds", [(23, 3, 5), (10, 1, 5), (7, 4, 3)])
def test_speaker_folds_are_disjoint_and_complete(n_speakers, per_speaker, n_folds):
    corpus = utterances(n_speakers, per_speaker)
    folds = speaker_folds(corpus, n_folds=n_folds, seed=1)
    assert len(folds) == n_folds
    speakers = [{u.speaker for u in fold} for fold in folds]
    for i in range(n_folds):
        for j in range(i + 1, n_folds):
            assert not speakers[i] & speakers[j]
    assert sorted(u.utt for fold in folds for u in fold) == sorted(u.utt for u in corpus)
    sizes = [len(s) for s in speakers]
    assert max(sizes) - min(sizes) <= 1  # speakers dealt round-robin


def test_speaker_folds_are_reproducible():
    corpus = utterances(30, 2)
    ids = lambda folds: [[u.utt for u in fold] for fold in folds]  # noqa: E731
    assert ids(speaker_folds(corpus, seed=7)) == ids(speaker_folds(corpus, seed=7))
    # the speakers of each fold do not depend on the order the corpus is listed in
    by_order = [{u.speaker for u in f} for f in speaker_folds(list(reversed(corpus)), seed=7)]
    assert by_order == [{u.speaker for u in f} for f in speaker_folds(corpus, seed=7)]
    assert ids(speaker_folds(corpus, seed=7)) != ids(speaker_folds(corpus, seed=8))  # the seed matters


def test_select_is_a_seeded_sample():
    corpus = utterances(10, 3)
    assert select(corpus, None, 0) is corpus
    assert select(corpus, 100, 0) is corpus
    picked = select(corpus, 5, 3)
    assert len(picked) == 5 and len({u.utt for u in picked}) == 5
    assert picked == select(corpus, 5, 3)


# --- load_corpus ----------------------------------------------------------------------------------------------------

def label_row(utt: str, speaker: str, text: str, **extra) -> dict:
    words = [{"text": w, "accuracy": 10, "stress": 10, "total": 9, "phones": [], "phones_accuracy": []}
             for w in text.split()]
    return {"utt": utt, "split": "train", "speaker": speaker, "text": text, "accuracy": 8, "fluency": 9,
            "prosodic": 7, "total": 8, "words": words, **extra}


@pytest.fixture
def tiny_corpus(tmp_path) -> pathlib.Path:
    fox, rate = sf.read(FIXTURES / "fox.wav", dtype="float32")
    (tmp_path / "audio").mkdir()
    rows = [label_row("000010011", "0001", "THE QUICK BROWN FOX", completeness=9),
            label_row("000020022", 2, "THE LAZY DOG")]  # a numeric speaker id; completeness absent
    for row in rows:
        sf.write(tmp_path / "audio" / f"{row['utt']}.wav", fox, rate)
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return tmp_path


def test_load_corpus_reads_labels_and_finds_audio(tiny_corpus):
    corpus = load_corpus(tiny_corpus)
    assert [u.utt for u in corpus] == ["000010011", "000020022"]
    first, second = corpus
    assert first.speaker == "0001" and second.speaker == "2"
    assert first.text == "THE QUICK BROWN FOX"
    assert first.scores == {"accuracy": 8, "fluency": 9, "prosody": 7, "total": 8, "completeness": 9}
    assert second.scores["completeness"] == 10  # the corpus default when unlabelled
    assert first.words == tuple(LabeledWord(w, 10, 10, 9) for w in ("THE", "QUICK", "BROWN", "FOX"))
    assert first.audio_path == tiny_corpus / "audio" / "000010011.wav"
    audio = load_audio(first.audio_path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(2.965 * 16_000, abs=2)


def test_load_corpus_prefers_listed_audio_formats(tiny_corpus):
    fox, rate = sf.read(FIXTURES / "fox.wav", dtype="float32")
    sf.write(tiny_corpus / "audio" / "000010011.flac", fox, rate)
    assert load_corpus(tiny_corpus)[0].audio_path.suffix == ".flac"  # .opus, .ogg, .flac, .wav in that order


def test_load_corpus_without_audio_says_which(tiny_corpus):
    (tiny_corpus / "audio" / "000020022.wav").unlink()
    with pytest.raises(FileNotFoundError, match="000020022"):
        load_corpus(tiny_corpus)


def test_load_corpus_without_labels_says_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_corpus(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "labels.jsonl") in message
    assert "speechocean762" in message and "audio/" in message


def test_load_audio_resamples_8k():
    audio = load_audio(FIXTURES / "market_8k.wav")
    info = sf.info(FIXTURES / "market_8k.wav")
    assert info.samplerate == 8000
    assert len(audio) == pytest.approx(info.frames * 2, abs=4)
    assert audio.dtype == np.float32


@pytest.mark.real_data
def test_real_speechocean762_train():
    if not (REAL_TRAIN / "labels.jsonl").exists():
        pytest.skip(f"speechocean762 not present at {REAL_TRAIN}: real learner speech is only available beside "
                    "the repo")
    corpus = load_corpus(REAL_TRAIN)
    assert len(corpus) == 2500
    assert len({u.speaker for u in corpus}) == 125
    assert len({u.utt for u in corpus}) == 2500
    folds = speaker_folds(corpus, n_folds=5)
    speakers = [{u.speaker for u in fold} for fold in folds]
    assert [len(s) for s in speakers] == [25] * 5
    assert len(set().union(*speakers)) == 125  # disjoint: 5 x 25 distinct speakers
    assert sum(len(f) for f in folds) == 2500
    assert all(len(u.words) == len(u.text.split()) for u in corpus)
