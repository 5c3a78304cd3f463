"""Cost of the neural profile on CUDA (or the CPU): real-time streams held, GPU memory per stream, and each
stage's throughput at batch 1, 4, 16 and 64.

    # streams: a spawned server, ramped 1, 2, 4, 8, ... streams until p95 final latency passes 500 ms
    python deploy/bench/neural_gpu.py --model-dir DIR --data AUDIO_DIR [--device cuda] [--duration 30]
    # stages: run_batch called directly, same utterance repeated to fill each batch
    python deploy/bench/neural_gpu.py --stages --model-dir DIR [--device cuda] [--audio FILE --text TEXT]
    # either, with random models instead of a model folder: tiny (plumbing) or base (the real architectures:
    # wav2vec2-base frame classifier at 10 ms, HuBERT base; their cost is the real models', their scores noise)
    python deploy/bench/neural_gpu.py --stages --random-models base [--device cuda]

Streams mode: the server runs in its own process (`saywell.server` with --profile neural), started through this
script's `serve` command so that a thread inside it can report torch.cuda.max_memory_allocated; GPU memory per
stream is (peak during a stage - allocated once warm) / streams. Prints one JSON document.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_AUDIO = ROOT / "tests" / "fixtures" / "fox.wav"
DEFAULT_TEXT = "the quick brown fox jumps over the lazy dog"
# Whisper (CTranslate2) last: its thread pool keeps spinning a while after a run and would slow torch's.
STAGES = ("phone_posteriors", "ssl", "align", "heads", "trees", "asr")  # trees: only when the folder has them
PROBE_INTERVAL_S = 0.2
MB = 2 ** 20


# -- the server side: saywell.server with a GPU memory probe ---------------------------------------------------
def serve(memory_file: str, server_args: list[str]) -> int:
    """Runs saywell.server; a thread writes torch's CUDA memory counters to `memory_file` and resets the peak
    whenever `memory_file`.reset appears."""
    import torch

    from saywell.server.__main__ import main as server_main

    path = pathlib.Path(memory_file)
    reset = path.with_suffix(".reset")

    def probe() -> None:
        while True:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                if reset.exists():
                    torch.cuda.reset_peak_memory_stats()
                    reset.unlink()
                counters = {"allocated_mb": torch.cuda.memory_allocated() / MB,
                            "max_allocated_mb": torch.cuda.max_memory_allocated() / MB}
                path.with_suffix(".tmp").write_text(json.dumps(counters))
                path.with_suffix(".tmp").replace(path)
            time.sleep(PROBE_INTERVAL_S)

    threading.Thread(target=probe, daemon=True, name="gpu-memory-probe").start()
    return server_main(server_args)


class ProbedServer:
    """This script's `serve` in a subprocess on a free port, serving once gRPC answers."""

    def __init__(self, server_args: list[str], timeout_s: float = 300.0) -> None:
        import grpc

        from saywell.client.bench_server import free_port

        self.memory = pathlib.Path(tempfile.mkdtemp(prefix="saywell-neural-bench-")) / "memory.json"
        port = free_port()
        self.target = f"127.0.0.1:{port}"
        command = [sys.executable, __file__, "serve", "--memory-file", str(self.memory), "--",
                   "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0", *server_args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.target) as channel:
            while True:
                if self.process.poll() is not None:
                    raise SystemExit(f"the server exited with code {self.process.returncode}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"the server was not serving after {timeout_s:.0f} s")
                try:
                    grpc.channel_ready_future(channel).result(timeout=1.0)
                    break
                except grpc.FutureTimeoutError:
                    continue

    def gpu_memory(self) -> dict | None:
        time.sleep(2 * PROBE_INTERVAL_S)
        return json.loads(self.memory.read_text()) if self.memory.exists() else None

    def reset_peak(self) -> None:
        self.memory.with_suffix(".reset").touch()
        time.sleep(2 * PROBE_INTERVAL_S)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def ramp(args: argparse.Namespace, model_dir: str) -> dict:
    from saywell.client.bench_measure import RunStats
    from saywell.client.bench_plan import load_corpus
    from saywell.client.bench_report import StageResult, stage_summary, why_not_held
    from saywell.client.bench_run import LoadOptions, run_load

    corpus = load_corpus(args.data, max_files=args.max_files)
    limits = ["--max-concurrent-streams", str(4 * args.max_streams), "--max-engine-backlog", str(16 * args.max_streams),
              "--max-queue-size", str(16 * args.max_streams), "--max-batch-size", str(args.max_batch_size)]
    server = ProbedServer(["--profile", "neural", "--model-dir", model_dir, "--device", args.device, *limits,
                           *args.server_arg])
    stages, held = [], 0
    try:
        idle = server.gpu_memory()
        streams = 1
        while streams <= args.max_streams:
            server.reset_peak()
            stats = RunStats()
            options = LoadOptions(streams=streams, duration_s=args.duration, seed=streams)
            wall_s = asyncio.run(run_load(server.target, corpus, options, stats))
            result = StageResult(streams, args.duration, wall_s, stats)
            summary = stage_summary(result)
            reason = why_not_held(result, args.max_p95_ms)
            ok = not reason
            peak = server.gpu_memory()
            if peak and idle:
                summary["gpu_peak_mb"] = round(peak["max_allocated_mb"], 1)
                summary["gpu_mb_per_stream"] = round((peak["max_allocated_mb"] - idle["allocated_mb"]) / streams, 1)
            summary["held"] = ok
            if reason:
                summary["why_not_held"] = reason
            stages.append(summary)
            print(f"{streams} streams: p95 final {summary['final_latency_ms']['p95']} ms, held {ok}, "
                  f"gpu/stream {summary.get('gpu_mb_per_stream')} MB", file=sys.stderr)
            if not ok:
                break
            held = streams
            streams *= 2
    finally:
        server.stop()
    return {"mode": "streams", "device": args.device, "max_p95_ms": args.max_p95_ms, "streams_held": held,
            "gpu_allocated_idle_mb": round(idle["allocated_mb"], 1) if idle else None, "stages": stages}


# -- the stages, called directly ----------------------------------------------------------------------------
def stage_items(engine, audio: np.ndarray, text: str) -> dict[str, object]:
    """One item of each stage for `audio`, made by running the graph once."""
    from saywell.engine.language.text import normalize_words
    from saywell.engine.profiles.neural.alignment import phone_sequence
    from saywell.engine.stages.asr import AsrRequest
    from saywell.engine.stages.frame_alignment import FrameAlignItem

    async def graph():
        try:
            return await engine.analyse(audio, text, (True,))
        finally:
            await engine.close()

    closed = asyncio.run(graph())
    # The embedded configuration's phone head reads the SSL (Whisper encoder) frames, the faithful one's audio.
    posteriors_input = engine.ssl.run_batch([audio])[0] if engine.config.embedded else audio
    log_probs = engine.posteriors.run_batch([posteriors_input])[0]
    sequence = phone_sequence(normalize_words(text), engine.lexicon, engine.inventory, len(log_probs),
                              engine.config.aligner.min_frames)
    heads = engine.heads_item(closed.frames, closed.analyses[True].inputs)
    return {"asr": AsrRequest(audio), "phone_posteriors": posteriors_input, "ssl": audio,
            "align": FrameAlignItem(log_probs, sequence.ids), "heads": heads, "trees": heads}


class TreesStage:
    """The trees after the heads (numpy, one utterance at a time: a batch is a loop), as a stage to time."""

    def __init__(self, engine) -> None:
        self.trees = engine.trees.load()

    def run_batch(self, items):
        return [self.trees.predict(item) for item in items]


def measure_stages(args: argparse.Namespace, model_dir: str) -> dict:
    import torch

    from saywell.engine.offline.dataset import load_audio
    from saywell.engine.options import EngineOptions
    from saywell.engine.profiles.neural import NeuralEngine

    torch.manual_seed(0)
    engine = NeuralEngine(EngineOptions(profile="neural", model_dir=model_dir, device=args.device))
    audio = load_audio(pathlib.Path(args.audio))
    items = stage_items(engine, audio, args.text)
    stages = {"asr": engine.asr, "phone_posteriors": engine.posteriors, "ssl": engine.ssl, "align": engine.aligner,
              "heads": engine.heads}
    if engine.config.trees is not None:
        stages["trees"] = TreesStage(engine)
    cuda = engine.device.type == "cuda"
    audio_s = len(audio) / 16000
    rows = []
    for name in args.only or STAGES:
        if name not in stages:
            print(f"{name}: this model folder has none", file=sys.stderr)
            continue
        for batch in args.batches:
            work = [items[name]] * batch
            stages[name].run_batch(work)  # warm: kernels, allocator, shapes
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                stages[name].run_batch(work)  # results come back as numpy: the device is synchronised
                times.append(time.perf_counter() - started)
            best = min(times)
            row = {"stage": name, "batch": batch, "seconds": round(best, 4), "items_per_s": round(batch / best, 2),
                   "audio_s_per_s": round(batch * audio_s / best, 1)}
            if cuda:
                row["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / MB, 1)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return {"mode": "stages", "device": str(engine.device), "audio": str(args.audio), "audio_s": round(audio_s, 2),
            "torch_threads": torch.get_num_threads(), "models": dict(engine.info.model_versions), "rows": rows}


def model_folder(args: argparse.Namespace) -> str:
    if args.model_dir:
        return args.model_dir
    from saywell.engine.profiles.neural.plumbing import write_random_heads, write_random_models

    folder = tempfile.mkdtemp(prefix=f"saywell-neural-{args.random_models}-")
    write_random_heads(write_random_models(folder, args.random_models))
    return folder


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = p.add_mutually_exclusive_group(required=True)
    models.add_argument("--model-dir", help="a neural model folder (neural.json)")
    models.add_argument("--random-models", choices=("tiny", "base"), help="random models of this size instead")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--stages", action="store_true", help="per-stage items/s instead of streams through a server")
    p.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 4, 16, 64])
    p.add_argument("--only", type=lambda s: s.split(","), help=f"stages to measure (default: {','.join(STAGES)})")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per batch size (the best counts)")
    p.add_argument("--audio", default=str(DEFAULT_AUDIO), help="utterance for --stages")
    p.add_argument("--text", default=DEFAULT_TEXT, help="its reference text (the words aligned)")
    p.add_argument("--data", help="streams: folder of speech the streams send")
    p.add_argument("--max-files", type=int, default=200)
    p.add_argument("--duration", type=float, default=30.0, help="streams: seconds of speech per ramp stage")
    p.add_argument("--max-streams", type=int, default=64)
    p.add_argument("--max-p95-ms", type=float, default=500.0, help="p95 final latency a stage must hold")
    p.add_argument("--max-batch-size", type=int, default=64, help="the server's --max-batch-size")
    p.add_argument("--server-arg", action="append", default=[], help="another flag for the server")
    p.add_argument("--report", help="write the JSON here (default: stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        split = argv.index("--")
        return serve(argv[argv.index("--memory-file") + 1], argv[split + 1:])
    args = build_parser().parse_args(argv)
    if not args.stages and not args.data:
        build_parser().error("streams mode needs --data (or pass --stages)")
    folder = model_folder(args)
    report = measure_stages(args, folder) if args.stages else ramp(args, folder)
    report["models_from"] = args.model_dir or f"random {args.random_models} models (cost only, scores are noise)"
    text = json.dumps(report, indent=1)
    if args.report:
        pathlib.Path(args.report).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
