"""The engine as the server sees it: the `Engine` protocol every profile implements, and `create_engine`.

`server/` imports this module, `types` and `options` from the engine and nothing else: a profile (`cpu`,
`synthetic`, ...) is one folder under `profiles/` and one entry in `registry.py`, never an edit up here.

What an engine answers:
- `assess(request)`: the final assessment of a whole utterance (unary calls, `saywell eval`);
- `provisional_words(request)`: words of an utterance still in progress, for interim results;
- `begin_utterance(template, on_committed)`: a handle for an utterance being spoken. The stream tells it what
  the segmenter saw (pauses, silences between words, words the interim decodes settled) and the handle decides
  for itself how much to analyse early, so that little is left when the utterance ends;
- `backlog()`: urgent work waiting, for admission control; `info`: profile, backend, models, capabilities.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import numpy as np

from saywell.engine.language.text import match_reference, normalize_words
from saywell.engine.options import EngineOptions
from saywell.engine.types import AssessmentRequest, Capabilities, EngineInfo, UtteranceResult, WordScore

__all__ = ["Capabilities", "Engine", "EngineInfo", "OnCommitted", "UtteranceHandle", "create_engine",
           "match_reference", "normalize_words", "profile_names"]

# Called by a handle with words that will not change before the final (times from the utterance start) and the
# utterance time (ms) up to which the audio is settled.
OnCommitted = Callable[[tuple[WordScore, ...], int], Awaitable[None]]


@runtime_checkable
class UtteranceHandle(Protocol):
    """One utterance while it is spoken. Every `audio` is the utterance's audio from its first sample so far
    (16 kHz mono float32); times are ms from the utterance start."""

    def paused(self, audio: np.ndarray) -> asyncio.Future | None:
        """The learner paused: early work may start. Returns the future of an early final assessment of
        exactly `audio`, if one was started (it is used if the utterance ends here)."""

    def resumed(self) -> bool:
        """Speech went on after a pause; returns whether early work was dropped."""

    def silence(self, audio: np.ndarray, cut_ms: int) -> None:
        """A silence between words inside speech, centred at `cut_ms`: a place the audio can be cut."""

    def words_settled(self, audio: np.ndarray, end_ms: int, next_start_ms: int | None) -> None:
        """Interim decodes settled the words up to `end_ms` (the next word, if heard, starts at
        `next_start_ms`): another place to cut fluent speech that has no silence."""

    async def finish(self, audio: np.ndarray) -> UtteranceResult:
        """The final assessment of the whole utterance `audio`."""

    def cancel(self) -> None:
        """The stream went away: drop everything still running for this utterance."""

    @property
    def path(self) -> str:
        """How `finish` got its result ("early", "segments", "whole"), for logs and metrics."""


@runtime_checkable
class Engine(Protocol):
    @property
    def info(self) -> EngineInfo: ...

    def start(self) -> None: ...

    async def warm_up(self) -> None:
        """Load every model now, so the first learner pays nothing."""

    async def close(self) -> None: ...

    def backlog(self) -> int:
        """Urgent items waiting for the engine: its measure of saturation."""

    async def check(self) -> str | None:
        """None when the engine can assess; else why it cannot now (a service it depends on is down). Cheap
        and bounded in time: the server asks every few seconds and reports it through gRPC health."""

    async def assess(self, request: AssessmentRequest) -> UtteranceResult: ...

    async def provisional_words(self, request: AssessmentRequest) -> tuple[WordScore, ...]: ...

    def begin_utterance(self, template: AssessmentRequest, on_committed: OnCommitted | None = None
                        ) -> UtteranceHandle:
        """`template`: the stream's settings (its audio is ignored)."""


def profile_names() -> tuple[str, ...]:
    from saywell.engine.registry import PROFILES

    return tuple(PROFILES)


def create_engine(options: EngineOptions = EngineOptions(), on_batch=None) -> Engine:
    """The engine of `options.profile` (`on_batch(stage, size, seconds)` observes batches, for metrics)."""
    from saywell.engine.registry import load_profile

    return load_profile(options.profile)(options, on_batch)
