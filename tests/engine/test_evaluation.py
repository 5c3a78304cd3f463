"""Evaluation arithmetic (correlations, time matching, flag precision/recall, phone pairing and detection, the
predictions file) and the corpus loader and folds."""
import json
import math
import pathlib

import numpy as np
import pytest
import soundfile as sf

from saywell.engine.offline.dataset import (LabeledUtterance, LabeledWord, choice_folds, confirmation_speakers,
                                            load_audio, load_corpus, select, speaker_folds)
from saywell.engine.offline.evaluation import (build_report, collect, correlation_report, flag_report,
                                               recognised_word_report, word_predictions, write_predictions)
from saywell.engine.offline.phone_metrics import (PHONE_FLAG_BELOW, best_f1_threshold, detection_scores,
                                                  phone_detection_report, phone_pairs)
from saywell.engine.offline.items import matched_words, overlap_weights
from saywell.engine.types import EngineError, PhoneScore, SentenceScores, UtteranceResult, WordErrorType, WordScore

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


def test_confirmation_speakers_are_half_of_fold_zero_and_in_no_choice_fold():
    corpus = utterances(125, 2)
    held = confirmation_speakers(corpus)
    fold_zero = {u.speaker for u in speaker_folds(corpus, 5, 762)[0]}
    assert len(held) == 12 and held < fold_zero
    assert confirmation_speakers(list(reversed(corpus))) == held  # not the order the corpus is listed in
    for seed in (762, 1, 2):
        folds = choice_folds(corpus, 5, seed)
        assert not held & {u.speaker for fold in folds for u in fold}
        assert sum(len(f) for f in folds) == len(corpus) - 2 * len(held)
    # the default split keeps its folds: only fold 0 loses the confirmation speakers
    plain, chosen = speaker_folds(corpus, 5, 762), choice_folds(corpus, 5, 762)
    assert chosen[1:] == plain[1:]
    assert {u.speaker for u in chosen[0]} == fold_zero - held


def test_confirmation_speakers_take_one_of_each_pair_ranked_by_accuracy():
    corpus = []
    for s in range(125):  # speaker s's mean accuracy is (s * 37) % 125 / 12.5: all distinct, not in id order
        mean = (s * 37) % 125 / 12.5
        corpus += [LabeledUtterance(f"{s:04d}{i:03d}", f"{s:04d}", "WE", {"accuracy": mean + d}, (),
                                    pathlib.Path("/nowhere")) for i, d in enumerate((-0.5, 0.5))]
    fold = sorted({u.speaker for u in speaker_folds(corpus, 5, 762)[0]}, key=lambda s: (int(s) * 37) % 125)
    held = confirmation_speakers(corpus)
    pairs = [set(fold[i:i + 2]) for i in range(0, 24, 2)]
    assert all(len(held & pair) == 1 for pair in pairs)  # exactly one of each adjacent pair in the ranking
    assert fold[24] not in held  # the odd one out stays a choice speaker
    # given the whole corpus's set, a sample's folds leave out the same speakers
    sample = select(corpus, 150, 5)
    assert not held & {u.speaker for f in choice_folds(sample, 5, 1, held) for u in f}


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


def test_load_corpus_reads_phone_labels(tiny_corpus):
    rows = [json.loads(line) for line in (tiny_corpus / "labels.jsonl").read_text().splitlines() if line.strip()]
    rows[0]["words"][0] |= {"phones": ["DH", "AH0"], "phones_accuracy": [2, 1.4]}
    del rows[1]["words"][0]["phones"], rows[1]["words"][0]["phones_accuracy"]  # a corpus without phone labels
    (tiny_corpus / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second = load_corpus(tiny_corpus)
    assert first.words[0].phones == ("DH", "AH0") and first.words[0].phones_accuracy == (2.0, 1.4)
    assert second.words[0].phones == () and second.words[0].phones_accuracy == ()


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
    held = confirmation_speakers(corpus)
    assert len(held) == 12 and held < speakers[0]
    assert sum(u.speaker in held for u in corpus) == 240
    assert all(len(u.words) == len(u.text.split()) for u in corpus)
    assert all(w.phones and len(w.phones) == len(w.phones_accuracy) for u in corpus for w in u.words)


# --- phones (closed mode): pairing, detection, predictions file -------------------------------------------------

SENTENCE = ("accuracy", "fluency", "prosody", "total", "completeness")


def scored_word(text: str, phones: list[tuple[str, float]], accuracy: float = 8.0, flag: bool = False,
                heard: dict[int, str] | None = None) -> WordScore:
    """`heard`: phone position -> the phone the engine heard there instead."""
    heard = heard or {}
    scored = tuple(PhoneScore(p, 100 * i, 100 * i + 90, -1.0, a, ((heard[i], 0.8), (p, 0.2)) if i in heard else ())
                   for i, (p, a) in enumerate(phones))
    return WordScore(text, 0, 100 * len(phones), accuracy, 9.0, accuracy - 0.5, WordErrorType.NONE, flag, scored)


def labelled(text: str, phones: list[tuple[str, float]], accuracy: float = 10, stress: float = 10,
             total: float = 10) -> LabeledWord:
    return LabeledWord(text, accuracy, stress, total, tuple(p for p, _ in phones), tuple(a for _, a in phones))


def labelled_utterance(utt: str, words: tuple[LabeledWord, ...], speaker: str = "s1", **scores) -> LabeledUtterance:
    return LabeledUtterance(utt, speaker, " ".join(w.text for w in words),
                            {a: scores.get(a, 7.0) for a in SENTENCE}, words, None)


def closed_result(words: tuple[WordScore, ...], accuracy: float = 7.5) -> UtteranceResult:
    text = " ".join(w.text for w in words)
    return UtteranceResult(text, text, SentenceScores(accuracy, 8.0, 8.5, 7.8, 9.0), words, "trained")


def test_phones_pair_by_word_position_when_the_stressless_sequences_agree():
    labels = (labelled("WE", [("W", 2), ("IY0", 1.2)]), labelled("CALL", [("K", 2), ("AO0", 0), ("L", 1.8)]),
              labelled("IT", [("IH0", 2), ("T", 2)]))
    words = (scored_word("we", [("W", 1.9), ("IY", 0.7)]),
             scored_word("call", [("K", 1.5), ("AA", 0.2), ("L", 1.0)]),  # another pronunciation variant
             scored_word("it", [("IH", 2.0), ("T", 0.4)], heard={1: "D"}))
    pairs = phone_pairs(words, labels)
    assert pairs[0] == [("W", 1.9, 2.0, ""), ("IY0", 0.7, 1.2, "")]
    assert pairs[1] == "phone_mismatch"
    assert pairs[2] == [("IH0", 2.0, 2.0, ""), ("T", 0.4, 2.0, "D")]
    assert phone_pairs(words[:2], labels) == ["word_count_mismatch"] * 3  # positions mean nothing then
    assert phone_pairs(None, labels) == ["failed_utterance"] * 3
    no_labels = (LabeledWord("WE", 10, 10, 10), labels[1], labels[2])  # a corpus without phone labels
    assert phone_pairs(words, no_labels)[0] == "no_phone_labels"
    shorter = (scored_word("we", [("W", 1.9)]),) + words[1:]  # the engine aligned fewer phones
    assert phone_pairs(shorter, labels)[0] == "phone_mismatch"


def test_collect_pairs_phones_in_closed_mode_and_counts_what_it_could_not_pair():
    labels = (labelled("WE", [("W", 2), ("IY0", 1.2)]), labelled("CALL", [("K", 2), ("AO0", 0), ("L", 1.8)]))
    good = labelled_utterance("u1", labels)
    words = (scored_word("we", [("W", 1.9), ("IY", 0.7)]), scored_word("call", [("K", 1.5), ("AA", 0.2), ("L", 1.0)]))
    short = labelled_utterance("u2", labels)  # the engine assessed only one word of two
    failed = labelled_utterance("u3", labels)
    outcomes = [(good, (good, closed_result(words), None, 1.0)),
                (short, (short, closed_result(words[:1]), [(0, 200), (200, 400)], 1.0)),
                (failed, RuntimeError("alignment failed"))]
    floor = {a: 0.0 for a in SENTENCE} | {"word_accuracy": 0.0, "word_stress": 5.0, "word_total": 0.0}
    c, n_failed = collect(outcomes, "closed", floor)
    assert n_failed == 1
    assert c.phone_pred == [1.9, 0.7] and c.phone_true == [2.0, 1.2]
    assert c.phone_pairing == {"labelled_words": 6, "paired_words": 1, "labelled_phones": 15, "paired_phones": 2,
                               "unpaired_words": {"failed_utterance": 2, "word_count_mismatch": 2,
                                                  "no_phone_labels": 0, "phone_mismatch": 1}}
    c_open, _ = collect(outcomes[:1], "open", floor)  # open mode assesses recognised words: no phone pairing
    assert c_open.phone_pred == [] and c_open.phone_pairing["labelled_words"] == 0


def test_phone_detection_at_the_default_threshold_against_both_label_readings():
    pred = [0.2, 0.5, 0.9, 1.2, 1.8, 2.0, 0.0, 1.5]
    true = [0.0, 1.0, 2.0, 0.0, 2.0, 1.6, 0.0, 2.0]
    report = phone_detection_report(pred, true)
    assert report["threshold"] == PHONE_FLAG_BELOW == 1.0 and report["n_phones"] == 8
    deviation, wrong = report["any_deviation"], report["wrong_phone"]
    # flagged (pred < 1): phones 0, 1, 2, 6. Any deviation (true < 2): 0, 1, 3, 5, 6. Wrong phone (true 0): 0, 3, 6
    assert deviation["positive_when"] == "human accuracy < 2" and wrong["positive_when"] == "human accuracy == 0"
    assert (deviation["n_positives"], deviation["n_flagged"], deviation["true_positives"]) == (5, 4, 3)
    assert deviation["precision"] == pytest.approx(3 / 4) and deviation["recall"] == pytest.approx(3 / 5)
    assert deviation["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert (wrong["n_positives"], wrong["true_positives"]) == (3, 2)
    assert wrong["precision"] == pytest.approx(2 / 4) and wrong["recall"] == pytest.approx(2 / 3)
    assert wrong["f1"] == pytest.approx(4 / 7)
    best = report["best_f1_chosen_on_evaluated_data"]
    assert "not a held-out number" in best["note"]
    # any deviation: flagging pred < 1.5 catches 4 of 5 with 1 false alarm (F1 0.8), the best cut
    assert best["any_deviation"]["threshold"] == 1.5 and best["any_deviation"]["f1"] == pytest.approx(0.8)
    assert best["any_deviation"]["precision"] == pytest.approx(0.8) and best["any_deviation"]["recall"] == 0.8
    # wrong phone: pred < 0.5 flags two phones, both wrong (F1 0.8); pred < 1.5 also reaches 0.75
    assert best["wrong_phone"]["threshold"] == 0.5 and best["wrong_phone"]["f1"] == pytest.approx(0.8)
    assert best["wrong_phone"]["precision"] == 1.0 and best["wrong_phone"]["recall"] == pytest.approx(2 / 3)


def test_diagnosis_scores_the_phones_heard_instead():
    pred = [0.2, 0.5, 0.9, 1.2, 1.8, 2.0, 0.0, 1.5]
    true = [0.0, 1.0, 2.0, 0.0, 2.0, 1.6, 0.0, 2.0]
    other = [True, False, False, True, False, True, True, False]  # the phone loop heard another phone there
    report = phone_detection_report(pred, true, heard_other=other)["diagnosis"]
    # heard another: 0, 3, 5, 6. Wrong phone (true 0): 0, 3, 6: all three found, one false alarm
    assert report["heard_other_phone"]["wrong_phone"]["precision"] == pytest.approx(3 / 4)
    assert report["heard_other_phone"]["wrong_phone"]["recall"] == 1.0
    # flagged (0, 1, 2, 6) and heard another (0, 3, 5, 6): 0 and 6, both wrong phones
    assert report["flagged_and_heard_other"]["wrong_phone"]["precision"] == 1.0
    assert report["share_of_flagged_naming_another_phone"] == pytest.approx(2 / 4)
    assert "diagnosis" not in phone_detection_report(pred, true), "no diagnosis without heard phones"


def test_phone_detection_edge_cases():
    assert detection_scores([False, False], [True, False]) == {
        "n_positives": 1, "n_flagged": 0, "true_positives": 0, "precision": None, "recall": 0.0, "f1": 0.0}
    assert detection_scores([True], [False])["f1"] is None  # nothing to detect: recall and F1 undefined
    report = phone_detection_report([1.5, 0.5], [2.0, 2.0])
    assert report["wrong_phone"]["n_positives"] == 0 and report["wrong_phone"]["recall"] is None
    assert report["best_f1_chosen_on_evaluated_data"]["any_deviation"] is None
    empty = phone_detection_report([], [])
    assert empty["n_phones"] == 0 and empty["any_deviation"]["precision"] is None
    # flagging everything can be the best cut: the threshold then lies just above the highest prediction
    best = best_f1_threshold([1.0, 2.0], [True, True])
    assert best["threshold"] > 2.0 and best["recall"] == 1.0 and best["n_flagged"] == 2


def test_best_f1_threshold_matches_a_brute_force_search():
    rng = np.random.default_rng(3)
    for _ in range(20):
        pred = np.round(rng.uniform(0, 2, 60), 1)  # ties, as clipped predictions have
        positive = rng.uniform(0, 2, 60) > pred + rng.normal(0, 0.5, 60)
        if not positive.any():
            continue
        cuts = sorted(set(pred)) + [np.inf]
        f1s = [detection_scores(pred < t, positive)["f1"] for t in cuts]
        best = best_f1_threshold(pred, positive)
        assert best["f1"] == pytest.approx(max(f1s))
        expected = cuts[int(np.argmax(f1s))]
        assert best["threshold"] == expected or (expected == np.inf and best["threshold"] > pred.max())


def test_predictions_file_has_numbers_per_sentence_word_and_phone(tmp_path):
    labels = (labelled("WE", [("W", 2), ("IY0", 1.2)], accuracy=8, total=7),
              labelled("CALL", [("K", 2), ("AO0", 0), ("L", 1.8)], accuracy=10, stress=10, total=10))
    good, failed = labelled_utterance("u2", labels, speaker="0007"), labelled_utterance("u1", labels)
    words = (scored_word("we", [("W", 1.9), ("IY", 0.7)], accuracy=6.0, flag=True),
             scored_word("call", [("K", 1.5), ("AA", 0.2), ("L", 1.0)]))
    floor = {a: 0.0 for a in SENTENCE} | {"word_accuracy": 0.0, "word_stress": 5.0, "word_total": 0.0}
    c, _ = collect([(good, (good, closed_result(words), None, 1.0)), (failed, OSError("no audio"))], "closed", floor)
    path = tmp_path / "predictions.jsonl"
    write_predictions(c.records, path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["utt"] for r in lines] == ["u1", "u2"]  # ordered by utterance, not by completion
    bad, ok = lines
    assert bad["error"] == "OSError: no audio" and bad["sentence"]["pred"] is None
    assert bad["sentence"]["human"]["accuracy"] == 7.0 and [w["pred"] for w in bad["words"]] == [None, None]
    assert bad["words"][0]["unpaired_reason"] == "failed_utterance"
    assert bad["words"][0]["phones"] == [{"phone": "W", "pred": None, "human": 2.0},
                                         {"phone": "IY0", "pred": None, "human": 1.2}]
    assert (ok["speaker"], ok["mode"], ok["text"], ok["transcript"]) == ("0007", "closed", "WE CALL", "we call")
    assert "error" not in ok
    assert ok["sentence"]["pred"] == {"accuracy": 7.5, "fluency": 8.0, "prosody": 8.5, "total": 7.8,
                                      "completeness": 9.0}
    we, call = ok["words"]
    assert we["text"] == "WE"
    assert we["pred"] == {"accuracy": 6.0, "stress": 9.0, "total": 5.5, "flag": True}
    assert we["human"] == {"accuracy": 8.0, "stress": 10.0, "total": 7.0, "flag": True}
    assert we["phones_paired"] and we["phones"] == [{"phone": "W", "pred": 1.9, "human": 2.0, "heard": ""},
                                                    {"phone": "IY0", "pred": 0.7, "human": 1.2, "heard": ""}]
    assert call["human"]["flag"] is False and not call["phones_paired"]
    assert call["unpaired_reason"] == "phone_mismatch" and [p["pred"] for p in call["phones"]] == [None] * 3
    assert call["pred_phones"] == [{"phone": "K", "accuracy": 1.5}, {"phone": "AA", "accuracy": 0.2},
                                   {"phone": "L", "accuracy": 1.0}]

    def leaves(value):  # every value but the phones' names (expected and heard)
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in ("phone", "heard"):
                    yield from leaves(v)
        elif isinstance(value, list):
            for v in value:
                yield from leaves(v)
        else:
            yield value

    scores = [ok["sentence"], ok["words"][0]["pred"], ok["words"][0]["human"], ok["words"][0]["phones"]]
    assert all(isinstance(v, (int, float)) for v in leaves(scores))  # numbers (and flags), never strings

    c_open, _ = collect([(good, (good, closed_result(words), [(0, 200), (200, 400)], 1.0))], "open", floor)
    assert "phones" not in c_open.records[0]["words"][0] and c_open.records[0]["mode"] == "open"


def test_collect_and_report_on_synthetic_results():
    rng = np.random.default_rng(0)
    outcomes = []
    for n in range(12):
        quality = float(rng.uniform(0.3, 2.0))
        human = [min(2.0, max(0.0, round(quality + rng.normal(0, 0.3), 1))) for _ in range(3)]
        predicted = [float(np.clip(h + rng.normal(0, 0.4), 0, 2)) for h in human]
        labels = (labelled("CAT", [("K", human[0]), ("AE1", human[1]), ("T", human[2])], accuracy=round(5 * quality)),
                  labelled("SAT", [("S", 2), ("AE1", 2), ("T", 2)], accuracy=10))
        words = (scored_word("cat", [("K", predicted[0]), ("AE", predicted[1]), ("T", predicted[2])],
                             accuracy=5 * quality + rng.normal(0, 0.5), flag=quality < 1.5),
                 scored_word("sat", [("S", 1.8), ("AE", 1.9), ("T", 1.7)] if n % 3 else [("S", 1.8), ("T", 1.7)],
                             accuracy=9.0 + rng.normal(0, 0.3)))
        u = labelled_utterance(f"u{n:02d}", labels, speaker=f"s{n % 4}", accuracy=round(5 * quality),
                               fluency=8, prosody=rng.integers(6, 10), total=round(5 * quality) + 1)
        result = closed_result(words, accuracy=5 * quality + float(rng.normal(0, 0.3)))
        outcomes.append((u, (u, result, None, 2.0)))
    failed = labelled_utterance("u99", outcomes[0][0].words)
    outcomes.append((failed, EngineError("no path")))
    floor = {a: 0.0 for a in SENTENCE} | {"word_accuracy": 0.0, "word_stress": 5.0, "word_total": 0.0}
    c, n_failed = collect(outcomes, "closed", floor)
    report = build_report(c, "closed", 13, n_failed, seconds=6.0, audio_s=24.0, threshold=7.0)

    # the keys and numbers reported before phones were added, computed as they always were
    assert list(report)[:8] == ["mode", "n_utterances", "n_failed", "seconds", "rtf", "sentence", "word", "flags"]
    assert (report["mode"], report["n_utterances"], report["n_failed"], report["rtf"]) == ("closed", 13, 1, 0.25)
    for aspect in SENTENCE:
        assert report["sentence"][aspect] == correlation_report(c.sentence_pred[aspect], c.sentence_true[aspect])
    for aspect in ("accuracy", "stress", "total"):
        assert report["word"][aspect] == correlation_report(c.word_pred[aspect], c.word_true[aspect])
    assert report["flags"] == flag_report(c.flags, 7.0)
    assert "recognised_word" not in report

    # phones: CAT always pairs; SAT pairs in the utterances where the engine aligned all three phones
    paired_sat = sum(1 for n in range(12) if n % 3)
    phone = report["phone"]
    assert phone["n_phones"] == 3 * 12 + 3 * paired_sat == len(c.phone_true)
    assert phone["pairing"]["labelled_words"] == 26 and phone["pairing"]["paired_words"] == 12 + paired_sat
    assert phone["pairing"]["labelled_phones"] == 78 and phone["pairing"]["paired_phones"] == phone["n_phones"]
    assert phone["pairing"]["unpaired_words"] == {"failed_utterance": 2, "word_count_mismatch": 0,
                                                  "no_phone_labels": 0, "phone_mismatch": 12 - paired_sat}
    assert phone["pcc"] == pytest.approx(np.corrcoef(c.phone_pred, c.phone_true)[0, 1])
    assert phone["pcc"] > 0.5  # predictions were made from the labels plus noise
    detection = report["phone_detection"]
    assert detection == phone_detection_report(c.phone_pred, c.phone_true, PHONE_FLAG_BELOW,
                                               heard_other=c.phone_heard_other)
    true = np.array(c.phone_true)
    assert detection["any_deviation"]["n_positives"] == int(np.sum(true < 2))
    assert detection["wrong_phone"]["n_positives"] == int(np.sum(true == 0))
    json.dumps(report)  # plain JSON: no numpy scalars


def test_eval_main_writes_the_report_and_predictions(tmp_path, monkeypatch):
    from saywell.engine.offline import evaluation

    (tmp_path / "audio").mkdir()
    fox, rate = sf.read(FIXTURES / "fox.wav", dtype="float32")
    rows = []
    for i, quality in enumerate((2.0, 1.0, 0.0, 1.6)):
        utt = f"00001{i:04d}"
        sf.write(tmp_path / "audio" / f"{utt}.wav", fox, rate)
        words = [{"text": "WE", "accuracy": 10, "stress": 10, "total": 10, "phones": ["W", "IY0"],
                  "phones_accuracy": [2, quality]},
                 {"text": "CALL", "accuracy": 4 + 2 * i, "stress": 10, "total": 5 + i,
                  "phones": ["K", "AO0", "L"], "phones_accuracy": [quality, 2, 1.8]}]
        rows.append({"utt": utt, "speaker": "0001", "text": "WE CALL", "accuracy": 5 + i, "fluency": 8,
                     "prosodic": 7 + i % 2, "total": 6 + i, "completeness": 10, "words": words})
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    async def fake_run_engine(utterances, mode, options, condition):
        assert condition == "clean"
        outcomes = []
        for n, u in enumerate(utterances):
            if n == len(utterances) - 1:
                outcomes.append((u, RuntimeError("decoder failed")))
                continue
            q = u.words[0].phones_accuracy[1]
            words = (scored_word("we", [("W", 1.8), ("IY", q * 0.8 + 0.1)], accuracy=9.0),
                     scored_word("call", [("K", q * 0.9), ("AO", 1.7), ("L", 1.9)], accuracy=4.0 + n, flag=n < 2))
            outcomes.append((u, (u, closed_result(words, accuracy=5.0 + n), None, 2.965)))
        return outcomes, 7.0

    monkeypatch.setattr(evaluation, "run_engine", fake_run_engine)
    report_path, predictions_path = tmp_path / "r.json", tmp_path / "p.jsonl"
    assert evaluation.main(["--data", str(tmp_path), "--mode", "closed", "--report", str(report_path),
                            "--predictions", str(predictions_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["n_utterances"] == 4 and report["n_failed"] == 1 and report["condition"] == "clean"
    assert report["phone"]["n_phones"] == 15 and report["phone"]["pairing"]["unpaired_words"]["failed_utterance"] == 2
    assert report["phone"]["pcc"] > 0.9
    assert report["phone_detection"]["threshold"] == 1.0
    lines = [json.loads(line) for line in predictions_path.read_text().splitlines()]
    assert len(lines) == 4 and sum("error" in line for line in lines) == 1
    assert all(len(line["words"]) == 2 for line in lines)


def test_eval_leaves_the_confirmation_speakers_out_unless_asked_for_them(tmp_path, monkeypatch):
    from saywell.engine.offline import evaluation

    (tmp_path / "audio").mkdir()
    fox, rate = sf.read(FIXTURES / "fox.wav", dtype="float32")
    rows = []
    for s in range(10):  # 10 speakers: fold 0 of the default split has 2, one of them a confirmation speaker
        for i in range(2):
            utt = f"{s:04d}{i:05d}"
            sf.write(tmp_path / "audio" / f"{utt}.wav", fox[:rate // 2], rate)
            rows.append({"utt": utt, "speaker": f"{s:04d}", "text": "WE", "accuracy": 5 + i, "fluency": 8,
                         "prosodic": 7, "total": 6 + i, "completeness": 10,
                         "words": [{"text": "WE", "accuracy": 10, "stress": 10, "total": 10}]})
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    heard: list[set[str]] = []

    async def fake_run_engine(utterances, mode, options, condition):
        heard.append({u.speaker for u in utterances})
        return [(u, RuntimeError("not run")) for u in utterances], 7.0

    monkeypatch.setattr(evaluation, "run_engine", fake_run_engine)
    corpus = load_corpus(tmp_path)
    held = confirmation_speakers(corpus)
    assert len(held) == 1
    report = tmp_path / "r.json"
    base = ["--data", str(tmp_path), "--mode", "closed", "--report", str(report)]
    evaluation.main(base + ["--confirmation"])
    assert heard[-1] == held and json.loads(report.read_text())["speakers"]["confirmation_only"] is True
    evaluation.main(base + ["--fold", "0"])
    assert heard[-1] == {u.speaker for u in speaker_folds(corpus)[0]} - held
    assert json.loads(report.read_text())["speakers"]["confirmation_speakers_left_out"] == 1
    evaluation.main(base)
    assert heard[-1] == {u.speaker for u in corpus} - held
    with pytest.raises(SystemExit):
        evaluation.main(base + ["--confirmation", "--fold", "0"])
