"""An engine with the AssessmentEngine surface that answers at once (or fails on demand): server tests
exercise sessions, ordering and faults without paying for models."""
import asyncio
from dataclasses import dataclass

from saywell.engine.types import EngineError, SentenceScores, UtteranceResult, WordErrorType, WordScore


@dataclass(frozen=True)
class FakeSegment:
    start: int
    samples: int


class FakeEngine:
    name = "fake"
    version = "0"

    def __init__(self, delay_s: float = 0.01, fail_every: int = 0, capacity: int = 0) -> None:
        self.delay_s = delay_s
        self.capacity = capacity  # > 0: only this many assessments run at once, the rest wait (a busy CPU)
        self._slots = None
        self.fail_every = fail_every  # every n-th final assessment raises EngineError
        self.assessed = 0
        self.cancelled = 0
        self.started = False
        self.waiting = 0  # what backlog() reports

    def backlog(self) -> int:
        return self.waiting

    @property
    def scorer_names(self) -> list[str]:
        return ["baseline"]

    def model_versions(self) -> dict[str, str]:
        return {"fake": "0"}

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

    async def analyse_segment(self, audio, start: int, scorer: str = ""):
        await asyncio.sleep(0)  # the fake's cost lives in assess / assess_segments
        return FakeSegment(start, len(audio))

    async def segment_words(self, segment, audio, request) -> tuple[WordScore, ...]:
        return self._words(request)

    def utterance_encoding(self, request):
        return None  # the fake scores without encoder frames

    async def assess_segments(self, request, segments, encoding=None) -> UtteranceResult:
        return await self.assess(request)

    async def provisional_words(self, request) -> tuple[WordScore, ...]:
        await self._wait()
        return self._words(request)
