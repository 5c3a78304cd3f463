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
from saywell.engine.stages.whole_utterance import WholeUtterance
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

    def begin_utterance(self, template: AssessmentRequest, on_committed=None) -> WholeUtterance:
        return WholeUtterance(self, template)

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
