"""Sentence-sized windows of long utterances: where they are cut, and what each window's features hold."""
import numpy as np
import pytest

from saywell.engine.features.prosody import ProsodyTrack
from saywell.engine.features.utterance import (UtteranceFeatures, WordFeatures, sentence_features,
                                               windowed_features)
from saywell.engine.features.windows import (LONGEST_RUN_MS, LONGEST_WHOLE, MIN_WINDOW_WORDS,
                                             sentence_ends, sentence_windows, weighted_sentence, window_bounds)
from saywell.engine.stages.asr import ends_sentence
from saywell.engine.stages.alignment import AlignedPhone, AlignedWord
from saywell.engine.types import RecognizedWord, Transcript


def timed(gaps_ms: list[int], word_ms: int = 300) -> list[tuple[int, int]]:
    """Word spans with these gaps between consecutive words (len(gaps_ms) + 1 words)."""
    spans, t = [], 0
    for gap in [0, *gaps_ms]:
        t += gap
        spans.append((t, t + word_ms))
        t += word_ms
    return spans


def test_an_utterance_of_up_to_twelve_words_is_one_window_whatever_its_sentences():
    for n in (0, 1, 10, LONGEST_WHOLE):
        assert sentence_windows(timed([50] * (n - 1)) if n else [], [True] * n) == [(0, n)]


def test_a_long_utterance_is_cut_after_each_sentence_end_even_where_a_hesitation_is_longer():
    # 5 + 7 + 8 words; a 1.5 s hesitation inside the second sentence, 300 ms between sentences
    gaps = [50] * 4 + [300] + [50, 50, 1500, 50, 50, 50] + [300] + [50] * 7
    ends = [i in (4, 11, 19) for i in range(20)]
    assert sentence_windows(timed(gaps), ends) == [(0, 5), (5, 12), (12, 20)]


def test_a_sentence_shorter_than_four_words_stays_with_its_neighbour():
    gaps = [50] * 5 + [400] + [50, 50] + [400] + [50] * 7  # 6 + 3 + 8 words
    ends = [i in (5, 8, 16) for i in range(17)]
    windows = sentence_windows(timed(gaps), ends)
    assert windows in ([(0, 6), (6, 17)], [(0, 9), (9, 17)])
    assert all(b - a >= MIN_WINDOW_WORDS for a, b in windows)


def test_a_run_on_sentence_longer_than_most_training_utterances_is_cut_at_its_longest_pause():
    gaps = [50] * 8 + [700] + [50] * 9  # 19 words, one sentence
    ends = [i == 18 for i in range(19)]
    assert sentence_windows(timed(gaps), ends) == [(0, 19)]  # 7.3 s
    assert sentence_windows(timed(gaps, word_ms=1200), ends) == [(0, 9), (9, 19)]  # 23.6 s


def test_sentence_ends_map_to_the_words_nearest_in_time():
    spans = [(0, 300), (350, 700), (800, 1200), (1250, 1600)]
    heard = [RecognizedWord("a", 0, 310), RecognizedWord("b", 340, 690, ends_sentence=True),
             RecognizedWord("c", 820, 1150), RecognizedWord("d", 1240, 1610, ends_sentence=True)]
    assert sentence_ends(spans, heard) == [False, True, False, True]
    assert sentence_ends([], heard) == []


@pytest.mark.parametrize("raw, closes", [(" man.", True), (" now?", True), (' it!"', True), (" Mr.", False),
                                         (" and...", False), (" 3.5", False), (" well,", False), (" Dr.", False)])
def test_the_recogniser_closes_a_sentence_at_a_stop_a_question_or_an_exclamation(raw, closes):
    assert ends_sentence(raw) is closes


def test_a_long_run_without_a_sentence_end_stays_whole_unless_it_outlasts_most_training_utterances():
    gaps = [40] * 6 + [600] + [60] * 6 + [900] + [50] * 6  # 21 words, no sentence end
    assert sentence_windows(timed(gaps, word_ms=200)) == [(0, 21)]  # 6.6 s: a garbled learner's 21 words, whole
    windows = sentence_windows(timed(gaps, word_ms=1000))  # 23.4 s: cut at its longest pauses, then again
    assert windows == [(0, 7), (7, 14), (14, 21)]
    assert LONGEST_RUN_MS == 8_000


def test_a_sentence_end_too_near_an_edge_does_not_cut():
    ends = [i in (0, 1, 13) for i in range(14)]  # sentences of one and one word, then twelve
    assert sentence_windows(timed([2000, 1500] + [50] * 11, word_ms=200), ends) == [(0, 14)]


def test_fluent_speech_outlasting_most_training_utterances_is_cut_near_the_middle():
    assert sentence_windows(timed([50] * 19, word_ms=1200)) == [(0, 10), (10, 20)]


def test_windows_cover_every_word_once_for_any_length():
    rng = np.random.default_rng(0)
    for n in range(13, 80):
        spans = timed(list(rng.integers(0, 800, n - 1)), word_ms=int(rng.integers(200, 900)))
        windows = sentence_windows(spans, list(rng.random(n) < 0.2))
        assert windows[0][0] == 0 and windows[-1][1] == n
        assert all(b1 == a2 for (_, b1), (a2, _) in zip(windows, windows[1:]))
        assert all(b - a >= MIN_WINDOW_WORDS for a, b in windows)
        for a, b in windows:  # a window past both limits is one that cannot be cut into two of 4 words
            outlasting = b - a > LONGEST_WHOLE and spans[b - 1][1] - spans[a][0] > LONGEST_RUN_MS
            assert not outlasting or b - a < 2 * MIN_WINDOW_WORDS


def test_windows_meet_in_the_middle_of_the_pause_between_them():
    spans = timed([40] * 6 + [600] + [60] * 6)
    # 7 words of 300 ms with six 40 ms gaps end at 2340 ms; the eighth starts 600 ms later, at 2940
    assert window_bounds(spans, [(0, 7), (7, 14)], 9000) == [(0.0, 2640.0), (2640.0, 9000.0)]


def test_sentence_scores_are_averaged_by_words():
    scores = [np.array([8.0, 6.0]), np.array([5.0, 9.0])]
    np.testing.assert_allclose(weighted_sentence(scores, [3, 1]), [7.25, 6.75])


def word(text: str, start: int, end: int, gop: float) -> WordFeatures:
    phone = AlignedPhone("AH", "AH1", start, end, -5.0, -5.0, gop, ("AH",))
    return WordFeatures(AlignedWord(text, start, end, (phone,)),
                        {"gop_mean": gop, "loop_agreement": 1.0, "asr_char_distance": 0.0}, True)


def test_a_window_is_an_utterance_of_its_own_with_its_words_moved_to_its_start():
    # frames of 10 ms: words of 300 ms, 20 ms apart, a 1 s pause after the seventh; the voice an octave higher
    # after the pause, and the recogniser's times 50 ms late, with an "um" early in the pause
    starts = [i * 32 + (100 if i >= 7 else 0) for i in range(14)]
    words = tuple(word(f"w{i}", s, s + 30, -float(i)) for i, s in enumerate(starts))
    heard = tuple(RecognizedWord(f"w{i}", s * 10 + 50, (s + 30) * 10 + 50, 0.5 + i / 100)
                  for i, s in enumerate(starts))
    um = RecognizedWord("um", (starts[6] + 35) * 10, (starts[6] + 45) * 10, 0.1)
    heard = heard[:7] + (um,) + heard[7:]
    pitch = np.where(np.arange(600) < starts[7] - 20, 120.0, 240.0)
    prosody = ProsodyTrack(pitch, np.full(600, 60.0))
    transcript = Transcript("", heard)
    whole = UtteranceFeatures(words, sentence_features(words, heard, prosody, False))
    ends = [i == 6 for i in range(14)]  # the recogniser closed a sentence after the seventh word
    spans_ms = [(w.word.start_frame * 10, w.word.end_frame * 10) for w in words]
    windows = sentence_windows(spans_ms, ends)
    assert windows == [(0, 7), (7, 14)]
    bounds = window_bounds(spans_ms, windows, 6000)
    first = [int(start // 10) for start, _ in bounds]
    parts = windowed_features(whole, transcript, prosody, False, windows, first)
    assert [len(p.words) for p in parts] == [7, 7]
    for part, (a, b), start, (lo, hi) in zip(parts, windows, first, bounds):
        inside = [h for h in heard if lo <= (h.start_ms + h.end_ms) / 2 < hi]  # by time, not by index
        assert part.sentence == sentence_features(words[a:b], inside, prosody, False)
        assert part.sentence["n_words"] == 7 and part.sentence["longest_pause_ms"] == 0.0  # no pause inside
        assert [w.word.start_frame for w in part.words] == [s - start for s in starts[a:b]]
        assert [p.start_frame for w in part.words for p in w.word.phones] == [s - start for s in starts[a:b]]
    assert parts[0].sentence["asr_probability"] < np.mean([h.probability for h in heard[:7]])  # the "um"'s 0.1
    # pitch read where the words were said, before their times moved: an octave (12 semitones) apart
    assert parts[1].sentence["pitch_median_st"] - parts[0].sentence["pitch_median_st"] == pytest.approx(12, abs=0.01)
    assert whole.sentence["longest_pause_ms"] > 900  # the whole utterance holds the pause between the two


def test_moving_a_word_moves_its_phones():
    phone = AlignedPhone("AH", "AH1", 12, 20, -5.0, -5.0, 0.0, ("AH",))
    moved = AlignedWord("a", 10, 20, (phone,)).moved(-10)
    assert (moved.start_frame, moved.end_frame, moved.phones[0].start_frame, moved.phones[0].end_frame) == (0, 10, 2, 10)


def test_a_stop_the_segment_cut_made_is_not_a_sentence_end_but_the_speakers_is():
    from saywell.engine.profiles.cpu.segments import Segment, joined_transcript

    def segment(start_s: float, text: str, words: list[tuple[str, bool]]) -> Segment:
        heard = tuple(RecognizedWord(w, i * 300, i * 300 + 250, ends_sentence=end) for i, (w, end) in enumerate(words))
        return Segment(int(start_s * 16000), 32000, Transcript(text, heard), None)

    joined = joined_transcript([segment(0, "The fox jumps.", [("the", False), ("fox", False), ("jumps", True)]),
                                segment(2, "over the dog.", [("over", False), ("the", False), ("dog", True)]),
                                segment(4, "It ran.", [("it", False), ("ran", True)])])
    assert joined.text == "The fox jumps over the dog. It ran."
    assert [w.ends_sentence for w in joined.words] == [False, False, False, False, False, True, False, True]


def test_a_token_that_normalises_to_several_words_closes_the_sentence_on_its_last():
    from saywell.engine.stages.asr import _split_normalized

    words = _split_normalized(" 1990.", 1.0, 2.0, 0.9)
    assert len(words) > 1 and [w.ends_sentence for w in words] == [False] * (len(words) - 1) + [True]


def test_sentence_windows_refuse_ends_that_do_not_match_the_words():
    with pytest.raises(ValueError, match="3 sentence ends for 14 words"):
        sentence_windows(timed([50] * 13), [True, False, True])
