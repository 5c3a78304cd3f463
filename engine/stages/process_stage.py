"""pocketsphinx in worker processes: its decoder holds the GIL while it decodes (measured: two threads took
2.25x the time of one), which would stall Whisper's thread and the event loop for the whole decode.

`ProcessStage` has the stage shape `run_batch(items) -> results`; a BatchScheduler thread calls it and waits
on the worker process, without the GIL. Workers start with `spawn` (forking a process that runs gRPC threads
is unsafe) and build their PhoneAligner on first use.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence

from saywell.engine.stages.alignment import AlignerOptions, PhoneAligner, PhoneLoopStage
from saywell.engine.stages.base import AlignItem

_aligner: PhoneAligner | None = None  # the worker process's own


PARENT_CHECK_S = 1.0


def _end_with_parent(parent: int) -> None:
    """A worker whose parent died (SIGKILL, or SIGTERM before it closed its pool) would live on as an orphan:
    it checks once a second and ends itself."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


def start_parent_watch(parent: int) -> None:
    """In a worker process (a pool initializer): end with `parent`, the pid of the process that started it."""
    threading.Thread(target=_end_with_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _init(options: AlignerOptions, parent: int) -> None:
    global _aligner
    _aligner = PhoneAligner(options=options)
    start_parent_watch(parent)


def _align(items: Sequence[AlignItem]) -> list:
    return _aligner.run_batch(items)


def _loop(items: Sequence) -> list:
    return PhoneLoopStage(_aligner).run_batch(items)


def _load(stage: str) -> bool:
    _aligner.load(stage)  # only the decoders this stage uses: align 202 MB resident, loop 73 MB (was 175 + 173)
    return True


class ProcessStage:
    """A pocketsphinx stage ("align" or "loop") run by `workers` processes of its own."""

    _FUNCTIONS = {"align": _align, "loop": _loop}

    def __init__(self, name: str, options: AlignerOptions = AlignerOptions(), workers: int = 1) -> None:
        self.name = name
        self._function = self._FUNCTIONS[name]
        self._options = options
        self._workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init, initargs=(self._options, os.getpid()))
        return self._pool

    def load(self) -> None:
        """Start the workers and load their models now (a few seconds each)."""
        for future in [self._executor().submit(_load, self.name) for _ in range(self._workers)]:
            future.result()

    def run_batch(self, items: Sequence) -> list:
        return self._executor().submit(self._function, list(items)).result()

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)
