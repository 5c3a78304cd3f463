"""The load test's report: one JSON document with fixed keys, and an optional PNG (matplotlib, imported lazily)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saywell.client.bench_measure import RunStats
from saywell.client.bench_server import ResourceUsage
from saywell.client.hdr import LatencyHistogram

__all__ = ["REPORT_KEYS", "StageResult", "build_report", "compute_bound", "cpu_per_audio_second", "stage_held", "why_not_held",
           "stage_summary", "write_plot", "write_report"]

# The keys every report has, in this order; extras (endpointing delay, first response, ramp) follow.
REPORT_KEYS = (
    "streams",
    "duration_s",
    "utterances",
    "errors",
    "final_latency_ms",
    "word_flag_lag_ms",
    "audio_seconds_per_second",
    "server_cpu_percent",
    "server_rss_mb",
    "max_realtime_streams",
)
FINAL_PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "max": 100}
SHORT_PERCENTILES = {"p50": 50, "p95": 95}


@dataclass(frozen=True)
class StageResult:
    """One run at one concurrency: what was asked (streams, duration_s), how long it took, what it measured."""

    streams: int
    duration_s: float
    wall_s: float
    stats: RunStats
    usage: ResourceUsage | None = None


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _percentiles(hist: LatencyHistogram, names: dict[str, float]) -> dict[str, float | None]:
    return {name: _rounded(hist.percentile(p)) for name, p in names.items()}


def stage_held(result: StageResult, max_p95_ms: float, max_lag_p95_ms: float = 0.0) -> bool:
    """A concurrency holds when utterances were assessed, none failed, p95 final latency is within bounds, and
    (with `max_lag_p95_ms` > 0) so is the p95 word-flag lag: live flags that come late do not hold a stage."""
    return not why_not_held(result, max_p95_ms, max_lag_p95_ms)


def why_not_held(result: StageResult, max_p95_ms: float, max_lag_p95_ms: float = 0.0) -> str:
    """Why a stage does not hold ("" when it does)."""
    stats = result.stats
    p95 = stats.final_latency.percentile(95)
    if stats.error_count:
        return f"{stats.error_count} error(s)"
    if p95 is None:
        return "no utterance assessed"
    if p95 > max_p95_ms:
        return f"final p95 {p95:.0f} ms > {max_p95_ms:g} ms"
    lag = stats.word_flag_lag.percentile(95)
    if max_lag_p95_ms > 0 and lag is not None and lag > max_lag_p95_ms:
        return f"word-flag lag p95 {lag:.0f} ms > {max_lag_p95_ms:g} ms"
    return ""


def cpu_per_audio_second(result: StageResult) -> float | None:
    """Server CPU seconds spent per second of audio received, over all streams of the run."""
    usage, stats = result.usage, result.stats
    if usage is None or usage.cpu_percent is None or result.wall_s <= 0 or stats.audio_seconds_sent <= 0:
        return None
    return (usage.cpu_percent / 100) / (stats.audio_seconds_sent / result.wall_s)


def compute_bound(result: StageResult, cores: int) -> float | None:
    """Real-time streams the cores could carry at this run's CPU cost per audio second (issue 4's bound)."""
    cost = cpu_per_audio_second(result)
    return round(cores / cost, 2) if cost else None


def stage_summary(result: StageResult) -> dict[str, Any]:
    """The report's keys for one run (max_realtime_streams aside), then the extras."""
    stats = result.stats
    usage = result.usage or ResourceUsage(None, None)
    return {
        "streams": result.streams,
        "duration_s": result.duration_s,
        "utterances": stats.utterances,
        "errors": dict(sorted(stats.errors.items())),
        "final_latency_ms": _percentiles(stats.final_latency, FINAL_PERCENTILES),
        "word_flag_lag_ms": _percentiles(stats.word_flag_lag, SHORT_PERCENTILES),
        "audio_seconds_per_second": _rounded(stats.audio_seconds_sent / result.wall_s if result.wall_s > 0 else None,
                                             3),
        "server_cpu_percent": _rounded(usage.cpu_percent),
        "server_rss_mb": _rounded(usage.rss_mb),
        "cpu_seconds_per_audio_second": _rounded(cpu_per_audio_second(result), 3),
        "endpointing_delay_ms": _percentiles(stats.endpointing_delay, SHORT_PERCENTILES),
        "server_latency_ms": _percentiles(stats.server_latency, SHORT_PERCENTILES),
        "time_to_first_response_ms": _percentiles(stats.first_response, {"p50": 50, "p95": 95, "max": 100}),
        "wall_s": _rounded(result.wall_s, 2),
    }


def build_report(
    result: StageResult, *, max_realtime_streams: int | None = None, ramp: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The JSON report: REPORT_KEYS first (max_realtime_streams null unless ramped), extras after."""
    summary = stage_summary(result)
    report = {key: summary.get(key) for key in REPORT_KEYS}
    report["max_realtime_streams"] = max_realtime_streams
    report.update((key, value) for key, value in summary.items() if key not in report)
    if ramp is not None:
        report["ramp"] = list(ramp)
    return report


def write_report(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def write_plot(
    path: str | Path,
    stats: RunStats,
    ramp: Sequence[dict[str, Any]] | None = None,
    max_p95_ms: float | None = None,
    max_lag_p95_ms: float | None = None,
) -> None:
    """Latency CDFs (final, word flag lag, endpointing) and, for a ramp, p95 final latency and word-flag lag vs
    concurrency, with their limits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = 2 if ramp else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    for label, hist in (("final latency", stats.final_latency), ("word flag lag", stats.word_flag_lag),
                        ("endpointing delay", stats.endpointing_delay)):
        points = hist.cdf()
        if points:
            xs, ys = zip(*[(points[0][0], 0.0), *points])
            ax.step(xs, ys, where="post", label=f"{label} (n={hist.count})")
    ax.set_xlabel("ms")
    ax.set_ylabel("fraction ≤ x")
    ax.set_title("Latency CDF")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if ramp:
        ax = axes[0][1]
        for key, label, color in (("final_latency_ms", "p95 final latency", "C0"),
                                  ("word_flag_lag_ms", "p95 word-flag lag", "C1")):
            staged = [stage for stage in ramp if stage[key]["p95"] is not None]
            ax.plot([s["streams"] for s in staged], [s[key]["p95"] for s in staged], marker="o", color=color,
                    label=label)
        if max_p95_ms is not None:
            ax.axhline(max_p95_ms, color="C0", linestyle="--", label=f"final limit {max_p95_ms:g} ms")
        if max_lag_p95_ms:
            ax.axhline(max_lag_p95_ms, color="C1", linestyle=":", label=f"lag limit {max_lag_p95_ms:g} ms")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("ms")
        ax.set_title("p95 latency vs concurrency")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
