"""BatchScheduler: micro-batching, per-caller results and errors, overload, cancellation and shutdown.

The stage is a fake that records what it was given; every test drives its own event loop with `asyncio.run`.
"""
import asyncio
import threading
import time

import pytest

from saywell.engine.options import BatchingOptions
from saywell.engine.stages.scheduler import BACKGROUND, URGENT, BatchScheduler
from saywell.engine.types import EngineError, OverloadedError


class RecordingStage:
    """Doubles numbers; records each batch; optionally fails items, whole batches, or blocks on an event."""

    name = "fake"

    def __init__(self, delay_s: float = 0.01, fail_items=(), fail_batch: bool = False,
                 gate: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.fail_items = set(fail_items)
        self.fail_batch = fail_batch
        self.gate = gate
        self.batches: list[list[int]] = []
        self.started = threading.Event()  # set when the first batch reaches the stage
        self._lock = threading.Lock()

    def run_batch(self, items):
        with self._lock:
            self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        time.sleep(self.delay_s)
        if self.fail_batch:
            raise RuntimeError("the model fell over")
        return [ValueError(f"bad item {i}") if i in self.fail_items else i * 2 for i in items]

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


async def _wait_started(stage: RecordingStage) -> None:
    for _ in range(500):
        if stage.started.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("stage never started")


def test_concurrent_submits_form_batches_up_to_the_limit():
    stage = RecordingStage(delay_s=0.02)
    calls = []

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=4, max_wait_ms=20),
                                   on_batch=lambda *args: calls.append(args))
        try:
            return await asyncio.gather(*(scheduler.submit(i) for i in range(10)))
        finally:
            await scheduler.close()

    results = asyncio.run(main())
    assert results == [i * 2 for i in range(10)]  # each caller its own result
    assert max(stage.sizes) <= 4
    assert max(stage.sizes) > 1
    assert sum(stage.sizes) == 10
    assert sorted(i for b in stage.batches for i in b) == list(range(10))  # every item exactly once
    # on_batch: (stage name, batch size, seconds) per batch
    assert [c[1] for c in calls] == stage.sizes
    for name, size, seconds in calls:
        assert name == "fake"
        assert isinstance(size, int)
        assert 0.02 <= seconds < 5


def test_results_are_routed_by_caller_not_by_order():
    stage = RecordingStage(delay_s=0.005)

    async def one(scheduler, i):
        await asyncio.sleep((7 - i) * 0.003)  # submit in reverse order
        return i, await scheduler.submit(i)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=3, max_wait_ms=30))
        try:
            return await asyncio.gather(*(one(scheduler, i) for i in range(8)))
        finally:
            await scheduler.close()

    for i, result in asyncio.run(main()):
        assert result == i * 2


def test_batch_size_one_turns_batching_off():
    stage = RecordingStage(delay_s=0.002)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=1, max_wait_ms=20))
        try:
            return await asyncio.gather(*(scheduler.submit(i) for i in range(6)))
        finally:
            await scheduler.close()

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]
    assert stage.sizes == [1] * 6


def test_an_item_error_fails_only_its_caller():
    stage = RecordingStage(fail_items={3})

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=8, max_wait_ms=20))
        try:
            return await asyncio.gather(*(scheduler.submit(i) for i in range(6)), return_exceptions=True)
        finally:
            await scheduler.close()

    results = asyncio.run(main())
    assert isinstance(results[3], ValueError)
    assert str(results[3]) == "bad item 3"
    assert [r for i, r in enumerate(results) if i != 3] == [0, 2, 4, 8, 10]
    assert max(stage.sizes) > 1  # the failure happened inside a shared batch


def test_a_failing_batch_fails_every_caller_with_engine_error():
    stage = RecordingStage(fail_batch=True)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=4, max_wait_ms=20))
        try:
            first = await asyncio.gather(*(scheduler.submit(i) for i in range(4)), return_exceptions=True)
            stage.fail_batch = False
            after = await scheduler.submit(21)  # the batcher survives a failed batch
            return first, after
        finally:
            await scheduler.close()

    results, after = asyncio.run(main())
    assert all(isinstance(r, EngineError) for r in results)
    assert all("fake failed" in str(r) and "the model fell over" in str(r) for r in results)
    assert after == 42


def test_wrong_number_of_results_is_an_engine_error():
    class ShortStage(RecordingStage):
        def run_batch(self, items):
            return super().run_batch(items)[:-1]

    async def main():
        scheduler = BatchScheduler(ShortStage(), BatchingOptions(max_batch_size=4, max_wait_ms=20))
        try:
            return await asyncio.gather(*(scheduler.submit(i) for i in range(3)), return_exceptions=True)
        finally:
            await scheduler.close()

    results = asyncio.run(main())
    assert all(isinstance(r, EngineError) for r in results)
    assert "returned" in str(results[0])


def test_full_queue_raises_overloaded():
    gate = threading.Event()
    stage = RecordingStage(delay_s=0, gate=gate)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=1, max_wait_ms=0, max_queue_size=2))
        try:
            running = asyncio.ensure_future(scheduler.submit(0))
            await _wait_started(stage)  # item 0 is off the queue, blocked inside the stage
            queued = [asyncio.ensure_future(scheduler.submit(i)) for i in (1, 2)]
            await asyncio.sleep(0)
            assert scheduler.queued == 2
            with pytest.raises(OverloadedError, match="queue is full"):
                await scheduler.submit(3)
            gate.set()
            return await asyncio.gather(running, *queued)
        finally:
            gate.set()
            await scheduler.close()

    assert asyncio.run(main()) == [0, 2, 4]
    assert stage.batches == [[0], [1], [2]]  # the refused item never reached the stage


def test_cancelled_caller_item_is_not_run():
    gate = threading.Event()
    stage = RecordingStage(delay_s=0, gate=gate)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=4, max_wait_ms=10))
        try:
            first = asyncio.ensure_future(scheduler.submit(0))
            await _wait_started(stage)  # the only batcher is busy: later items wait in the queue
            doomed = asyncio.ensure_future(scheduler.submit(1))
            kept = asyncio.ensure_future(scheduler.submit(2))
            await asyncio.sleep(0)
            assert scheduler.queued == 2
            doomed.cancel()
            await asyncio.sleep(0)
            gate.set()
            return await first, await kept, doomed
        finally:
            gate.set()
            await scheduler.close()

    first, kept, doomed = asyncio.run(main())
    assert (first, kept) == (0, 4)
    assert doomed.cancelled()
    assert stage.batches == [[0], [2]]


def test_urgent_items_overtake_queued_background_items():
    gate = threading.Event()
    stage = RecordingStage(delay_s=0, gate=gate)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=1, max_wait_ms=0))
        try:
            first = asyncio.ensure_future(scheduler.submit(0))
            await _wait_started(stage)  # the only batcher is busy: the rest queue up
            waiting = [asyncio.ensure_future(scheduler.submit(n, priority))
                       for n, priority in ((1, BACKGROUND), (2, BACKGROUND), (3, URGENT), (4, URGENT))]
            await asyncio.sleep(0)
            assert (scheduler.queued, scheduler.urgent_queued) == (4, 2)
            gate.set()
            results = await first, await asyncio.gather(*waiting)
            assert (scheduler.queued, scheduler.urgent_queued) == (0, 0)
            return results
        finally:
            gate.set()
            await scheduler.close()

    first, results = asyncio.run(main())
    assert (first, results) == (0, [2, 4, 6, 8])  # every caller still gets its own result
    assert stage.batches == [[0], [3], [4], [1], [2]]  # urgent first; arrival order within a priority


def test_close_fails_queued_items_with_engine_error():
    gate = threading.Event()
    stage = RecordingStage(delay_s=0, gate=gate)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=1, max_wait_ms=0))
        running = asyncio.ensure_future(scheduler.submit(0))
        await _wait_started(stage)
        queued = [asyncio.ensure_future(scheduler.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)
        # close() waits for the executor: let the running batch finish shortly after it starts
        threading.Timer(0.05, gate.set).start()
        await scheduler.close()
        results = await asyncio.gather(*queued, return_exceptions=True)
        running.cancel()
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, EngineError) for r in results)
    assert all("shut down" in str(r) for r in results)
    assert stage.batches == [[0]]  # queued items never ran


def test_close_then_submit_restarts():
    stage = RecordingStage(delay_s=0)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=2, max_wait_ms=1))
        first = await scheduler.submit(1)
        await scheduler.close()
        second = await scheduler.submit(2)
        await scheduler.close()
        return first, second

    assert asyncio.run(main()) == (2, 4)


@pytest.mark.parametrize("field,value", [("max_batch_size", 0), ("max_wait_ms", -1), ("max_queue_size", 0),
                                         ("workers", 0)])
def test_batching_options_refuse_nonsense(field, value):
    with pytest.raises(ValueError, match=field):
        BatchingOptions(**{field: value})


def test_close_resolves_callers_of_the_running_batch():
    stage = RecordingStage(delay_s=0.1)

    async def main():
        scheduler = BatchScheduler(stage, BatchingOptions(max_batch_size=1, max_wait_ms=0))
        running = asyncio.ensure_future(scheduler.submit(1))
        await _wait_started(stage)
        await scheduler.close()
        done, _ = await asyncio.wait([running], timeout=1.0)
        running.cancel()
        return bool(done)

    assert asyncio.run(main()), "the caller of the in-flight batch got neither a result nor an error"


def test_a_failing_metrics_callback_does_not_stop_inference():
    def broken_callback(name, size, seconds):
        raise RuntimeError("metrics backend down")

    async def main():
        scheduler = BatchScheduler(RecordingStage(), BatchingOptions(max_batch_size=2), on_batch=broken_callback)
        first = await asyncio.gather(*(scheduler.submit(i) for i in range(3)))
        second = await scheduler.submit(7)
        await scheduler.close()
        return first, second

    first, second = asyncio.run(main())
    assert len(first) == 3 and second is not None


def test_whole_batch_failure_gives_each_caller_its_own_exception():
    async def main():
        scheduler = BatchScheduler(RecordingStage(fail_batch=True), BatchingOptions(max_batch_size=4, max_wait_ms=20))
        outcomes = await asyncio.gather(*(scheduler.submit(i) for i in range(3)), return_exceptions=True)
        await scheduler.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert all(isinstance(o, EngineError) for o in outcomes)
    assert len({id(o) for o in outcomes}) == len(outcomes)
