"""Two real saywell server processes (`--profile neural --backend triton --triton-url ...`) sharing one REAL
tritonserver (bundled with nvidia-pytriton, CPU): streams on both get finals, and Triton's own statistics show
batches that mixed requests (execution_count < request count) — the point of one Triton for many replicas.

Tiny random models (engine/profiles/neural/plumbing.py), exported by deploy/triton/export.py: this proves the
serving path, not scores (tests/engine/test_triton_backend.py compares scores with the local backend).
"""
import importlib.util
import pathlib
import re
import subprocess
import threading

import pytest
from live_server import FIXTURES
from test_process import free_port, spawn_server, wait_serving

from saywell.client import SaywellClient, load_audio
from saywell.engine.backends.triton.serve import LocalTriton
from saywell.engine.profiles.neural.plumbing import write_random_heads, write_random_models

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytest.importorskip("pytriton", reason="the bundled tritonserver comes with nvidia-pytriton (saywell's dev extra)")
# Waiting longer for companions than the shipped 5 ms makes the mixing of the two servers' requests certain on a
# busy 2-core machine; the behaviour tested (Triton batches requests of several replicas) is the same.
QUEUE_DELAY_US = 200_000


@pytest.fixture(scope="module")
def shared_triton(tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton-server-models")
    write_random_heads(write_random_models(folder))
    spec = importlib.util.spec_from_file_location("saywell_triton_export", ROOT / "deploy" / "triton" / "export.py")
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    repository = tmp_path_factory.mktemp("triton-server-repository")
    export.export(folder, repository)
    for config in repository.glob("*/config.pbtxt"):
        config.write_text(re.sub(r"max_queue_delay_microseconds: \d+", f"max_queue_delay_microseconds: "
                                 f"{QUEUE_DELAY_US}", config.read_text()))
    triton = LocalTriton(repository, grpc_port=free_port())
    triton.start(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers = []
    try:
        triton.wait_ready(90)
        servers = [spawn_server(profile="neural", backend="triton", triton_url=triton.url, model_dir=str(folder),
                                device="cpu", speculative_finals="false") for _ in range(2)]
        for process, target in servers:
            wait_serving(process, target, timeout=120)
        yield triton, [target for _, target in servers]
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(30)
        triton.cleanup()


def statistics(url: str) -> dict[str, tuple[int, int]]:
    """model -> (requests that succeeded, model executions)."""
    from tritonclient.grpc import InferenceServerClient

    with InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(as_json=True)["model_stats"]
    return {s["name"]: (int(s["inference_stats"]["success"].get("count", 0)), int(s.get("execution_count", 0)))
            for s in stats}


def stream(target: str, name: str, results: dict) -> None:
    with SaywellClient(target) as client:
        results[(target, name)] = list(client.stream_file(load_audio(FIXTURES / f"{name}.wav"), interim_results=False,
                                                          realtime_factor=None))


def test_two_servers_share_one_triton_and_their_requests_share_batches(shared_triton):
    triton, targets = shared_triton
    with SaywellClient(targets[0]) as client:
        engine = client.capabilities().engine
    assert (engine.profile, engine.backend) == ("neural", "triton")
    before = statistics(triton.url)
    results: dict = {}
    threads = [threading.Thread(target=stream, args=(target, name, results))
               for target in targets for name in ("fox", "brother")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 4
    for responses in results.values():
        kinds = [r.WhichOneof("event") for r in responses]
        assert kinds.count("utterance") == 1 and kinds[-1] == "summary", kinds
        utterance = next(r.utterance for r in responses if r.WhichOneof("event") == "utterance")
        assert utterance.words and all(w.phones for w in utterance.words)
        assert 0 <= utterance.scores.total <= 10
    after = statistics(triton.url)
    mixed = {}
    for model in ("saywell_phone_posteriors", "saywell_ssl", "saywell_heads"):
        requests, executions = (a - b for a, b in zip(after[model], before[model]))
        assert requests >= 2 and executions >= 1
        mixed[model] = (requests, executions)
    print("triton (requests, executions) per model:", mixed)  # shown with -rA; recorded in deploy/triton/README.md
    # each server sends one request per saywell batch; Triton ran fewer executions than it got requests
    assert any(executions < requests for requests, executions in mixed.values()), mixed
