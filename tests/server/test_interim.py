"""The commit rule of interim word results, on its own."""
from saywell.engine.types import WordErrorType, WordScore
from saywell.server.interim import COMMIT_MARGIN_MS, InterimState


def word(text: str, start: int, end: int) -> WordScore:
    return WordScore(text, start, end, 8.0, 10.0, 8.0, WordErrorType.NONE, False)


def test_words_two_decodes_agree_on_are_committed_once_clear_of_the_live_edge():
    state = InterimState(0)
    first = [word("we", 0, 300), word("went", 300, 600), word("to", 600, 700)]
    tail = state.after_committed(first)
    assert state.agreed(tail, audio_ms=800) == 0  # nothing to agree with yet
    state.commit_decoded(tail, 0)
    second = first + [word("the", 700, 900), word("market", 900, 1500)]
    tail = state.after_committed(second)
    stable = state.agreed(tail, audio_ms=1100)  # "to" ends 400 ms before the edge: not clear yet
    assert stable == 2 and 700 >= 1100 - COMMIT_MARGIN_MS
    state.commit_decoded(tail, stable)
    assert (state.committed, state.committed_end_ms, state.previous) == (2, 600, ["to", "the", "market"])
    assert [w.text for w in state.after_committed(second)] == ["to", "the", "market"]
    assert state.window_start_ms() == 100  # 500 ms of context before the first uncommitted word


def test_a_disagreeing_decode_commits_nothing_and_a_segment_settles_its_audio():
    state = InterimState(0, previous=["we", "want"])
    tail = state.after_committed([word("we", 0, 300), word("went", 300, 600)])
    assert state.agreed(tail, audio_ms=2000) == 1  # "went" is not "want"
    state.provisional = [word("the", 1500, 1700), word("market", 1750, 2100)]
    state.commit_segment([word("we", 0, 300), word("went", 300, 600), word("to", 600, 700)], segment_end_ms=1800)
    assert (state.committed, state.committed_end_ms, state.previous) == (3, 1800, [])
    assert state.stable_texts == ["we", "went", "to"]
    assert [w.text for w in state.provisional] == ["market"], "the tail after the segment's end stays provisional"
    assert state.after_committed([word("market", 1500, 1790)]) == []


def test_shifted_moves_a_word_and_its_phones():
    moved = word("we", 10, 20).shifted(1000)
    assert (moved.start_ms, moved.end_ms) == (1010, 1020)
    assert moved.shifted(0) is moved
