"""The server as users run it: a separate process, structured logs, SIGTERM drains in-flight streams."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
from live_server import FIXTURES

from saywell.client import SaywellClient, load_audio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(process: subprocess.Popen, target: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=1)
            return
        except grpc.FutureTimeoutError:
            continue
    raise AssertionError("server did not start")


@contextlib.contextmanager
def serving(timeout: float = 120, **env: str):
    """A spawned server (spawn_server's `env`) for the block, once it serves; yields its target."""
    process, target = spawn_server(**env)
    try:
        wait_serving(process, target, timeout=timeout)
        yield target
    finally:
        process.terminate()
        process.wait(30)


def spawn_server(**env: str) -> tuple[subprocess.Popen, str]:
    """`python -m saywell.server` on a free port with SAYWELL_* variables `env`; returns it and its target."""
    port = free_port()
    variables = dict(os.environ, SAYWELL_PORT=str(port), SAYWELL_METRICS_PORT="0",
                     **{f"SAYWELL_{name.upper()}": value for name, value in env.items()})
    process = subprocess.Popen([sys.executable, "-m", "saywell.server"], env=variables, stderr=subprocess.PIPE,
                               text=True)
    return process, f"127.0.0.1:{port}"


def test_sigterm_lets_the_in_flight_stream_finish_then_exits_cleanly():
    process, target = spawn_server(grace_s="30")
    try:
        wait_serving(process, target)
        received: list[str] = []

        def stream():
            with SaywellClient(target) as client:
                for response in client.stream_file(load_audio(FIXTURES / "two_utterances.wav"), realtime_factor=2.0,
                                                   endpointing={"end_of_utterance_silence_ms": 500}):
                    received.append(response.WhichOneof("event"))

        worker = threading.Thread(target=stream)
        worker.start()
        time.sleep(1.5)  # mid-stream
        process.send_signal(signal.SIGTERM)
        worker.join(60)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert received.count("utterance") == 2 and received[-1] == "summary"
    logs = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in logs]
    assert "saywell serving" in messages and "draining" in messages and "stopped" in messages
    closed = next(entry for entry in logs if entry["msg"] == "stream closed")
    assert closed["status"] == "ok" and closed["utterances"] == 2
    assert not any("coffee" in line.lower() for line in map(json.dumps, logs)), "logs must not carry transcripts"
