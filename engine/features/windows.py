"""Sentence-sized windows of a long utterance, for its sentence scores.

The scorers learnt sentence scores from speechocean762, whose utterances are one read sentence of at most 10
words. A longer stretch of speech (a chatbot turn, a paragraph read aloud) lies outside what they saw: its pauses
between sentences read as hesitations, and Whisper's encoder frames past the first seconds carry positions no
training utterance had. Three same-speaker validation utterances joined into one (about 19 words) were scored
1.2-2.3 points below the experts' scores of the parts, in both profiles and modes.

So an utterance of more than LONGEST_WHOLE words is cut into windows after the recogniser's sentence ends (a run
longer than 95% of the training utterances also at its longest pause). Each window is scored as an utterance of its own
(the profile encodes its stretch of audio again), and the utterance's sentence scores are the windows' mean
weighted by words. The cpu profile keeps each word's scores from the whole utterance (and its baseline scorer,
which reads no encoder frames, scores the whole); the neural profile takes its words' scores from the windows
too, since its heads read nothing but the window's frames and numbers. On the joined utterances the bias fell
from -1.2..-2.3 to -0.3..-0.8, at a cost in ranking: accuracy PCC moved by -0.06..+0.00, fluency, prosody and
total by -0.14..+0.01 (README.md, "Long turns, native speakers, recording conditions"). Utterances of up to
LONGEST_WHOLE words, every speechocean762 one in closed mode among them, are scored whole as before.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from saywell.engine.types import RecognizedWord

LONGEST_WHOLE = 12  # speechocean762's utterances have at most 10 reference words: closed mode never cuts one
MIN_WINDOW_WORDS = 4  # no window shorter than this (a training sentence has 4 or more words in 95% of cases)
# A run of words without a sentence end is cut at its longest pause only past both LONGEST_WHOLE words and
# LONGEST_RUN_MS, longer than 95% of the training utterances (8.1 s; 99% are under 12.5 s). In open mode a
# learner's garbled speech can come out of the ASR as 13-44 words in 5-15 s (15 of validation fold 0's 500
# utterances), which the scorers learnt to score whole: cutting every run over 12 words cost that fold's open-mode
# sentence PCCs 0.010-0.019; with this limit they moved by -0.003..+0.001 (words +0.009).
LONGEST_RUN_MS = 8_000


def sentence_ends(spans: Sequence[tuple[float, float]], heard: Sequence[RecognizedWord]) -> list[bool]:
    """Which of the words timed by `spans` (ms) close a sentence: those nearest (by their middles) to a recognised
    word after which the recogniser closed one. Time, not text, maps them, so it serves the reference's words
    (closed mode) and a second ASR's as well as the recognised ones."""
    ends = [False] * len(spans)
    if not spans:
        return ends
    middles = np.array([(a + b) / 2 for a, b in spans])
    for word in heard:
        if word.ends_sentence:
            ends[int(np.argmin(np.abs(middles - (word.start_ms + word.end_ms) / 2)))] = True
    return ends


def sentence_windows(spans: Sequence[tuple[float, float]], ends: Sequence[bool] = (),
                     min_words: int = MIN_WINDOW_WORDS) -> list[tuple[int, int]]:
    """[first, last) word indices of each window over words timed by `spans` (start, end in ms), in order;
    `ends`: which words close a sentence (sentence_ends).

    An utterance of up to LONGEST_WHOLE words is one window. A longer one is cut after each sentence end that
    leaves at least `min_words` words on both sides (a shorter sentence stays with its neighbour); a run without
    one that is still longer than LONGEST_RUN_MS and LONGEST_WHOLE words is cut at its longest gap between words.
    Cutting at the longest pauses alone would take a hesitant learner's hesitations out of the windows (measured:
    fluency PCC 0.80 -> 0.72 on joined validation utterances); sentence ends are where a rater hears one sentence
    stop and the next begin."""
    if min_words < 1:
        raise ValueError(f"min_words must be >= 1, got {min_words}")
    if ends and len(ends) != len(spans):
        raise ValueError(f"{len(ends)} sentence ends for {len(spans)} words")
    if len(spans) <= LONGEST_WHOLE:
        return [(0, len(spans))]
    ends = list(ends) or [False] * len(spans)
    return _split(spans, ends, 0, len(spans), min_words)


def _split(spans, ends, first: int, last: int, min_words: int) -> list[tuple[int, int]]:
    cuts = range(first + min_words, last - min_words + 1)  # a cut at k: words [first, k) and [k, last)

    def gap(k: int) -> float:
        return spans[k][0] - spans[k - 1][1]

    at_ends = [k for k in cuts if ends[k - 1]]
    too_long = last - first > LONGEST_WHOLE and spans[last - 1][1] - spans[first][0] > LONGEST_RUN_MS
    if at_ends:
        cut = max(at_ends, key=lambda k: (gap(k), -abs(2 * k - first - last)))
    elif too_long and cuts:
        cut = max(cuts, key=lambda k: (gap(k), -abs(2 * k - first - last)))
    else:
        return [(first, last)]
    return _split(spans, ends, first, cut, min_words) + _split(spans, ends, cut, last, min_words)


def plan_windows(spans: Sequence[tuple[float, float]], heard: Sequence[RecognizedWord],
                 end: float) -> tuple[list[tuple[int, int]], list[tuple[float, float]]]:
    """The windows of words timed by `spans` (ms), cut after `heard`'s sentence ends, and their stretches of an
    utterance `end` ms long (window_bounds); ([], []) when it is one window."""
    windows = sentence_windows(spans, sentence_ends(spans, heard))
    return (windows, window_bounds(spans, windows, end)) if len(windows) > 1 else ([], [])


def window_bounds(spans: Sequence[tuple[float, float]], windows: Sequence[tuple[int, int]],
                  end: float) -> list[tuple[float, float]]:
    """Each window's stretch of the utterance, [start, end): consecutive windows meet in the middle of the gap
    between them; the first starts at 0 and the last ends at `end`."""
    cuts = [(spans[b - 1][1] + spans[b][0]) / 2 for _, b in windows[:-1]]
    return list(zip([0.0] + cuts, cuts + [float(end)]))


def weighted_sentence(scores: Sequence[np.ndarray], words: Sequence[int]) -> np.ndarray:
    """The windows' sentence scores, averaged with each window weighted by its number of `words`."""
    return np.average(np.asarray(scores, dtype=np.float64), axis=0, weights=np.asarray(words, dtype=np.float64))
