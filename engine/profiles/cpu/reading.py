"""Closed mode when an utterance holds only part of its reference text.

A reading app may give a paragraph as the reference while the learner's pauses end an utterance after each
sentence. When the audio cannot hold the whole reference (three 10 ms frames per phone), the utterance is
assessed against the span of the reference it read: the stretch between the first and the last reference word
the recogniser heard. The reference words outside that span are reported as omitted (no times, accuracy 0), so
completeness says how much of the reference this utterance read, and total follows the corpus rubric with it.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence

from saywell.engine.types import SentenceScores, WordErrorType, WordScore


def read_span(reference: Sequence[str], heard: Sequence[str]) -> tuple[int, int]:
    """[start, end) of the reference words the recognised words cover (the first `len(heard)` words when none
    of them match)."""
    matcher = difflib.SequenceMatcher(a=list(reference), b=list(heard), autojunk=False)
    blocks = [b for b in matcher.get_matching_blocks() if b.size]
    if not blocks:
        return 0, min(len(reference), max(1, len(heard)))
    return blocks[0].a, blocks[-1].a + blocks[-1].size


def shorter(span: tuple[int, int]) -> tuple[int, int]:
    """The first half of the span (at least one word): what to try when even the span does not fit."""
    start, end = span
    return start, start + max(1, (end - start) // 2)


def with_unread(scores: SentenceScores, words: Sequence[WordScore], reference: Sequence[str],
                span: tuple[int, int], duration_ms: int) -> tuple[SentenceScores, tuple[WordScore, ...]]:
    """The span's assessment widened to the whole reference: words outside the span omitted."""
    start, end = span

    def omitted(text: str, at_ms: int) -> WordScore:
        return WordScore(text, at_ms, at_ms, 0.0, 0.0, 0.0, WordErrorType.OMISSION, True)

    full = (tuple(omitted(w, 0) for w in reference[:start]) + tuple(words)
            + tuple(omitted(w, duration_ms) for w in reference[end:]))
    said = sum(w.error_type is not WordErrorType.OMISSION for w in full)
    completeness = 10.0 * said / len(full)
    total = 0.8 * scores.accuracy * completeness / 10 + 0.1 * scores.fluency + 0.1 * scores.prosody
    return dataclasses.replace(scores, completeness=completeness, total=total), full
