"""The cpu profile's handle on an utterance being spoken: what it analyses before the endpoint.

At each pause of the learner it
- extends the utterance's `SegmentChain` (open mode): the audio since the previous cut is analysed now and
  stays valid whether or not the learner goes on; its words are committed at once;
- starts an early final assessment of the audio so far, used as is if the pause becomes the endpoint and
  dropped if speech resumes.
Silences between words and words the interim decodes settled are further places to cut fluent speech.
Nothing is started while the engine is backed up (`EarlyAnalysisOptions.max_backlog`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine

import numpy as np

from saywell.engine.profiles.cpu.segments import Segment, SegmentChain
from saywell.engine.stages.whole_utterance import EarlyFinal
from saywell.engine.types import SAMPLE_RATE, AssessmentRequest, EngineError, UtteranceResult

log = logging.getLogger(__name__)
FRAME_SAMPLES = SAMPLE_RATE // 100  # pocketsphinx's 10 ms frame: segments start on whole frames


class CpuUtterance:
    def __init__(self, engine, template: AssessmentRequest, on_committed=None) -> None:
        self._engine = engine
        self._template = template
        self._options = engine.options.early
        self._on_committed = on_committed
        self._tasks: set[asyncio.Task] = set()
        self._early = EarlyFinal()  # the final assessment started at the last pause
        self._chain = None
        if self._options.speculative_finals and not template.closed:
            self._chain = SegmentChain(engine, self._spawn, template.scorer,
                                       self._announce if on_committed is not None else None)
        self.path = "whole"

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: an engine error is the final's to report, or its fallback's
        if exc is not None and not isinstance(exc, EngineError):
            log.error("early analysis failed", exc_info=exc)

    def _request(self, audio: np.ndarray) -> AssessmentRequest:
        return dataclasses.replace(self._template, audio=audio)

    def _has_room(self) -> bool:
        return self._options.speculative_finals and self._engine.backlog() <= self._options.max_backlog

    def _min_segment(self) -> int:
        return self._options.min_segment_ms * SAMPLE_RATE // 1000

    # -- what the stream saw ----------------------------------------------------------------------------------
    def paused(self, audio: np.ndarray) -> asyncio.Future | None:
        self.resumed()
        if not self._has_room():
            return None
        chain = self._chain
        if chain is not None and len(audio) - chain.covered >= self._min_segment():
            chain.extend(audio)  # shorter: the early assessment analyses that rest itself
        request = self._request(audio)
        task = self._spawn(chain.assess(request) if chain is not None else self._engine.assess(request))
        self._early.start(len(audio), task)
        return task

    def resumed(self) -> bool:
        return self._early.drop()

    def silence(self, audio: np.ndarray, cut_ms: int) -> None:
        """Analyse up to `cut_ms` now, if that makes a segment worth its fixed costs."""
        chain = self._chain
        cut = cut_ms * SAMPLE_RATE // 1000 // FRAME_SAMPLES * FRAME_SAMPLES
        if chain is None or cut - chain.covered < self._min_segment() or not self._has_room():
            return
        chain.extend(audio[:cut])

    def words_settled(self, audio: np.ndarray, end_ms: int, next_start_ms: int | None) -> None:
        """Cut in the middle of the gap to the next word when a decode saw one, else at the word's end.

        Not when interim words come from the frame-word trees: their times are Whisper's, not an alignment's, and
        a cut placed by them falls a median 100 ms inside a word (82% over 30 ms inside; 1,500 training
        utterances against pocketsphinx's alignment of the same words). Pauses still cut (`silence`)."""
        if self._engine.frame_words_for(self._template) is not None:
            return
        cut_ms = end_ms
        if next_start_ms is not None and next_start_ms > cut_ms:
            cut_ms = (cut_ms + next_start_ms) // 2
        self.silence(audio, cut_ms)

    async def finish(self, audio: np.ndarray) -> UtteranceResult:
        early = self._early.take(len(audio))
        try:
            if early is not None:
                self.path = "early"
                return await early
            request = self._request(audio)
            if self._chain is not None:
                self.path = "segments"
                return await self._chain.assess(request)
            return await self._engine.assess(request)
        finally:
            self.cancel()  # segment announcements still pending would only repeat the final's words

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    @property
    def segments(self) -> int:
        return self._chain.segments if self._chain is not None else 0

    # -- committed words --------------------------------------------------------------------------------------
    async def _announce(self, segment: Segment, audio: np.ndarray) -> None:
        """An analysed segment's words: the audio before a cut never changes, so they are committed at once."""
        request = self._request(audio)
        try:
            words = await self._engine.segment_words(segment, audio, request)
        except EngineError as exc:
            log.warning("segment scoring failed: %s", exc)
            return
        start_ms = segment.start * 1000 // SAMPLE_RATE
        await self._on_committed(tuple(w.shifted(start_ms) for w in words), segment.end * 1000 // SAMPLE_RATE)
