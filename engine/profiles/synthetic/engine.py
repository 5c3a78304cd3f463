"""The synthetic profile: one placeholder word per 400 ms of audio, flat scores, answered at once.

It exists for two reasons: a load tester can measure the server without the models (`--profile synthetic`),
and it proves the engine seam: a profile is this folder and one registry entry, nothing above the engine.
"""
from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata

import numpy as np

from saywell.engine.language.text import normalize_words
from saywell.engine.options import EngineOptions
from saywell.engine.types import (SAMPLE_RATE, AssessmentRequest, Capabilities, EngineError, EngineInfo, SentenceScores,
                                  UtteranceResult, WordErrorType, WordScore)

WORD_MS = 400
SCORE = 5.0  # the middle of the scale: no judgement either way
SCORER = "synthetic"


def placeholder_words(duration_ms: int, texts: list[str] | None = None) -> tuple[WordScore, ...]:
    count = len(texts) if texts else max(1, duration_ms // WORD_MS)
    step = max(duration_ms // count, 1)
    return tuple(WordScore(texts[i] if texts else f"word{i}", i * step, (i + 1) * step, SCORE, SCORE, SCORE,
                           WordErrorType.NONE, False) for i in range(count))


class SyntheticUtterance:
    """Does nothing early: there is nothing to gain."""

    path = "whole"

    def __init__(self, engine: "SyntheticEngine", template: AssessmentRequest) -> None:
        self._engine = engine
        self._template = template

    def paused(self, audio: np.ndarray) -> asyncio.Future | None:
        return None

    def resumed(self) -> bool:
        return False

    def silence(self, audio: np.ndarray, cut_ms: int) -> None:
        pass

    def words_settled(self, audio: np.ndarray, end_ms: int, next_start_ms: int | None) -> None:
        pass

    async def finish(self, audio: np.ndarray) -> UtteranceResult:
        return await self._engine.assess(dataclasses.replace(self._template, audio=audio))

    def cancel(self) -> None:
        pass


class SyntheticEngine:
    def __init__(self, options: EngineOptions = EngineOptions(), on_batch=None) -> None:
        if options.backend != "local":
            raise EngineError(f"the synthetic profile has no {options.backend!r} backend; it has: local")
        self.options = options
        self.info = EngineInfo(
            profile="synthetic", backend="local", name="saywell-synthetic",
            version=importlib.metadata.version("saywell"), scorers=(SCORER,), model_versions={},
            capabilities=Capabilities(phones=False, assessment=False))

    def start(self) -> None:
        pass

    async def warm_up(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def backlog(self) -> int:
        return 0

    async def check(self) -> str | None:
        return None  # nothing outside this process to depend on

    async def assess(self, request: AssessmentRequest) -> UtteranceResult:
        duration_ms = len(request.audio) * 1000 // SAMPLE_RATE
        reference = normalize_words(request.reference_text) if request.closed else None
        words = placeholder_words(duration_ms, reference)
        scores = SentenceScores(SCORE, SCORE, SCORE, SCORE, 10.0 if request.closed else None)
        text = " ".join(w.text for w in words)
        return UtteranceResult(text, request.reference_text, scores, words, SCORER, {})

    async def provisional_words(self, request: AssessmentRequest) -> tuple[WordScore, ...]:
        return placeholder_words(len(request.audio) * 1000 // SAMPLE_RATE)

    def begin_utterance(self, template: AssessmentRequest, on_committed=None) -> SyntheticUtterance:
        return SyntheticUtterance(self, template)
