"""`saywell bench`: load-test a saywell server with concurrent real-time streams of real speech.

    saywell bench --spawn --streams 4 --duration 60 --data DIR --report bench.json [--plot bench.png]
    saywell bench --target HOST:PORT --ramp --duration 30 --data DIR --report ramp.json

Each stream sends utterances from DIR paced like a microphone, with 0.8-2 s pauses between them, interim
results on, until --duration; then it half-closes and drains. The report gives final latency (endpoint ->
assessment), word flag lag, endpointing delay, throughput and the server's CPU and memory. --ramp raises
concurrency stage by stage until p95 final latency passes --max-p95-ms or errors appear.

What the report measures (ms, over all streams; percentiles from an HDR-style histogram, saywell.client.hdr):
- final_latency_ms: receipt of an utterance's SPEECH_ENDED -> receipt of its assessment.
- endpointing_delay_ms: the time the last speech sample of an utterance (its recording's end, or the VAD's cut
  when that lies inside the recording) was sent -> receipt of SPEECH_ENDED; silence endpoints only.
- word_flag_lag_ms: per word of each final assessment (the words heard in the audio), the time the audio up to
  its end_ms was sent -> receipt of the first interim word covering it (either one's middle inside the other's
  span), or of the final itself when no interim word came first.
- time_to_first_response_ms: a stream's first speech chunk sent -> its first response (lead-in silence aside).
- server_latency_ms: the server's own ProcessingInfo.latency_ms; audio_seconds_per_second: audio sent / wall s.
- errors: {status code name: count} over failed streams and utterance_error responses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator, Sequence

import grpc

from saywell.client.bench_measure import RunStats
from saywell.client.bench_plan import BenchCorpus, load_corpus
from saywell.client.bench_report import (StageResult, build_report, compute_bound, stage_summary, why_not_held,
                                         write_plot, write_report)
from saywell.client.bench_run import LoadOptions, run_load
from saywell.client.bench_server import ResourceSampler, SpawnedServer
from saywell.client.channel import open_channel
from saywell.client.errors import SaywellClientError
from saywell.client.options import ClientOptions

__all__ = ["main", "build_parser", "ramp_stages"]

EXIT_OK, EXIT_ERROR = 0, 2
CONNECT_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="saywell bench", description="Load-test a saywell server with concurrent real-time streams.",
        epilog="Server flags for --spawn: --server-arg=--max-concurrent-streams=16 (repeatable; the server "
               "refuses streams past its limit, 8 by default, which ends a ramp).")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", metavar="HOST:PORT", help="an already running server")
    where.add_argument("--spawn", action="store_true", help="start `python -m saywell.server` on a free port")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG", help="flag for the spawned server")
    p.add_argument("--server-pid", type=int, help="with --target: sample this process's CPU and memory")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="audio files (wav/flac/opus/ogg, recursive) or a speechocean762 folder")
    p.add_argument("--streams", type=int, default=1, help="concurrent streams (default %(default)s)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of speech per run or ramp stage")
    p.add_argument("--realtime-factor", type=float, default=1.0, help="pace: 1 = real time, 2 = twice as fast")
    p.add_argument("--chunk-ms", type=int, default=100, help="audio per message, 20..200 (default %(default)s)")
    p.add_argument("--ramp", action="store_true", help="stages of 1, 2, 3, 4, 6, 8, ... streams")
    p.add_argument("--compare-batching", action="store_true",
                   help="with --spawn: run the load twice, on a server with micro-batching as configured and on "
                        "one with --max-batch-size=1, and report both")
    p.add_argument("--max-p95-ms", type=float, default=1500.0, help="ramp: p95 final latency that still holds")
    p.add_argument("--max-lag-p95-ms", type=float, default=1000.0,
                   help="ramp: p95 word-flag lag that still holds (0: the lag does not count)")
    p.add_argument("--max-streams", type=int, default=64, help="ramp: stop after this many streams")
    p.add_argument("--report", metavar="FILE.json", help="write the JSON report here (default: stdout)")
    p.add_argument("--plot", metavar="FILE.png", help="latency CDF (and p95 vs concurrency) as PNG")
    p.add_argument("--seed", type=int, default=0, help="seed of the utterance order and pauses")
    p.add_argument("--max-files", type=int, default=200, help="audio files loaded from DIR at most")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="s a stream may take to answer after its audio")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="s the spawned server may take to serve")
    p.add_argument("--token", default=os.environ.get("SAYWELL_TOKEN"), help="bearer token (default: $SAYWELL_TOKEN)")
    p.add_argument("--tls-ca", metavar="PEM", help="with --target: root certificate, connect with TLS")
    p.add_argument("--tls-cert", metavar="PEM", help="with --tls-ca: client certificate, for mutual TLS")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    return p


def _join_server_args(argv: Sequence[str]) -> list[str]:
    """Let `--server-arg --flag` mean `--server-arg=--flag` (argparse refuses values that look like flags)."""
    out: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "--server-arg":
            value = next(items, None)
            out.append(item if value is None else f"--server-arg={value}")
        else:
            out.append(item)
    return out


def ramp_stages(max_streams: int) -> Iterator[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ... up to max_streams."""
    n = 1
    while n <= max_streams:
        yield n
        n = n + 1 if n < 4 else (n * 3 // 2 if (n & (n - 1)) == 0 else n * 4 // 3)


def _wait_ready(target: str, options: ClientOptions, timeout_s: float) -> None:
    with open_channel(target, options) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise SaywellClientError(f"no saywell server at {target} after {timeout_s:.0f} s") from None


def _run_stage(target: str, corpus: BenchCorpus, opts: LoadOptions, pid: int | None,
               client_options: ClientOptions) -> StageResult:
    sampler = ResourceSampler(pid).start() if pid else None
    stats = RunStats()
    try:
        wall_s = asyncio.run(run_load(target, corpus, opts, stats, client_options=client_options))
    finally:
        usage = sampler.stop() if sampler else None
    return StageResult(opts.streams, opts.duration_s, wall_s, stats, usage)


def run_bench(args: argparse.Namespace) -> tuple[dict, StageResult, list[dict] | None]:
    """Load the corpus, get a server, run once or ramp (or compare batching); returns (report, headline stage,
    ramp stages)."""
    corpus = load_corpus(args.data, max_files=args.max_files, seed=args.seed)
    if args.compare_batching:
        on_report, on, _ = _run_with_server(args, corpus, args.server_arg)
        off_report, _off, _ = _run_with_server(args, corpus, [*args.server_arg, "--max-batch-size=1"])
        on_report["batching"] = {"on": _without_ramp(on_report), "off": _without_ramp(off_report)}
        return on_report, on, None
    return _run_with_server(args, corpus, args.server_arg)


def _without_ramp(report: dict) -> dict:
    return {key: value for key, value in report.items() if key not in ("ramp", "batching")}


def _run_with_server(args: argparse.Namespace, corpus: BenchCorpus,
                     server_args: Sequence[str]) -> tuple[dict, StageResult, list[dict] | None]:
    client_options = ClientOptions(bearer_token=args.token, tls_root_cert=args.tls_ca,
                                   tls_client_cert=args.tls_cert, tls_client_key=args.tls_key)
    server = SpawnedServer(server_args, startup_timeout_s=args.startup_timeout) if args.spawn else None
    try:
        target = server.target if server else args.target
        if server is None:
            _wait_ready(target, client_options, CONNECT_TIMEOUT_S)
        pid = server.pid if server else args.server_pid

        def stage(streams: int, label: str = "") -> StageResult:
            opts = LoadOptions(streams=streams, duration_s=args.duration, realtime_factor=args.realtime_factor,
                               chunk_ms=args.chunk_ms, seed=args.seed, drain_timeout_s=args.drain_timeout,
                               label=label)
            return _run_stage(target, corpus, opts, pid, client_options)

        cores = os.cpu_count() or 1
        if not args.ramp:
            result = stage(args.streams)
            report = build_report(result)
            if args.streams == 1:
                report["compute_bound_streams"] = compute_bound(result, cores)
            return report, result, None
        ramp: list[dict] = []
        held: list[StageResult] = []
        first: StageResult | None = None
        for streams in ramp_stages(args.max_streams):
            result = stage(streams, label=f"{streams} streams")
            first = first or result
            why = why_not_held(result, args.max_p95_ms, args.max_lag_p95_ms)
            ok = not why
            ramp.append({**stage_summary(result), "held": ok, "not_held_because": why or None})
            if not ok:
                break
            held.append(result)
        headline = held[-1] if held else first
        report = build_report(headline, max_realtime_streams=held[-1].streams if held else 0, ramp=ramp)
        # Issue 4's bound: cores / per-stream CPU seconds per audio second, measured single-stream in this run.
        report["compute_bound_streams"] = compute_bound(first, cores) if first else None
        return report, headline, ramp
    finally:
        if server is not None:
            server.stop()


def _summary_lines(report: dict) -> list[str]:
    lat = report["final_latency_ms"]
    lines = [f"streams {report['streams']}  utterances {report['utterances']}  errors {report['errors'] or 0}  "
             f"audio {report['audio_seconds_per_second']} s/s",
             f"final latency ms  p50 {lat['p50']}  p90 {lat['p90']}  p95 {lat['p95']}  p99 {lat['p99']}  "
             f"max {lat['max']}",
             f"word flag lag ms  p50 {report['word_flag_lag_ms']['p50']}  p95 {report['word_flag_lag_ms']['p95']}",
             f"server  cpu {report['server_cpu_percent']} %  rss {report['server_rss_mb']} MB"]
    for stage in report.get("ramp", []):
        lines.append(f"ramp {stage['streams']:>2} streams  final p95 {stage['final_latency_ms']['p95']} ms  "
                     f"word-flag lag p95 {stage['word_flag_lag_ms']['p95']} ms  cpu {stage['server_cpu_percent']} %  "
                     + ("held" if stage["held"] else f"not held: {stage['not_held_because']}"))
    if report["max_realtime_streams"] is not None:
        lines.append(f"max realtime streams {report['max_realtime_streams']}")
    if report.get("compute_bound_streams") is not None:
        lines.append(f"compute bound {report['compute_bound_streams']} streams")
    for mode, run in report.get("batching", {}).items():
        lines.append(f"batching {mode}: audio {run['audio_seconds_per_second']} s/s  "
                     f"p95 final {run['final_latency_ms']['p95']} ms  cpu {run['server_cpu_percent']} %")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_server_args(list(sys.argv[1:] if argv is None else argv)))
    if args.server_pid is not None and not args.target:
        parser.error("--server-pid goes with --target (a spawned server is sampled anyway)")
    if (args.tls_ca or args.tls_cert or args.tls_key) and args.spawn:
        parser.error("--tls-ca/--tls-cert/--tls-key go with --target (a spawned server listens in plaintext on "
                     "loopback)")
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_cert and not args.tls_ca):
        parser.error("mutual TLS needs --tls-ca, --tls-cert and --tls-key together")
    if args.server_arg and not args.spawn:
        parser.error("--server-arg goes with --spawn")
    if args.compare_batching and (not args.spawn or args.ramp):
        parser.error("--compare-batching goes with --spawn (it starts both servers) and not with --ramp")
    try:
        report, headline, ramp = run_bench(args)
    except (SaywellClientError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    if args.report:
        write_report(report, args.report)
    else:
        print(json.dumps(report, indent=2))
    if args.plot:
        write_plot(args.plot, headline.stats, ramp, args.max_p95_ms if ramp else None,
                   args.max_lag_p95_ms if ramp else None)
    for line in _summary_lines(report):
        print(line, file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
