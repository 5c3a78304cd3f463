"""The lmm profile: a speech LLM (Qwen2-Audio or Phi-4-multimodal with a LoRA adapter) hears the utterance and
writes its assessment as JSON, which is parsed onto the result types every profile returns.

One stage: `generate`, behind a BatchScheduler, so concurrent streams share one padded generate call. Closed
mode gives the model the reference words (and constrained decoding forces them); open mode lets it write the
words it heard. There are no interim words (`Capabilities.interim_words` is False): a second, shorter generate
per interim update would take the accelerator from the finals; README.md says what a cheap one could be.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.metadata
import logging
import time

import numpy as np
from saywell.engine.language.lexicon import Lexicon, PronunciationError, strip_stress
from saywell.engine.language.text import normalize_words
from saywell.engine.options import EngineOptions
from saywell.engine.profiles.lmm.config import LmmConfig
from saywell.engine.profiles.lmm.results import utterance_result
from saywell.engine.profiles.lmm.schema import PHONES
from saywell.engine.profiles.lmm.stage import Generated, LmmItem, LmmStage
from saywell.engine.stages.devices import resolve_device
from saywell.engine.stages.scheduler import URGENT, BatchScheduler
from saywell.engine.types import (
    AssessmentRequest,
    Capabilities,
    EngineError,
    EngineInfo,
    InputError,
    UtteranceResult,
    WordScore,
)

ENGINE_NAME = "saywell-lmm"
CONSTRAINED, FREE = "constrained", "free"  # scorers: schema-constrained decoding, or the model's own text
BACKENDS = ("local",)
log = logging.getLogger(__name__)


class LmmEngine:
    name = ENGINE_NAME

    def __init__(self, options: EngineOptions = EngineOptions(), on_batch=None) -> None:
        if options.backend not in BACKENDS:
            raise EngineError(f"the lmm profile has no {options.backend!r} backend; it has: {', '.join(BACKENDS)}")
        self.options = options
        self.config = config = LmmConfig.load(options.model_dir)
        config.check_sources(options.allow_download)
        self.device = resolve_device(options.device)
        self.lexicon = Lexicon()
        self.stage = LmmStage(config, self.device, options.allow_download, self.phones_of)
        # One model per device: one worker; the server's --max-batch-size / --max-wait-ms size its batches.
        self._scheduler = BatchScheduler(self.stage, dataclasses.replace(options.asr_batching, workers=1), on_batch)

    @functools.cached_property
    def info(self) -> EngineInfo:
        scorers = (CONSTRAINED, FREE) if self.config.constrained else (FREE, CONSTRAINED)
        return EngineInfo(profile="lmm", backend=self.options.backend, name=ENGINE_NAME,
                          version=importlib.metadata.version("saywell"), scorers=scorers,
                          model_versions=self.config.versions(),
                          capabilities=Capabilities(interim_words=False, phone_diagnosis=True))

    def phones_of(self, word: str) -> tuple[str, ...]:
        """The word's canonical phones (ARPAbet without stress); () for a word the lexicon cannot pronounce."""
        try:
            return tuple(p for p in map(strip_stress, self.lexicon.pronounce(word)) if p in PHONES)
        except PronunciationError:
            return ()

    def start(self) -> None:
        self._scheduler.start()

    async def warm_up(self) -> None:
        """Loads the model and runs one short generate on the thread that will run them."""
        self.start()
        await asyncio.to_thread(self.lexicon.load)
        await asyncio.to_thread(normalize_words, "10")  # number words: inflect's import takes seconds
        await self._scheduler.submit(LmmItem(np.zeros(16000, np.float32), ("a",)))

    async def close(self) -> None:
        await self._scheduler.close()

    def backlog(self) -> int:
        return self._scheduler.urgent_queued

    async def check(self) -> str | None:
        return None  # nothing outside this process to depend on

    def begin_utterance(self, template: AssessmentRequest, on_committed=None) -> LmmUtterance:
        return LmmUtterance(self, template)

    async def provisional_words(self, request: AssessmentRequest) -> tuple[WordScore, ...]:
        return ()  # no interim words: Capabilities.interim_words is False

    async def assess(self, request: AssessmentRequest) -> UtteranceResult:
        scorer = request.scorer or self.info.scorers[0]
        if scorer not in (CONSTRAINED, FREE):
            raise EngineError(f"unknown scorer {request.scorer!r}; available: {', '.join(self.info.scorers)}")
        reference = None
        if request.closed:
            reference = tuple(normalize_words(request.reference_text))
            if not reference:
                raise InputError("the reference text has no words to assess")
        started = time.perf_counter()
        generated: Generated = await self._scheduler.submit(LmmItem(request.audio, reference, scorer == CONSTRAINED),
                                                            URGENT)
        timings = {"generate": (time.perf_counter() - started) * 1000}
        return utterance_result(request, generated.assessment, scorer, timings)


class LmmUtterance:
    """An utterance being spoken. Nothing runs while the learner speaks; at a pause the final assessment of the
    audio so far starts (when the engine has room) and is kept if the pause turns out to be the end."""

    def __init__(self, engine: LmmEngine, template: AssessmentRequest) -> None:
        self._engine = engine
        self._template = template
        self._early: tuple[int, asyncio.Future] | None = None
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
        self._early = (len(audio), task)
        return task

    def resumed(self) -> bool:
        if self._early is None:
            return False
        self._early[1].cancel()
        self._early = None
        return True

    def silence(self, audio: np.ndarray, cut_ms: int) -> None:
        pass

    def words_settled(self, audio: np.ndarray, end_ms: int, next_start_ms: int | None) -> None:
        pass

    async def finish(self, audio: np.ndarray) -> UtteranceResult:
        early, self._early = self._early, None
        if early is not None and early[0] == len(audio):
            self.path = "early"
            return await early[1]
        if early is not None:
            early[1].cancel()
        self.path = "whole"
        return await self._engine.assess(self._request(audio))

    def cancel(self) -> None:
        self.resumed()


def _retrieve(task: asyncio.Future) -> None:
    """An early assessment's error is the final's to report if it is used; unused, it must not be lost."""
    if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), EngineError):
        log.error("early assessment failed", exc_info=task.exception())
