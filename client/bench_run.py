"""One load run: N concurrent StreamAssess calls on one asyncio loop, each paced like a live microphone.

Every stream follows its own seeded plan (bench_plan), stamps each chunk it sends and each response it gets
on the loop's monotonic clock (bench_measure), half-closes once its plan is spoken and drains the answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TextIO

from saywell.client.aio import AsyncSaywellClient
from saywell.client.bench_measure import ResponseTracker, RunStats, SendTimeline
from saywell.client.bench_plan import BenchCorpus, Pacer, PlanSegment, plan_stream, segment_chunks
from saywell.client.errors import RpcFailed
from saywell.client.options import ClientOptions
from saywell.v1 import assessment_pb2 as pb

__all__ = ["LoadOptions", "ProgressLine", "run_load"]


@dataclass(frozen=True)
class LoadOptions:
    """One run. drain_timeout_s: how long streams may take to answer after their audio ends (then
    DEADLINE_EXCEEDED); label: prefix of the progress line (the ramp stage)."""

    streams: int
    duration_s: float
    realtime_factor: float = 1.0
    chunk_ms: int = 100
    seed: int = 0
    drain_timeout_s: float = 60.0
    label: str = ""

    def __post_init__(self) -> None:
        if self.streams < 1:
            raise ValueError(f"streams must be >= 1, got {self.streams}")
        if self.duration_s <= 0:
            raise ValueError(f"duration must be > 0 s, got {self.duration_s}")
        if self.realtime_factor <= 0:
            raise ValueError(f"realtime factor must be > 0, got {self.realtime_factor}")
        if not 20 <= self.chunk_ms <= 200:
            raise ValueError(f"chunk-ms must be 20..200, got {self.chunk_ms}")


async def run_load(
    target: str,
    corpus: BenchCorpus,
    opts: LoadOptions,
    stats: RunStats,
    *,
    client_options: ClientOptions | None = None,
    progress_out: TextIO | None = None,
) -> float:
    """Run every stream to its end; returns the wall seconds it took. Measurements land in `stats`."""
    rate = corpus.sample_rate_hertz
    plans = [plan_stream(corpus, random.Random(opts.seed * 1_000_003 + i), opts.duration_s, opts.realtime_factor)
             for i in range(opts.streams)]
    longest_s = max(plan[-1].end for plan in plans) / rate / opts.realtime_factor
    options = dataclasses.replace(client_options or ClientOptions(), stream_timeout_s=longest_s + opts.drain_timeout_s)
    loop = asyncio.get_running_loop()
    open_streams = [0]
    progress = ProgressLine(stats, lambda: open_streams[0], label=opts.label, out=progress_out)
    started = loop.time()
    async with AsyncSaywellClient(target, options=options) as client:
        reporter = asyncio.ensure_future(progress.run(started))
        try:
            await asyncio.gather(*(
                _run_stream(client, corpus, plan, opts, stats, f"bench-{opts.label or 'run'}-{i}", open_streams)
                for i, plan in enumerate(plans)))
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
    wall_s = loop.time() - started
    progress.finish(wall_s)
    return wall_s


async def _run_stream(
    client: AsyncSaywellClient,
    corpus: BenchCorpus,
    plan: list[PlanSegment],
    opts: LoadOptions,
    stats: RunStats,
    request_id: str,
    open_streams: list[int],
) -> None:
    rate = corpus.sample_rate_hertz
    timeline = SendTimeline()
    for segment in plan:
        if segment.utterance is not None:
            timeline.add_utterance(segment.start * 1000 / rate, segment.end * 1000 / rate)
    tracker = ResponseTracker(timeline, stats)
    config = pb.StreamingAssessConfig(
        audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate, audio_channel_count=1),
        interim_results=True,
        client_request_id=request_id,
    )
    loop = asyncio.get_running_loop()
    open_streams[0] += 1
    try:
        async for response in client.stream_assess(_requests(config, plan, opts, rate, timeline, stats)):
            tracker.on_response(response, loop.time())
    except RpcFailed as e:
        tracker.on_stream_error(e.code_name)
    finally:
        open_streams[0] -= 1


async def _requests(
    config: pb.StreamingAssessConfig,
    plan: list[PlanSegment],
    opts: LoadOptions,
    rate: int,
    timeline: SendTimeline,
    stats: RunStats,
) -> AsyncIterator[pb.StreamAssessRequest]:
    yield pb.StreamAssessRequest(config=config)
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop.time(), rate, opts.realtime_factor)
    chunk_samples = max(1, rate * opts.chunk_ms // 1000)
    for segment in plan:
        for end_sample, piece in segment_chunks(segment, chunk_samples):
            delay = pacer.due(end_sample) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            timeline.record_chunk(end_sample * 1000 / rate, loop.time())
            stats.audio_seconds_sent += len(piece) / rate
            yield pb.StreamAssessRequest(audio=piece.tobytes())


class ProgressLine:
    """One status line on stderr: rewritten in place on a terminal, else printed every 5 s."""

    def __init__(self, stats: RunStats, open_streams: Callable[[], int], *, label: str = "",
                 out: TextIO | None = None) -> None:
        self.stats = stats
        self.open_streams = open_streams
        self.label = label
        self.out = out or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.interval_s = 0.5 if self.tty else 5.0

    def render(self, elapsed_s: float) -> str:
        p95 = self.stats.final_latency.percentile(95)
        p95_text = "-" if p95 is None else f"{p95:.0f} ms"
        prefix = f"[{self.label}] " if self.label else ""
        return (f"{prefix}{elapsed_s:6.1f} s  streams {self.open_streams():3d}  utterances {self.stats.utterances:5d}"
                f"  p95 final {p95_text:>8}  errors {self.stats.error_count}")

    def _write(self, elapsed_s: float) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + self.render(elapsed_s))
        else:
            self.out.write(self.render(elapsed_s) + "\n")
        self.out.flush()

    async def run(self, started: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            self._write(loop.time() - started)

    def finish(self, elapsed_s: float) -> None:
        self._write(elapsed_s)
        if self.tty:
            self.out.write("\n")
            self.out.flush()
