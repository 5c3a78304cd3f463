"""An utterance handle for profiles that assess an utterance whole: nothing is analysed while the learner
speaks; at a pause the final assessment of the audio so far starts (when the engine has room) and is kept if the
pause turns out to be the end. (The cpu profile does more: it cuts the audio into segments as it goes.)"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Protocol

import numpy as np

from saywell.engine.options import EngineOptions
from saywell.engine.types import AssessmentRequest, EngineError, UtteranceResult

log = logging.getLogger(__name__)


class AssessesWhole(Protocol):
    options: EngineOptions

    def backlog(self) -> int: ...

    async def assess(self, request: AssessmentRequest) -> UtteranceResult: ...


class EarlyFinal:
    """The final assessment started at a pause, kept while the utterance's audio is the audio it assessed."""

    def __init__(self) -> None:
        self._early: tuple[int, asyncio.Future] | None = None  # (samples assessed, the assessment)

    def start(self, samples: int, task: asyncio.Future) -> None:
        self.drop()
        self._early = (samples, task)

    def drop(self) -> bool:
        """Cancels the early assessment (speech resumed); False when there was none."""
        if self._early is None:
            return False
        self._early[1].cancel()
        self._early = None
        return True

    def take(self, samples: int) -> asyncio.Future | None:
        """The early assessment if it assessed `samples` samples, else None (a stale one is cancelled)."""
        early, self._early = self._early, None
        if early is None:
            return None
        if early[0] == samples:
            return early[1]
        early[1].cancel()
        return None


class WholeUtterance:
    def __init__(self, engine: AssessesWhole, template: AssessmentRequest) -> None:
        self._engine = engine
        self._template = template
        self._early = EarlyFinal()
        self.path = "whole"

    def _request(self, audio: np.ndarray) -> AssessmentRequest:
        return dataclasses.replace(self._template, audio=audio)

    def paused(self, audio: np.ndarray) -> asyncio.Future | None:
        self.resumed()
        early = self._engine.options.early
        if not early.speculative_finals or self._engine.backlog() > early.max_backlog:
            return None
        task = asyncio.ensure_future(self._engine.assess(self._request(audio)))
        task.add_done_callback(_retrieve)
        self._early.start(len(audio), task)
        return task

    def resumed(self) -> bool:
        return self._early.drop()

    def silence(self, audio: np.ndarray, cut_ms: int) -> None:
        pass

    def words_settled(self, audio: np.ndarray, end_ms: int, next_start_ms: int | None) -> None:
        pass

    async def finish(self, audio: np.ndarray) -> UtteranceResult:
        early = self._early.take(len(audio))
        if early is not None:
            self.path = "early"
            return await early
        self.path = "whole"
        return await self._engine.assess(self._request(audio))

    def cancel(self) -> None:
        self.resumed()


def _retrieve(task: asyncio.Future) -> None:
    """An early assessment's error is the final's to report if it is used; unused, it must not be lost."""
    if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), EngineError):
        log.error("early assessment failed", exc_info=task.exception())
