"""Prometheus metrics of the server, in their own registry so tests and embedders can run several servers."""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector,
                               start_http_server)

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds
        PlatformCollector(registry=r)
        self.active_streams = Gauge("saywell_active_streams", "Streams being served now", registry=r)
        self.engine_backlog = Gauge("saywell_engine_backlog",
                                    "Urgent engine work waiting (final assessments queued or running)", registry=r)
        self.stream_slots = Gauge("saywell_stream_slots",
                                  "Streams and Assess calls served at once before RESOURCE_EXHAUSTED "
                                  "(--max-concurrent-streams)", registry=r)
        self.assess_calls = Counter("saywell_assess_calls_total", "Unary Assess calls by gRPC status", ["status"],
                                    registry=r)
        self.streams = Counter("saywell_streams_total", "Streams by how they ended", ["status"], registry=r)
        self.utterances = Counter("saywell_utterances_total", "Utterances by outcome", ["outcome"], registry=r)
        self.final_latency = Histogram("saywell_final_latency_seconds", "Endpoint to final assessment",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.interim_latency = Histogram("saywell_interim_latency_seconds", "Interim decode wall time",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.speculations = Counter("saywell_speculative_finals_total",
                                    "Final assessments started at a pause: started, used at the endpoint, dropped",
                                    ["outcome"], registry=r)
        self.audio_seconds = Counter("saywell_audio_seconds_total", "Audio received", registry=r)
        self.errors = Counter("saywell_errors_total", "Errors returned, by gRPC status", ["code"], registry=r)
        self.batch_size = Histogram("saywell_stage_batch_size", "Items per engine batch", ["stage"],
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=r)
        self.batch_seconds = Histogram("saywell_stage_batch_seconds", "Engine batch wall time", ["stage"],
                                       buckets=LATENCY_BUCKETS, registry=r)

    def watch(self, backlog: Callable[[], int], slots: int) -> None:
        """Gauges read when scraped: the engine's backlog; the number of slots."""
        self.engine_backlog.set_function(backlog)
        self.stream_slots.set(slots)

    def on_batch(self, stage: str, size: int, seconds: float) -> None:
        self.batch_size.labels(stage).observe(size)
        self.batch_seconds.labels(stage).observe(seconds)

    def serve_http(self, port: int, host: str = "127.0.0.1"):
        """Starts /metrics on a daemon thread; returns (server, thread)."""
        return start_http_server(port, addr=host, registry=self.registry)
