"""Micro-batching: items from all concurrent streams queue up and run together on a stage's threads.

request -> priority queue of (priority, arrival, item, future) -> batching task -> stage.run_batch on a
dedicated thread pool -> each future gets its own result. The event loop only moves items; inference never
blocks it. Items of a lower priority number run first (final assessments before interim decodes); items of
one priority run in arrival order.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import time
from typing import Any, Generic, TypeVar

from saywell.engine.options import BatchingOptions
from saywell.engine.stages.base import Stage
from saywell.engine.types import EngineError, OverloadedError

Item = TypeVar("Item")
Result = TypeVar("Result")
log = logging.getLogger(__name__)
URGENT = 0  # work someone is waiting for: final assessments and the segments they join
BACKGROUND = 1  # work that may wait: interim decodes while the learner speaks


class BatchScheduler(Generic[Item, Result]):
    def __init__(self, stage: Stage, options: BatchingOptions = BatchingOptions(),
                 on_batch: Any = None) -> None:
        self.stage = stage
        self.options = options
        self._on_batch = on_batch  # callback(stage_name, batch_size, seconds) for metrics
        self._queue: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._arrivals = itertools.count()  # ties within a priority go first come, first served
        self._waiting: collections.Counter = collections.Counter()  # queued items per priority

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue else 0

    @property
    def urgent_queued(self) -> int:
        """Queued items someone waits for: background work (interim decodes) is left out."""
        return self._waiting[URGENT]

    def _take(self, entry: tuple) -> tuple:
        self._waiting[entry[0]] -= 1
        return entry

    def start(self) -> None:
        if self._tasks:
            return
        self._queue = asyncio.PriorityQueue(maxsize=self.options.max_queue_size)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.options.workers, thread_name_prefix=f"saywell-{self.stage.name}")
        self._tasks = [asyncio.create_task(self._serve(), name=f"batcher-{self.stage.name}-{i}")
                       for i in range(self.options.workers)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._queue is not None:
            while not self._queue.empty():
                *_, future = self._take(self._queue.get_nowait())
                if not future.done():
                    future.set_exception(EngineError(f"{self.stage.name} stage shut down"))
        if self._executor is not None:
            executor, self._executor = self._executor, None
            # A running batch finishes on its thread; the event loop keeps serving meanwhile.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def submit(self, item: Item, priority: int = URGENT) -> Result:
        """Queues one item and waits for its result; raises the item's own error, or OverloadedError."""
        if not self._tasks:
            self.start()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((priority, next(self._arrivals), item, future))
            self._waiting[priority] += 1
        except asyncio.QueueFull:
            raise OverloadedError(
                f"{self.stage.name} queue is full ({self.options.max_queue_size} waiting)") from None
        return await future

    def _report(self, size: int, seconds: float) -> None:
        if self._on_batch is None:
            return
        try:
            self._on_batch(self.stage.name, size, seconds)
        except Exception:  # metrics must never stop inference
            log.exception("on_batch callback failed for stage %s", self.stage.name)

    async def _next_batch(self) -> list[tuple[Item, asyncio.Future]]:
        batch = [self._take(await self._queue.get())]
        deadline = time.monotonic() + self.options.max_wait_ms / 1000
        while len(batch) < self.options.max_batch_size:
            try:
                batch.append(self._take(self._queue.get_nowait()))
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._take(await asyncio.wait_for(self._queue.get(), remaining)))
            except asyncio.TimeoutError:
                break
        # Work for streams that went away is dropped before it costs anything.
        return [(item, fut) for _priority, _arrival, item, fut in batch if not fut.cancelled()]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, self.stage.run_batch, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise EngineError(f"{self.stage.name} returned {len(results)} results for {len(batch)} items")
            except asyncio.CancelledError:  # shutting down mid-batch: nobody may be left waiting
                for _item, future in batch:
                    if not future.done():
                        future.set_exception(EngineError(f"{self.stage.name} stage shut down"))
                raise
            except Exception as exc:  # the whole batch failed: every item learns why
                log.exception("stage %s failed on a batch of %d", self.stage.name, len(batch))
                results = [EngineError(f"{self.stage.name} failed: {exc}") for _ in batch]
            self._report(len(batch), time.perf_counter() - started)
            for (_item, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
