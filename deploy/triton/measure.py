"""Latency and CPU per audio second of the neural profile, local backend against Triton, on this machine:

    python deploy/triton/measure.py --model-dir MODEL_DIR [--repeats 10]

Exports MODEL_DIR into a temporary repository, starts the bundled tritonserver, then assesses
tests/fixtures/fox.wav (closed mode) `repeats` times one after another with each backend (CPU: this process's,
plus Triton's server and model processes for the triton backend), and 8 at once with Triton, reporting its
batch statistics (requests against executions per model).
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import resource
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from saywell.engine.api import create_engine
from saywell.engine.backends.triton.serve import LocalTriton
from saywell.engine.offline.dataset import load_audio
from saywell.engine.options import EngineOptions, TritonOptions
from saywell.engine.types import AssessmentRequest

ROOT = Path(__file__).resolve().parents[2]
TEXT = "the quick brown fox jumps over the lazy dog"


def tree_cpu(pid: int) -> float:
    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(options: EngineOptions, audio, repeats: int, triton_pid: int | None) -> dict:
    engine = create_engine(options)
    await engine.warm_up()
    request = AssessmentRequest(audio, reference_text=TEXT)
    await engine.assess(request)
    cpu0, remote0 = own_cpu(), tree_cpu(triton_pid) if triton_pid else 0.0
    latencies = []
    for _ in range(repeats):
        started = time.perf_counter()
        await engine.assess(request)
        latencies.append((time.perf_counter() - started) * 1000)
    audio_s = repeats * len(audio) / 16000
    local_cpu = own_cpu() - cpu0
    remote_cpu = (tree_cpu(triton_pid) - remote0) if triton_pid else 0.0
    result = {"median_ms": round(statistics.median(latencies), 1), "max_ms": round(max(latencies), 1),
              "cpu_s_per_audio_s_saywell": round(local_cpu / audio_s, 3),
              "cpu_s_per_audio_s_triton": round(remote_cpu / audio_s, 3)}
    if triton_pid:
        started = time.perf_counter()
        await asyncio.gather(*(engine.assess(request) for _ in range(8)))
        result["eight_at_once_ms"] = round((time.perf_counter() - started) * 1000, 1)
    await engine.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("export", Path(__file__).with_name("export.py"))
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    audio = load_audio(ROOT / "tests" / "fixtures" / "fox.wav")
    base = EngineOptions(profile="neural", model_dir=args.model_dir, device="cpu")
    report = {"local": asyncio.run(run(base, audio, args.repeats, None))}
    with tempfile.TemporaryDirectory() as repository, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        export.export(args.model_dir, repository)
        triton = LocalTriton(repository, grpc_port=port)
        triton.start(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            triton.wait_ready(120)
            options = EngineOptions(profile="neural", model_dir=args.model_dir, device="cpu", backend="triton",
                                    triton=TritonOptions(url=triton.url))
            report["triton"] = asyncio.run(run(options, audio, args.repeats, triton.process.pid))
            from tritonclient.grpc import InferenceServerClient

            with InferenceServerClient(triton.url) as client:
                stats = client.get_inference_statistics(as_json=True)["model_stats"]
            report["triton_batches"] = {s["name"]: {"requests": int(s["inference_stats"]["success"].get("count", 0)),
                                                    "items": int(s.get("inference_count", 0)),
                                                    "executions": int(s.get("execution_count", 0))} for s in stats}
        finally:
            triton.cleanup()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
