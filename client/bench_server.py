"""The server side of a load test: spawn a saywell server as a subprocess, and sample a server's CPU and memory.

The server runs in its own process (`python -m saywell.server`), so the client never imports it: the load
tester works wherever the server package is installed, and its CPU use is not mixed with the client's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc
import psutil

from saywell.client.errors import SaywellClientError

__all__ = ["ResourceSampler", "ResourceUsage", "SpawnedServer", "free_port"]

SAMPLE_INTERVAL_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SpawnedServer:
    """`python -m saywell.server --port <free> --metrics-port 0 <args>`, ready once gRPC accepts a connection.

    The server binds its port only after warming up its models, so "channel ready" means "serving".
    Its logs go to a temporary file, quoted when it fails to start.
    """

    def __init__(self, server_args: Sequence[str] = (), startup_timeout_s: float = 180.0) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile(mode="w+", prefix="saywell-bench-server-")
        command = [sys.executable, "-m", "saywell.server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--metrics-port", "0", *server_args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            self._wait_serving(startup_timeout_s)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.target) as channel:
            ready = grpc.channel_ready_future(channel)
            while True:
                if self.process.poll() is not None:
                    raise SaywellClientError(
                        f"the spawned server exited with code {self.process.returncode}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise SaywellClientError(f"the spawned server was not serving after {timeout_s:.0f} s:\n"
                                             f"{self.log_tail()}")
                try:
                    ready.result(timeout=1.0)
                    return
                except grpc.FutureTimeoutError:
                    continue

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        self._log.seek(0)
        return "".join(self._log.readlines()[-lines:])

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (the server drains), then SIGKILL after `grace_s`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> SpawnedServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class ResourceUsage:
    """Mean CPU % (100 = one core) and peak resident memory of the server while a run lasted."""

    cpu_percent: float | None
    rss_mb: float | None


class ResourceSampler:
    """Samples CPU % and RSS of a process and its children (the server's pocketsphinx workers) every
    SAMPLE_INTERVAL_S on a thread, between start() and stop(). CPU is summed over the processes; RSS is their
    summed peak, an upper bound (shared library pages count once per process)."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self._cpu: list[float] = []
        self._rss_max = 0
        self._known: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-resource-sampler", daemon=True)

    def _processes(self) -> list[psutil.Process]:
        """The server and its children, each kept once so cpu_percent() measures since its last call."""
        try:
            found = [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            found = [self._process]
        for process in found:
            if process.pid not in self._known:
                self._known[process.pid] = process
                try:
                    process.cpu_percent(None)  # the first call only sets the reference point
                except psutil.Error:
                    pass
        return [self._known[p.pid] for p in found]

    def start(self) -> ResourceSampler:
        self._processes()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            cpu, rss = 0.0, 0
            for process in self._processes():
                try:
                    with process.oneshot():
                        cpu += process.cpu_percent(None)
                        rss += process.memory_info().rss
                except psutil.Error:
                    if process is self._process:
                        return  # the server is gone: keep what was sampled
            self._cpu.append(cpu)
            self._rss_max = max(self._rss_max, rss)

    def stop(self) -> ResourceUsage:
        self._stop.set()
        self._thread.join()
        cpu = sum(self._cpu) / len(self._cpu) if self._cpu else None
        rss = self._rss_max / (1024 * 1024) if self._rss_max else None
        return ResourceUsage(cpu, rss)
