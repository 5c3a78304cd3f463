"""The Node.js client (client/node, issue #19) against a real saywell server: its own `node --test` suite passes.

The suite holds the client's unit tests (the live-hypothesis rule, the WAV reader, the rendering) and its end-to-end
tests, which stream tests/fixtures/fox.wav and brother.wav at real-time pace to the server started here. On a clean
clone the npm dependencies are installed first from client/node/package-lock.json (`npm ci`, about 10 s).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "client" / "node"
# The end-to-end tests of client/node/test/e2e.test.js; each must have run and passed, not been skipped.
E2E_TESTS = ("capabilities:", "open mode:", "closed mode:", "leaving the loop early", "a refused config")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_npm_dependencies() -> None:
    """`npm ci` when node_modules is missing or older than the lockfile."""
    installed = NODE_CLIENT / "node_modules" / ".package-lock.json"
    lock = NODE_CLIENT / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    # --ignore-scripts: nothing from the registry runs at install time (the only install script, protobufjs's,
    # is a notice for its command-line tool).
    result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                            cwd=NODE_CLIENT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"npm ci failed in {NODE_CLIENT}:\n{result.stdout}\n{result.stderr}"


def wait_serving(process: subprocess.Popen, target: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, f"saywell-server exited {process.returncode}:\n{log.read_text()[-4000:]}"
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"saywell-server did not serve within {timeout} s:\n{log.read_text()[-4000:]}")


def test_node_client_suite_passes_against_a_real_server(tmp_path):
    assert shutil.which("node") and shutil.which("npm"), "Node.js (>= 18.3) and npm are needed for client/node"
    server = Path(sys.executable).parent / "saywell-server"
    port = free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([str(server), "--port", str(port), "--metrics-port", "0"], stderr=stderr,
                                   stdout=subprocess.DEVNULL)
    try:
        install_npm_dependencies()  # while the server loads its models
        wait_serving(process, target, log)
        result = subprocess.run(["node", "--test", "--test-reporter=tap"], cwd=NODE_CLIENT, capture_output=True,
                                text=True, timeout=180, check=False, env=dict(os.environ, SAYWELL_TARGET=target))
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    output = f"node --test exited {result.returncode}\n{result.stdout[-12000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, output
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), output
    for name in E2E_TESTS:
        assert re.search(rf"^\s*ok \d+ - {re.escape(name)}(?!.*# SKIP)", result.stdout, re.MULTILINE), \
            f"end-to-end test {name!r} did not run and pass\n{output}"
