"""Sentence-sized windows of long utterances: where they are cut, and what each window's features hold."""
import numpy as np
import pytest

from saywell.engine.features.prosody import ProsodyTrack
from saywell.engine.features.utterance import (UtteranceFeatures, WordFeatures, sentence_features,
                                               windowed_features)
from saywell.engine.features.windows import (LONGEST_WHOLE, MAX_WINDOW_WORDS, MIN_WINDOW_WORDS, sentence_ends,
                                             sentence_windows, weighted_sentence, window_bounds)
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


def test_a_run_on_sentence_longer_than_twelve_words_is_cut_at_its_longest_pause():
    gaps = [50] * 8 + [700] + [50] * 9  # 19 words, one sentence
    assert sentence_windows(timed(gaps), [i == 18 for i in range(19)]) == [(0, 9), (9, 19)]


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


def test_a_long_utterance_is_cut_at_its_longest_pauses_into_windows_of_at_most_twelve_words():
    # three 7-word sentences, 600 ms and 900 ms pauses between them, short gaps inside
    gaps = [40] * 6 + [600] + [60] * 6 + [900] + [50] * 6
    windows = sentence_windows(timed(gaps))
    assert windows == [(0, 7), (7, 14), (14, 21)]
    assert all(MIN_WINDOW_WORDS <= b - a <= MAX_WINDOW_WORDS for a, b in windows)


def test_no_window_is_shorter_than_four_words_even_where_the_longest_pause_is_near_an_end():
    gaps = [2000, 1500] + [50] * 11  # 14 words, the longest pauses after the first and second words
    windows = sentence_windows(timed(gaps))
    assert windows[0][0] == 0 and windows[-1][1] == 14
    assert all(b - a >= MIN_WINDOW_WORDS for a, b in windows)
    assert [a for a, _ in windows[1:]] == [b for _, b in windows[:-1]]  # contiguous


def test_fluent_speech_without_pauses_is_cut_near_the_middle():
    assert sentence_windows(timed([50] * 19)) == [(0, 10), (10, 20)]


def test_windows_cover_every_word_once_for_any_length():
    rng = np.random.default_rng(0)
    for n in range(13, 80):
        windows = sentence_windows(timed(list(rng.integers(0, 800, n - 1))))
        assert windows[0][0] == 0 and windows[-1][1] == n
        assert all(b1 == a2 for (_, b1), (a2, _) in zip(windows, windows[1:]))
        assert all(MIN_WINDOW_WORDS <= b - a <= MAX_WINDOW_WORDS for a, b in windows)


def test_window_sizes_that_cannot_be_met_are_refused():
    with pytest.raises(ValueError, match="max_words"):
        sentence_windows(timed([50] * 20), max_words=6, min_words=4)


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
    # frames of 10 ms: words of 300 ms, 20 ms apart, a 1 s pause after the seventh
    starts = [i * 32 + (100 if i >= 7 else 0) for i in range(14)]
    words = tuple(word(f"w{i}", s, s + 30, -float(i)) for i, s in enumerate(starts))
    heard = tuple(RecognizedWord(f"w{i}", s * 10, (s + 30) * 10, 0.5 + i / 100) for i, s in enumerate(starts))
    prosody = ProsodyTrack(np.full(600, 120.0), np.full(600, 60.0))
    transcript = Transcript("", heard)
    whole = UtteranceFeatures(words, sentence_features(words, heard, prosody, False))
    windows = sentence_windows([(w.word.start_frame, w.word.end_frame) for w in words])
    assert windows == [(0, 7), (7, 14)]
    first = [int(start) for start, _ in window_bounds([(w.word.start_frame, w.word.end_frame) for w in words],
                                                      windows, 600)]
    parts = windowed_features(whole, transcript, prosody, False, windows, first)
    assert [len(p.words) for p in parts] == [7, 7]
    for part, (a, b), start in zip(parts, windows, first):
        assert part.sentence == sentence_features(words[a:b], heard[a:b], prosody, False)
        assert part.sentence["n_words"] == 7 and part.sentence["longest_pause_ms"] == 0.0  # no pause inside
        assert [w.word.start_frame for w in part.words] == [s - start for s in starts[a:b]]
        assert [p.start_frame for w in part.words for p in w.word.phones] == [s - start for s in starts[a:b]]
    assert whole.sentence["longest_pause_ms"] > 900  # the whole utterance holds the pause between the two


def test_moving_a_word_moves_its_phones():
    phone = AlignedPhone("AH", "AH1", 12, 20, -5.0, -5.0, 0.0, ("AH",))
    moved = AlignedWord("a", 10, 20, (phone,)).moved(-10)
    assert (moved.start_frame, moved.end_frame, moved.phones[0].start_frame, moved.phones[0].end_frame) == (0, 10, 2, 10)
