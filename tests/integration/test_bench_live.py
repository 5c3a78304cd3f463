"""saywell bench against a real spawned server (real models, ~10 s warm-up): a short two-stream run."""
import json

from live_server import FIXTURES

from saywell.client import bench
from saywell.client.bench_report import REPORT_KEYS


def test_a_short_spawned_run_reports_real_latencies(tmp_path):
    report_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    code = bench.main(["--spawn", "--streams", "2", "--duration", "8", "--data", str(FIXTURES), "--seed", "3",
                       "--report", str(report_path), "--plot", str(plot_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert tuple(report)[: len(REPORT_KEYS)] == REPORT_KEYS
    assert report["streams"] == 2 and report["duration_s"] == 8.0
    assert report["errors"] == {}
    assert report["utterances"] > 0
    latency = report["final_latency_ms"]
    assert set(latency) == {"p50", "p90", "p95", "p99", "max"}
    assert all(value > 0 for value in latency.values())
    assert latency["p50"] <= latency["p95"] <= latency["max"]
    # Endpointing waits for 700 ms of silence, less any quiet tail the recording already has.
    assert 100 < report["endpointing_delay_ms"]["p50"] < 5000
    assert report["audio_seconds_per_second"] > 0.5  # two real-time streams, less the drain at the end
    assert report["server_cpu_percent"] > 0 and report["server_rss_mb"] > 100
    assert report["max_realtime_streams"] is None
    assert plot_path.read_bytes()[:4] == b"\x89PNG"
