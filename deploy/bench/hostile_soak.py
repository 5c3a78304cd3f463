"""Hostile clients mixed with real-time good streams: do learners still get their finals, and on time?

    .venv/bin/python deploy/bench/hostile_soak.py --duration 300 --spawn-fake
    .venv/bin/python deploy/bench/hostile_soak.py --duration 600 --target 127.0.0.1:50051 --server-pid 12345

Good streams (--good-streams of them) loop the 16 kHz fixtures at real-time pace as LINEAR16 100 ms chunks, send
EndOfUtterance after each recording and 0.5 s of silence before the next, and reopen their stream every
--good-stream-s. The final latency of an utterance is the time from its EndOfUtterance (sent with its last audio
chunk) to its `utterance` response.

Hostile clients start every --hostile-every seconds (at most --max-hostile at once, one of each kind), in turn:
  unparsable      bytes that are not a StreamAssessRequest, the stream kept open
  config_silence  a valid config, then nothing, the stream kept open (the server's idle timeout should end it)
  nothing         no message at all, the stream kept open (the server's config timeout should end it)
  tiny_flood      a config, then 1-byte audio messages as fast as they go (the message-rate limit should end it)
  opus_bomb       an Ogg/Opus "decompression bomb": --bomb-seconds of 8 kHz silence, a few hundred kB
  random_opus     random bytes declared OGG_OPUS
  fast_flooder    --flood-utterances utterances sent as fast as flow control lets them through
Every hostile call has a deadline (--hostile-timeout); an outcome "DEADLINE_EXCEEDED (client)" means the server
did not end the call itself before that deadline.

Only loopback targets are accepted. The report is one JSON document (stdout, or --json PATH) and a short summary
on stderr: good utterances scored and failed, p50/p95 final latency, hostile outcomes by status, and the
server's RSS (VmRSS) at start, middle and end when its pid is known (--spawn-fake, or --server-pid).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import soundfile as sf

from saywell.client.aio import _result_now  # a done call's code() and details(), from a callback
from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
FAKE_SERVER = ROOT / "tests" / "integration" / "fake_server_main.py"
STREAM_METHOD = "/saywell.v1.PronunciationAssessmentService/StreamAssess"
RATE = 16000
CHUNK_BYTES = RATE * 2 // 10  # 100 ms of 16-bit mono
GAP = bytes(RATE)  # 0.5 s of silence between the good streams' utterances
HOSTILE_KINDS = ("unparsable", "config_silence", "nothing", "tiny_flood", "opus_bomb", "random_opus",
                 "fast_flooder")
TINY_FLOOD_MAX_MESSAGES = 20_000


# -- target ---------------------------------------------------------------------------------------------------

def split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--target must be HOST:PORT, got {target!r}")
    return host.strip("[]"), int(port)


def require_loopback(target: str) -> None:
    """Refuses any target that is, or resolves to, anything but a loopback address."""
    host, port = split_target(target)
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as exc:
        raise ValueError(f"--target {target!r} does not resolve: {exc}") from None
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if not addresses or outside:
        raise ValueError(f"--target {target!r} is not loopback ({', '.join(outside) or 'no address'}); "
                         "this soak only runs against a server on this machine")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeServer:
    """tests/integration/fake_server_main.py in its own process, on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, str(FAKE_SERVER), str(self.port)], cwd=ROOT, env=env)
        self.pid = self.process.pid

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.target) as channel:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the fake server exited with {self.process.returncode}")
                try:
                    await asyncio.wait_for(channel.channel_ready(), 1.0)
                    return
                except asyncio.TimeoutError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the fake server did not listen within {timeout:g} s") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# -- audio ----------------------------------------------------------------------------------------------------

def good_recordings() -> list[tuple[str, bytes]]:
    """The 16 kHz mono fixtures, as LINEAR16 bytes."""
    recordings = []
    for path in sorted(FIXTURES.glob("*.wav")):
        info = sf.info(path)
        if info.samplerate == RATE and info.channels == 1 and path.stem != "two_utterances":
            recordings.append((path.stem, sf.read(path, dtype="int16")[0].tobytes()))
    if not recordings:
        raise RuntimeError(f"no 16 kHz mono fixtures in {FIXTURES}")
    return recordings


def opus_bomb(seconds: int) -> bytes:
    """`seconds` of 8 kHz silence as Ogg/Opus (about 230 bytes a second), cached in the temp folder."""
    path = Path(tempfile.gettempdir()) / f"saywell-opus-bomb-{seconds}s.ogg"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        sf.write(partial, np.zeros(8000 * seconds, np.int16), 8000, format="OGG", subtype="OPUS")
        partial.replace(path)
    return path.read_bytes()


def config_request(encoding=pb.AUDIO_ENCODING_LINEAR16, rate=RATE, interim=True, request_id="") -> pb.StreamAssessRequest:
    return pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
        audio=pb.AudioConfig(encoding=encoding, sample_rate_hertz=rate), interim_results=interim,
        client_request_id=request_id))


def audio_request(data: bytes) -> pb.StreamAssessRequest:
    return pb.StreamAssessRequest(audio=data)


END_OF_UTTERANCE = pb.StreamAssessRequest(end_of_utterance=pb.EndOfUtterance())


class FirstStatus:
    """Done callback keeping the first status a call ended with: when a write fails because the server already
    ended the call, grpc.aio overwrites the server's status with INTERNAL "Internal error from Core"
    (grpc/grpc#36066); the first status is the server's."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def __call__(self, call) -> None:
        if self.code is None:
            self.code, self.details = _result_now(call.code()), _result_now(call.details()) or ""

    async def of(self, call) -> tuple[grpc.StatusCode, str]:
        code, details = await call.code(), (await call.details()) or ""
        if code == grpc.StatusCode.INTERNAL and details == "Internal error from Core" and self.code not in (
                None, grpc.StatusCode.OK, grpc.StatusCode.INTERNAL):
            return self.code, self.details
        return code, details




# -- statistics -----------------------------------------------------------------------------------------------

@dataclass
class GoodStats:
    streams: int = 0
    stream_status: Counter = field(default_factory=Counter)
    stream_details: Counter = field(default_factory=Counter)  # non-OK statuses with their messages
    utterances_sent: int = 0
    utterances_scored: int = 0
    utterance_errors: int = 0
    unmatched_finals: int = 0  # finals that ended before an EndOfUtterance (the VAD cut a recording)
    unmatched_examples: list = field(default_factory=list)
    missing_summary: int = 0
    final_latency_ms: list[float] = field(default_factory=list)
    slowest: list[tuple[float, float, float]] = field(default_factory=list)  # (latency ms, sent s, received s)
    server_latency_ms: list[float] = field(default_factory=list)


@dataclass
class HostileStats:
    launched: Counter = field(default_factory=Counter)
    skipped: int = 0  # ticks with no kind free under --max-hostile
    outcomes: dict = field(default_factory=lambda: defaultdict(Counter))
    details: dict = field(default_factory=lambda: defaultdict(Counter))
    seconds: dict = field(default_factory=lambda: defaultdict(list))
    notes: dict = field(default_factory=lambda: defaultdict(Counter))
    intervals: list = field(default_factory=list)  # [kind, start s, end s or None] of every hostile call

    def during(self, start: float, end: float) -> list[str]:
        """The hostile kinds that ran at some time in [start, end] (seconds into the soak)."""
        return sorted({kind for kind, began, ended in self.intervals
                       if began <= end and (ended is None or ended >= start)})


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    array = np.asarray(values)
    return {"n": len(values), "p50": round(float(np.percentile(array, 50)), 1),
            "p95": round(float(np.percentile(array, 95)), 1), "max": round(float(array.max()), 1)}


# -- good streams ---------------------------------------------------------------------------------------------

async def good_stream(stub, recordings, stats: GoodStats, stream_until: float, worker: int, started: float) -> None:
    """One stream: recordings at real time, EndOfUtterance after each, until `stream_until`; then the summary."""
    call = stub.StreamAssess(timeout=stream_until - time.monotonic() + 60)
    first_status = FirstStatus()
    call.add_done_callback(first_status)
    pending: list[tuple[int, float]] = []  # (stream offset ms at EndOfUtterance, when it was sent)
    stats.streams += 1

    async def write() -> None:
        sent_bytes = 0
        started = time.monotonic()
        order = list(recordings)
        random.Random(worker).shuffle(order)
        await call.write(config_request(request_id=f"good-{worker}-{stats.streams}"))
        turn = 0
        while time.monotonic() < stream_until:
            _, pcm = order[turn % len(order)]
            turn += 1
            for at in range(0, len(pcm), CHUNK_BYTES):
                chunk = pcm[at:at + CHUNK_BYTES]
                sent_bytes += len(chunk)
                # Like a microphone: a chunk exists once its audio has been spoken.
                await asyncio.sleep(max(0.0, started + sent_bytes / (2 * RATE) - time.monotonic()))
                await call.write(audio_request(chunk))
            pending.append((sent_bytes * 1000 // (2 * RATE), time.monotonic()))
            await call.write(END_OF_UTTERANCE)
            stats.utterances_sent += 1
            for at in range(0, len(GAP), CHUNK_BYTES):
                sent_bytes += CHUNK_BYTES
                await asyncio.sleep(max(0.0, started + sent_bytes / (2 * RATE) - time.monotonic()))
                await call.write(audio_request(GAP[at:at + CHUNK_BYTES]))
        await call.done_writing()

    writer = asyncio.create_task(write())
    summary = False
    try:
        async for response in call:
            event = response.WhichOneof("event")
            if event == "utterance":
                stats.utterances_scored += 1
                stats.server_latency_ms.append(response.utterance.processing.latency_ms)
                latency = match_final(pending, response.utterance, stats)
                if latency is not None:
                    received = time.monotonic() - started
                    stats.slowest.append((round(latency, 1), round(received - latency / 1000, 2), round(received, 2)))
                    stats.slowest = sorted(stats.slowest, reverse=True)[:8]
            elif event == "utterance_error":
                stats.utterance_errors += 1
                if pending:
                    pending.pop(0)
            elif event == "summary":
                summary = True
    except grpc.RpcError:
        pass
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.RpcError, asyncio.InvalidStateError,
                                 grpc.aio.UsageError):
            await writer
    code, details = await first_status.of(call)
    stats.stream_status[code.name] += 1
    if code != grpc.StatusCode.OK:
        stats.stream_details[f"{code.name}: {details}"[:160]] += 1
    elif not summary:
        stats.missing_summary += 1


def match_final(pending: list[tuple[int, float]], utterance: pb.UtteranceAssessment, stats: GoodStats
                ) -> float | None:
    """Pairs a final with the EndOfUtterance that ended it: the oldest one at or after the utterance's end."""
    now, end_ms = time.monotonic(), utterance.end_ms
    while pending and pending[0][0] + 300 < end_ms:  # an EndOfUtterance whose utterance never came back
        pending.pop(0)
    if pending and end_ms >= pending[0][0] - 300:
        _, sent = pending.pop(0)
        stats.final_latency_ms.append((now - sent) * 1000)
        return (now - sent) * 1000
    stats.unmatched_finals += 1
    if len(stats.unmatched_examples) < 5:
        stats.unmatched_examples.append({"start_ms": utterance.start_ms, "end_ms": end_ms,
                                         "cause": pb.EndpointCause.Name(utterance.cause),
                                         "next_end_of_utterance_ms": pending[0][0] if pending else None})
    return None


async def good_worker(target: str, recordings, stats: GoodStats, started: float, stop_at: float, stream_s: float,
                      worker: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
        while time.monotonic() < stop_at - 3:
            opened = time.monotonic()
            await good_stream(stub, recordings, stats, min(stop_at, opened + stream_s), worker, started)
            await asyncio.sleep(max(0.0, opened + 1 - time.monotonic()))  # a refused stream is not retried at once


# -- hostile clients ------------------------------------------------------------------------------------------

async def raw_call(channel, write, timeout: float, serializer=bytes) -> tuple[str, str, Counter, float]:
    """Runs one stream whose requests `write(call)` sends: (status, details, response kinds, seconds)."""
    multicallable = channel.stream_stream(STREAM_METHOD, request_serializer=serializer,
                                          response_deserializer=pb.StreamAssessResponse.FromString)
    started = time.monotonic()
    call = multicallable(timeout=timeout)
    first_status = FirstStatus()
    call.add_done_callback(first_status)

    async def writer() -> None:
        with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            await write(call)

    task = asyncio.create_task(writer())
    kinds: Counter = Counter()
    try:
        async for response in call:
            kinds[response.WhichOneof("event")] += 1
    except grpc.RpcError:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    seconds = time.monotonic() - started
    code, details = await first_status.of(call)
    name = code.name
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":  # grpc's own words
        name = "DEADLINE_EXCEEDED (client)"
    return name, details, kinds, seconds


def hostile_writer(kind: str, bomb: bytes, recordings, rng: random.Random, hold_s: float, flood_utterances: int):
    """The request-writing coroutine function of one hostile client."""
    async def hold(call) -> None:
        await asyncio.sleep(hold_s)  # keep the stream open, say nothing; cancelled once the call ends

    async def unparsable(call) -> None:
        await call.write(rng.choice([b"\xff" * 16, b"\x0a\x05\x0a\x03\x08", b"\x7b" * 300,
                                     b"\x0a\x06\x2a\x04\xff\xfe\xfd\xfc"]))
        await hold(call)

    async def config_silence(call) -> None:
        await call.write(config_request().SerializeToString())
        await hold(call)

    async def tiny_flood(call) -> None:
        await call.write(config_request().SerializeToString())
        one_byte = audio_request(b"\x01").SerializeToString()
        for _ in range(TINY_FLOOD_MAX_MESSAGES):
            if call.done():
                return
            await call.write(one_byte)
        await call.done_writing()

    async def chunked(call, encoding, data: bytes, rate=0) -> None:
        await call.write(config_request(encoding=encoding, rate=rate, interim=False).SerializeToString())
        for at in range(0, len(data), 64 * 1024):
            await call.write(audio_request(data[at:at + 64 * 1024]).SerializeToString())
        await call.done_writing()

    async def fast_flooder(call) -> None:
        await call.write(config_request(interim=True).SerializeToString())
        for turn in range(flood_utterances):
            pcm = recordings[turn % len(recordings)][1] + GAP + GAP
            for at in range(0, len(pcm), 3200):
                await call.write(audio_request(pcm[at:at + 3200]).SerializeToString())
        await call.done_writing()

    return {
        "unparsable": unparsable,
        "config_silence": config_silence,
        "nothing": hold,
        "tiny_flood": tiny_flood,
        "opus_bomb": lambda call: chunked(call, pb.AUDIO_ENCODING_OGG_OPUS, bomb),
        "random_opus": lambda call: chunked(call, pb.AUDIO_ENCODING_OGG_OPUS, rng.randbytes(rng.randint(1, 200_000))),
        "fast_flooder": fast_flooder,
    }[kind]


async def hostile_client(channel, kind: str, args, bomb: bytes, recordings, stats: HostileStats,
                         rng: random.Random, started: float) -> None:
    write = hostile_writer(kind, bomb, recordings, rng, args.hostile_timeout + 5, args.flood_utterances)
    interval = [kind, round(time.monotonic() - started, 2), None]
    stats.intervals.append(interval)
    try:
        name, details, kinds, seconds = await raw_call(channel, write, args.hostile_timeout)
    except Exception as exc:  # noqa: BLE001 - a client-side failure is an outcome too
        stats.outcomes[kind][f"client error {type(exc).__name__}"] += 1
        return
    finally:
        interval[2] = round(time.monotonic() - started, 2)
    stats.outcomes[kind][name] += 1
    stats.seconds[kind].append(seconds)
    if details and name != "OK":
        stats.details[kind][f"{name}: {details}"[:160]] += 1
    if kind == "fast_flooder":
        stats.notes[kind]["finals"] += kinds["utterance"]
        stats.notes[kind]["utterance_errors"] += kinds["utterance_error"]


async def hostile_loop(target: str, args, bomb: bytes, recordings, stats: HostileStats, started: float,
                       stop_at: float) -> None:
    rng = random.Random(args.seed)
    in_flight: dict[str, asyncio.Task] = {}
    turn = 0
    async with grpc.aio.insecure_channel(
            target, options=[("grpc.max_send_message_length", 8 * 2**20)]) as channel:
        while time.monotonic() < stop_at:
            for kind, task in list(in_flight.items()):
                if task.done():
                    del in_flight[kind]
            free = [HOSTILE_KINDS[(turn + i) % len(HOSTILE_KINDS)] for i in range(len(HOSTILE_KINDS))]
            free = [kind for kind in free if kind not in in_flight]
            if free and len(in_flight) < args.max_hostile:
                kind = free[0]
                turn = HOSTILE_KINDS.index(kind) + 1
                stats.launched[kind] += 1
                in_flight[kind] = asyncio.create_task(hostile_client(channel, kind, args, bomb, recordings, stats,
                                                                     random.Random(rng.random()), started))
            else:
                stats.skipped += 1
            await asyncio.sleep(min(args.hostile_every, max(0.0, stop_at - time.monotonic())))
        # Whatever is still running gets its own deadline to end, plus a margin.
        if in_flight:
            await asyncio.wait(list(in_flight.values()), timeout=args.hostile_timeout + 10)
        for task in in_flight.values():
            task.cancel()


# -- main -----------------------------------------------------------------------------------------------------

async def rss_sampler(pid: int | None, samples: list, started: float, every: float, stop: asyncio.Event) -> None:
    while True:
        value = rss_kb(pid)
        if value is not None:
            samples.append((round(time.monotonic() - started, 1), value))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
            return


async def soak(args) -> dict:
    recordings = good_recordings()
    bomb = opus_bomb(args.bomb_seconds)
    server = FakeServer() if args.spawn_fake else None
    try:
        if server is not None:
            await server.ready()
            target, pid = server.target, server.pid
        else:
            target, pid = args.target, args.server_pid
            async with grpc.aio.insecure_channel(target) as channel:
                try:
                    await asyncio.wait_for(channel.channel_ready(), 10)
                except asyncio.TimeoutError:
                    raise SystemExit(f"hostile_soak: no server answers at {target} within 10 s") from None
        good, hostile = GoodStats(), HostileStats()
        rss: list[tuple[float, int]] = []
        stop = asyncio.Event()
        started = time.monotonic()
        stop_at = started + args.duration
        sampler = asyncio.create_task(rss_sampler(pid, rss, started, args.rss_every, stop))
        workers = [asyncio.create_task(good_worker(target, recordings, good, started, stop_at, args.good_stream_s, i))
                   for i in range(args.good_streams)]
        hostiles = asyncio.create_task(hostile_loop(target, args, bomb, recordings, hostile, started, stop_at))
        done, pending = await asyncio.wait(workers + [hostiles], timeout=args.duration + args.hostile_timeout + 90)
        for task in pending:
            task.cancel()
        failures = [repr(task.exception()) for task in done if not task.cancelled() and task.exception()]
        stop.set()
        await sampler
        end_rss = rss_kb(pid)
        if end_rss is not None:
            rss.append((round(time.monotonic() - started, 1), end_rss))
    finally:
        if server is not None:
            server.stop()
    middle = min(rss, key=lambda s: abs(s[0] - args.duration / 2)) if rss else None
    return {
        "target": target, "server": "spawned fake engine" if server else "existing", "server_pid": pid,
        "duration_s": args.duration, "elapsed_s": round(time.monotonic() - started, 1),
        "good_streams": args.good_streams, "hostile_every_s": args.hostile_every,
        "bomb": {"seconds_of_audio": args.bomb_seconds, "bytes": len(bomb),
                 "decoded_16k_int16_bytes": args.bomb_seconds * RATE * 2},
        "good": {"streams": good.streams, "stream_status": dict(good.stream_status),
                 "stream_errors": dict(good.stream_details), "utterances_sent": good.utterances_sent,
                 "utterances_scored": good.utterances_scored, "utterance_errors": good.utterance_errors,
                 "unmatched_finals": good.unmatched_finals, "unmatched_examples": good.unmatched_examples,
                 "missing_summary": good.missing_summary,
                 "final_latency_ms": percentiles(good.final_latency_ms),
                 "server_latency_ms": percentiles(good.server_latency_ms),
                 "slowest_finals": [{"latency_ms": ms, "sent_at_s": sent, "received_at_s": received,
                                     "hostile_running_meanwhile": hostile.during(sent, received)}
                                    for ms, sent, received in good.slowest]},
        "hostile": {kind: {"launched": hostile.launched[kind], "outcomes": dict(hostile.outcomes[kind]),
                           "details": dict(hostile.details[kind]),
                           "max_seconds": round(max(hostile.seconds[kind]), 2) if hostile.seconds[kind] else None,
                           **({"notes": dict(hostile.notes[kind])} if hostile.notes[kind] else {})}
                    for kind in HOSTILE_KINDS},
        "hostile_ticks_skipped": hostile.skipped,
        "rss_kb": {"start": rss[0][1] if rss else None, "middle": middle[1] if middle else None,
                   "end": rss[-1][1] if rss else None, "max": max(v for _, v in rss) if rss else None,
                   "samples": rss},
        "soak_task_failures": failures,
    }


def summary_lines(report: dict) -> list[str]:
    good, latency = report["good"], report["good"]["final_latency_ms"]
    lines = [f"hostile soak, {report['elapsed_s']} s against {report['target']} ({report['server']})",
             f"good: {good['utterances_scored']} utterances scored of {good['utterances_sent']} sent, "
             f"{good['utterance_errors']} utterance errors, streams {good['stream_status']}, "
             f"{good['missing_summary']} without summary",
             f"good final latency ms: p50 {latency.get('p50')} p95 {latency.get('p95')} max {latency.get('max')} "
             f"(n={latency['n']})"]
    for kind, entry in report["hostile"].items():
        lines.append(f"hostile {kind:15s} launched {entry['launched']:3d}  {entry['outcomes']}  "
                     f"max {entry['max_seconds']} s {entry.get('notes', '')}")
    rss = report["rss_kb"]
    if rss["start"] is not None:
        lines.append(f"server RSS MB: start {rss['start'] / 1024:.1f}, middle {rss['middle'] / 1024:.1f}, "
                     f"end {rss['end'] / 1024:.1f}, max {rss['max'] / 1024:.1f}")
    else:
        lines.append("server RSS: unknown (no --server-pid)")
    if report["soak_task_failures"]:
        lines.append(f"soak task failures: {report['soak_task_failures']}")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--spawn-fake", action="store_true",
                       help="start tests/integration/fake_server_main.py (fake engine) on a free loopback port")
    where.add_argument("--target", help="HOST:PORT of a running server; loopback only")
    parser.add_argument("--server-pid", type=int, help="pid of the --target server, for its RSS")
    parser.add_argument("--duration", type=float, default=300, help="seconds of soak (default 300)")
    parser.add_argument("--good-streams", type=int, default=2, help="real-time good streams at once (default 2)")
    parser.add_argument("--good-stream-s", type=float, default=60, help="seconds before a good stream reopens")
    parser.add_argument("--hostile-every", type=float, default=2.0, help="seconds between hostile clients")
    parser.add_argument("--max-hostile", type=int, default=4, help="hostile clients at once (default 4)")
    parser.add_argument("--hostile-timeout", type=float, default=75.0,
                        help="deadline of each hostile call, s (default 75: past the server's 60 s idle timeout)")
    parser.add_argument("--bomb-seconds", type=int, default=1200, help="8 kHz silence in the Ogg/Opus bomb")
    parser.add_argument("--flood-utterances", type=int, default=20, help="utterances each fast flooder sends")
    parser.add_argument("--rss-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the JSON report here instead of stdout")
    args = parser.parse_args(argv)
    checks = [(0 < args.duration <= 24 * 3600, "--duration must be 0..86400 s"),
              (0 <= args.good_streams <= 64, "--good-streams must be 0..64"),
              (args.good_stream_s >= 5, "--good-stream-s must be >= 5"),
              (args.hostile_every >= 0.05, "--hostile-every must be >= 0.05 s"),
              (0 <= args.max_hostile <= len(HOSTILE_KINDS), f"--max-hostile must be 0..{len(HOSTILE_KINDS)}"),
              (1 <= args.hostile_timeout <= 600, "--hostile-timeout must be 1..600 s"),
              (1 <= args.bomb_seconds <= 4 * 3600, "--bomb-seconds must be 1..14400"),
              (1 <= args.flood_utterances <= 500, "--flood-utterances must be 1..500")]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    if args.target:
        try:
            require_loopback(args.target)
        except ValueError as exc:
            parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(soak(args))
    text = json.dumps(report, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    for line in summary_lines(report):
        print(line, file=sys.stderr)
    good = report["good"]
    healthy = (good["utterance_errors"] == 0 and set(good["stream_status"]) <= {"OK"} and good["utterances_scored"]
               and not report["soak_task_failures"])
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
