"""Scorers: features of many utterances in, scores out, in one call (`score_batch`), so a network scorer runs
one forward pass for many streams' utterances."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from saywell.engine.features.utterance import UtteranceFeatures
from saywell.engine.types import SentenceScores, WordScore


@dataclass(frozen=True)
class ScoreJob:
    """One utterance to score. `words_only`: an utterance still in progress, its words scored as recognised
    words (the result is the words alone, not (sentence scores, words))."""

    features: UtteranceFeatures
    closed: bool
    sensitivity: float
    encoder: np.ndarray | None = field(default=None, repr=False)  # the recogniser's encoder frames
    single_asr: bool = False  # open-mode features without a target ASR's words
    words_only: bool = False
    # A long utterance's sentence-sized windows (features/windows.py), each an utterance of its own with the
    # encoder frames of its own stretch of audio: a scorer that can scores each window's sentence and reports
    # their mean weighted by words. Empty: one window.
    windows: tuple[tuple[UtteranceFeatures, np.ndarray], ...] = field(default=(), repr=False)


ScoreResult = tuple[SentenceScores, tuple[WordScore, ...]] | tuple[WordScore, ...]


class Scorer(Protocol):
    name: str

    def version(self) -> str: ...

    def flag_threshold(self, sensitivity: float, closed: bool = True, single_asr: bool = False) -> float: ...

    def score_batch(self, jobs: Sequence[ScoreJob]) -> list[ScoreResult | Exception]: ...


def score_each(scorer, jobs: Sequence[ScoreJob]) -> list[ScoreResult | Exception]:
    """`score_batch` for scorers whose per-utterance work is all there is (no network to batch)."""
    results: list[ScoreResult | Exception] = []
    for job in jobs:
        try:
            if job.words_only:
                results.append(scorer.score_words(job.features, job.sensitivity, job.encoder, job.single_asr))
            else:
                results.append(scorer.score(job.features, job.closed, job.sensitivity, job.encoder, job.single_asr))
        except Exception as exc:  # noqa: BLE001 - the job's own result
            results.append(exc)
    return results
