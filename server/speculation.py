"""Work a stream starts before the endpoint, so that little is left to do when the utterance ends.

Each pause of the learner (the segmenter's SpeechPaused) does two things:
- extends the utterance's `SegmentChain` (open mode): the audio since the previous pause is analysed now
  (ASR, phone loop, alignment) and stays valid whether or not the learner goes on;
- starts a `Speculation`: the final assessment of the audio so far, used as is if the pause becomes the
  endpoint, cancelled if speech resumes.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import numpy as np

from saywell.engine.pipeline import AssessmentEngine, Segment
from saywell.engine.types import AssessmentRequest, EngineError, UtteranceResult
from saywell.server.segmenter import UtteranceEnded

log = logging.getLogger(__name__)
Spawn = Callable[[Coroutine], asyncio.Task]


def _drop(job: asyncio.Future | None) -> None:
    """Cancel a job no longer needed, retrieving its failure if it already failed (it was handled elsewhere)."""
    if job is None:
        return
    if job.done() and not job.cancelled():
        job.exception()
    job.cancel()


@dataclass
class Speculation:
    """A final assessment started at a pause: used if the utterance ends with exactly the paused audio."""

    index: int
    samples: int
    task: asyncio.Task

    def matches(self, event: UtteranceEnded) -> bool:
        return event.index == self.index and len(event.audio) == self.samples


@dataclass
class SegmentChain:
    """Consecutive segments of one open-response utterance, from its first sample, analysed at its pauses."""

    engine: AssessmentEngine
    spawn: Spawn
    scorer: str = ""
    # Called with each analysed segment and its audio: its words are final until the assessment, so a stream
    # can send them as committed interim results.
    on_segment: Callable[[Segment, np.ndarray], Coroutine] | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _announced: asyncio.Task | None = None  # the last announcement: they run in chain order
    covered: int = 0  # samples analysed or being analysed

    @property
    def segments(self) -> int:
        return len(self._tasks)

    def extend(self, audio: np.ndarray) -> None:
        """Start analysing the audio after what the chain covers (`audio` is the utterance so far)."""
        if len(audio) <= self.covered:
            return
        piece = audio[self.covered:]
        task = self.spawn(self.engine.analyse_segment(piece, self.covered, self.scorer))
        self._tasks.append(task)
        self.covered = len(audio)
        if self.on_segment is not None:
            self._announced = self.spawn(self._announce(task, piece, self._announced))

    async def _announce(self, task: asyncio.Task, audio: np.ndarray, previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # a later segment's words never go out before an earlier one's
        try:
            segment = await asyncio.shield(task)
        except EngineError:
            return  # the final assessment falls back to the whole utterance; nothing to announce
        await self.on_segment(segment, audio)

    async def assess(self, request: AssessmentRequest) -> UtteranceResult:
        """The final assessment: analyse only what the chain does not cover yet, then join and score.

        A failed segment (say, alignment found no path in a stretch of noise) falls back to assessing the
        whole utterance at once.
        """
        # The rest of the audio and the utterance's encoder frames need no earlier segment: they start now,
        # beside the segments still in flight.
        rest = (asyncio.ensure_future(self.engine.analyse_segment(request.audio[self.covered:], self.covered))
                if self.covered < len(request.audio) else None)
        encoding = self.engine.utterance_encoding(request)
        try:
            # Shielded: cancelling a speculation that waits here must not cancel segments the final still needs.
            segments = [await asyncio.shield(task) for task in self._tasks]
            if rest is not None:
                segments.append(await rest)
            return await self.engine.assess_segments(request, segments, encoding)
        except EngineError as exc:
            log.info("segmented assessment failed (%s); assessing the whole utterance", exc)
        finally:
            for job in (rest, encoding):
                _drop(job)  # done with, or (on failure) not to share the CPU with the fallback
        return await self.engine.assess(request)
