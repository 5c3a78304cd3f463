"""A test engine implementing the `saywell.engine.api.Engine` protocol that answers at once (or fails on
demand): server tests exercise sessions, ordering and faults without paying for models."""
import asyncio
import dataclasses

from saywell.engine.api import EngineInfo
from saywell.engine.types import EngineError, SentenceScores, UtteranceResult, WordErrorType, WordScore


class FakeUtterance:
    """Records what the stream told it; analyses nothing early (the final assesses the whole utterance)."""

    path = "whole"

    def __init__(self, engine: "FakeEngine", template, on_committed) -> None:
        self._engine = engine
        self._template = template
        self.on_committed = on_committed

    def paused(self, audio):
        self._engine.hints.append(("paused", len(audio)))
        return None

    def resumed(self) -> bool:
        return False

    def silence(self, audio, cut_ms: int) -> None:
        self._engine.hints.append(("silence", cut_ms))

    def words_settled(self, audio, end_ms: int, next_start_ms) -> None:
        self._engine.hints.append(("settled", end_ms))

    async def finish(self, audio) -> UtteranceResult:
        return await self._engine.assess(dataclasses.replace(self._template, audio=audio))

    def cancel(self) -> None:
        pass


class FakeEngine:
    def __init__(self, delay_s: float = 0.01, fail_every: int = 0, capacity: int = 0) -> None:
        self.delay_s = delay_s
        self.capacity = capacity  # > 0: only this many assessments run at once, the rest wait (a busy CPU)
        self._slots = None
        self.fail_every = fail_every  # every n-th final assessment raises EngineError
        self.assessed = 0
        self.cancelled = 0
        self.started = False
        self.waiting = 0  # what backlog() reports
        self.hints: list[tuple] = []  # what utterance handles were told, in order
        self.unready: str | None = None
        self.info = EngineInfo(profile="fake", backend="local", name="fake", version="0", scorers=("baseline",),
                               model_versions={"fake": "0"})

    def backlog(self) -> int:
        return self.waiting

    async def check(self) -> str | None:
        return self.unready  # set by a test: the engine's reason it cannot assess now

    async def warm_up(self) -> None:
        pass

    def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    def _words(self, request) -> tuple[WordScore, ...]:
        n = max(1, request.duration_ms // 400)
        return tuple(WordScore(f"w{i}", i * 400, i * 400 + 300, 8.0, 10.0, 8.0, WordErrorType.NONE, False)
                     for i in range(n))

    async def _wait(self) -> None:
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def _compute(self) -> None:
        if not self.capacity:
            return await self._wait()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.capacity)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1  # also when cancelled while queued
        try:
            await self._wait()
        finally:
            self._slots.release()

    async def assess(self, request) -> UtteranceResult:
        await self._compute()
        self.assessed += 1
        if self.fail_every and self.assessed % self.fail_every == 0:
            raise EngineError("injected failure")
        completeness = 10.0 if request.closed else None
        return UtteranceResult("fake words", request.reference_text, SentenceScores(8, 8, 8, 8, completeness),
                               self._words(request), "baseline")

    async def provisional_words(self, request) -> tuple[WordScore, ...]:
        await self._wait()
        return self._words(request)

    def begin_utterance(self, template, on_committed=None) -> FakeUtterance:
        return FakeUtterance(self, template, on_committed)
