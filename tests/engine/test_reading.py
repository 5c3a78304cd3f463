"""Closed mode when the utterance read only part of its reference (engine/profiles/cpu/reading.py)."""
from saywell.engine.profiles.cpu.reading import read_span, shorter, with_unread
from saywell.engine.types import SentenceScores, WordErrorType, WordScore

REFERENCE = "the cat sat on the mat then it ran away to the barn".split()


def test_the_span_runs_from_the_first_to_the_last_reference_word_heard():
    assert read_span(REFERENCE, "then it ran away".split()) == (6, 10)
    assert read_span(REFERENCE, "uh then it um ran away".split()) == (6, 10)  # fillers do not widen it
    assert read_span(REFERENCE, "the cat sat".split()) == (0, 3)


def test_without_any_match_the_span_is_as_many_leading_words_as_were_heard():
    assert read_span(REFERENCE, "hello there".split()) == (0, 2)
    assert read_span(REFERENCE, []) == (0, 1)


def test_a_shorter_span_keeps_its_start_and_at_least_one_word():
    assert shorter((6, 10)) == (6, 8) and shorter((6, 7)) == (6, 7)


def test_words_outside_the_span_are_omitted_and_completeness_counts_them():
    read = tuple(WordScore(w, 100 * i, 100 * i + 90, 8.0, 9.0, 8.0, WordErrorType.NONE, False)
                 for i, w in enumerate(REFERENCE[6:10]))
    scores, words = with_unread(SentenceScores(8.0, 7.0, 6.0, 7.5, 10.0), read, REFERENCE, (6, 10), 1500)
    assert [w.text for w in words] == REFERENCE
    omitted = [w for w in words if w.error_type is WordErrorType.OMISSION]
    assert len(omitted) == len(REFERENCE) - 4 and all(w.needs_improvement and w.accuracy == 0 for w in omitted)
    assert [w.start_ms for w in words[:6]] == [0] * 6 and words[-1].start_ms == 1500
    assert scores.completeness == 10.0 * 4 / len(REFERENCE)
    assert scores.total == 0.8 * 8.0 * scores.completeness / 10 + 0.1 * 7.0 + 0.1 * 6.0
    assert (scores.accuracy, scores.fluency, scores.prosody) == (8.0, 7.0, 6.0)
