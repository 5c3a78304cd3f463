"""saywell bench without a real server: histogram accuracy, plans and pacing, lag arithmetic, the report schema,
and short runs against the fake server."""

from __future__ import annotations

import io
import os
import json
import random
import subprocess
import sys
import time
from collections import Counter

import grpc
import numpy as np
import pytest
import soundfile as sf

from saywell.client import bench
from saywell.client.bench_measure import MID_UTTERANCE_CUT_MS, ResponseTracker, RunStats, SendTimeline
from saywell.client.bench_plan import (
    GAP_S,
    LEAD_IN_S,
    MIN_TAIL_S,
    BenchCorpus,
    BenchUtterance,
    Pacer,
    find_audio_files,
    load_corpus,
    plan_stream,
    segment_chunks,
)
from saywell.client.bench_report import (REPORT_KEYS, StageResult, build_report, compute_bound, stage_held, why_not_held,
                                         write_plot)
from saywell.client.bench_run import ProgressLine
from saywell.client.bench_server import ResourceSampler, ResourceUsage
from saywell.client.hdr import LatencyHistogram
from saywell.v1 import assessment_pb2 as pb

# -- histogram ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_histogram_percentiles_are_within_one_percent_of_numpy(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.lognormal(6.0, 1.0, 20_000), rng.uniform(0.5, 5.0, 500), [125_000.0]])
    hist = LatencyHistogram()
    hist.record_all(values.tolist())
    for p in (1, 10, 50, 90, 95, 99, 99.9):
        true = np.percentile(values, p, method="inverted_cdf")
        assert hist.percentile(p) == pytest.approx(true, rel=0.01), p
    assert hist.percentile(100) == values.max()
    assert hist.count == len(values)
    assert hist.mean == pytest.approx(values.mean())


def test_histogram_small_counts_match_nearest_rank_exactly_enough():
    hist = LatencyHistogram()
    hist.record_all([100.0, 200.0, 300.0, 400.0])
    assert hist.percentile(50) == pytest.approx(200.0, rel=0.005)
    assert hist.percentile(75) == pytest.approx(300.0, rel=0.005)
    assert hist.percentile(76) == pytest.approx(400.0, rel=0.005)
    assert hist.percentile(0) == pytest.approx(100.0, rel=0.005)


def test_histogram_empty_zero_and_negative_values():
    hist = LatencyHistogram()
    assert hist.percentile(50) is None and hist.mean is None and hist.cdf() == []
    hist.record_all([0.0, -3.0, 10.0])
    assert hist.percentile(50) == 0.0
    assert hist.percentile(100) == 10.0
    with pytest.raises(ValueError):
        hist.record(float("nan"))
    with pytest.raises(ValueError):
        hist.percentile(101)


def test_histogram_merge_equals_recording_everything_in_one():
    rng = np.random.default_rng(7)
    a_values, b_values = rng.exponential(300, 3000), rng.exponential(900, 1000)
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    a.record_all(a_values)
    b.record_all(b_values)
    both.record_all(np.concatenate([a_values, b_values]))
    a.merge(b)
    assert a.count == both.count
    assert all(a.percentile(p) == both.percentile(p) for p in (50, 90, 99, 100))
    with pytest.raises(ValueError):
        a.merge(LatencyHistogram(relative_error=0.01))


def test_histogram_cdf_is_monotonic_and_ends_at_one():
    hist = LatencyHistogram()
    hist.record_all(np.random.default_rng(3).uniform(1, 1000, 500))
    points = hist.cdf()
    xs, ys = zip(*points)
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys)
    assert ys[-1] == 1.0


# -- corpus, plan and pacing --------------------------------------------------------------------------------


def _corpus(rate: int = 16000, seconds=(1.0, 2.5, 3.0)) -> BenchCorpus:
    return BenchCorpus(rate, tuple(
        BenchUtterance(f"u{i}", np.full(int(s * rate), 1000, dtype="<i2")) for i, s in enumerate(seconds)))


def test_fixtures_load_as_one_rate_with_the_8k_file_resampled(fixtures_dir):
    corpus = load_corpus(fixtures_dir)
    assert corpus.sample_rate_hertz == 16000
    by_name = {u.name.rsplit("/", 1)[-1]: u for u in corpus.utterances}
    assert set(by_name) == {"fox.wav", "coffee.wav", "brother.wav", "market_8k.wav", "two_utterances.wav"}
    market = by_name["market_8k.wav"]
    assert market.pcm.dtype == np.dtype("<i2") and market.pcm.ndim == 1
    assert market.duration_s(16000) == pytest.approx(sf.info(str(fixtures_dir / "market_8k.wav")).duration, abs=0.01)


def test_a_speechocean_folder_is_read_from_its_audio_subfolder(tmp_path):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "000010011.WAV", np.zeros(8000, dtype="int16"), 8000, format="WAV")
    sf.write(tmp_path / "stray.wav", np.zeros(800, dtype="int16"), 8000)
    (tmp_path / "labels.jsonl").write_text("{}\n")
    assert [p.name for p in find_audio_files(tmp_path)] == ["000010011.WAV"]
    corpus = load_corpus(tmp_path)
    assert corpus.sample_rate_hertz == 8000 and len(corpus.utterances) == 1


def test_a_folder_without_audio_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(bench.SaywellClientError, match="no audio files"):
        load_corpus(tmp_path)


def test_plan_alternates_silence_and_speech_within_the_duration():
    corpus = _corpus()
    rate = corpus.sample_rate_hertz
    for seed in range(20):
        plan = plan_stream(corpus, random.Random(seed), duration_s=12.0, realtime_factor=1.0)
        assert plan[0].utterance is None and LEAD_IN_S[0] * rate <= plan[0].length <= LEAD_IN_S[1] * rate
        assert all((seg.utterance is None) == (i % 2 == 0) for i, seg in enumerate(plan))
        assert all(a.end == b.start for a, b in zip(plan, plan[1:]))  # contiguous stream offsets
        gaps = plan[2:-1:2]
        assert all(GAP_S[0] * rate <= g.length <= GAP_S[1] * rate + 1 for g in gaps)
        assert plan[-1].length >= MIN_TAIL_S * rate
        speech = [seg for seg in plan if seg.utterance is not None]
        assert len(speech) >= 1
        assert all(seg.end / rate <= 12.0 for seg in speech[1:])
    assert plan_stream(corpus, random.Random(5), 12.0, 1.0) == plan_stream(corpus, random.Random(5), 12.0, 1.0)


def test_a_faster_pace_fits_more_utterances_in_the_same_wall_time():
    corpus = _corpus(seconds=(2.0,))
    slow = plan_stream(corpus, random.Random(1), duration_s=10.0, realtime_factor=1.0)
    fast = plan_stream(corpus, random.Random(1), duration_s=10.0, realtime_factor=4.0)
    count = lambda plan: sum(seg.utterance is not None for seg in plan)  # noqa: E731
    assert count(fast) >= 3 * count(slow)


def test_chunks_cover_a_segment_with_their_stream_offsets():
    plan = plan_stream(_corpus(), random.Random(0), 5.0, 1.0)
    segment = plan[1]
    pieces = list(segment_chunks(segment, 1600))
    assert pieces[-1][0] == segment.end
    assert sum(len(p) for _, p in pieces) == segment.length
    assert all(len(p) == 1600 for _, p in pieces[:-1])
    assert np.array_equal(np.concatenate([p for _, p in pieces]), segment.utterance.pcm)
    assert not np.any(np.concatenate([p for _, p in segment_chunks(plan[0], 1600)]))  # silence is zeros


def test_pacer_releases_a_chunk_once_its_audio_has_been_spoken():
    real_time = Pacer(start=100.0, sample_rate_hertz=16000, realtime_factor=1.0)
    assert real_time.due(1600) == pytest.approx(100.1)
    assert real_time.due(16000 * 3) == pytest.approx(103.0)
    double = Pacer(start=100.0, sample_rate_hertz=8000, realtime_factor=2.0)
    assert double.due(800) == pytest.approx(100.05)
    assert double.due(8000 * 10) == pytest.approx(105.0)
    with pytest.raises(ValueError):
        Pacer(0.0, 16000, 0.0)


# -- lag arithmetic from synthetic timelines ----------------------------------------------------------------


def _timeline(t0: float = 50.0) -> SendTimeline:
    """Utterances at 1000-3000 ms and 4500-6000 ms; 100 ms chunks, each sent at t0 + its end (real time)."""
    timeline = SendTimeline()
    timeline.add_utterance(1000, 3000)
    timeline.add_utterance(4500, 6000)
    for end_ms in range(100, 7001, 100):
        timeline.record_chunk(end_ms, t0 + end_ms / 1000)
    return timeline


def _speech_ended(index: int, offset_ms: int, cause=pb.ENDPOINT_CAUSE_SILENCE) -> pb.StreamAssessResponse:
    return pb.StreamAssessResponse(speech_event=pb.SpeechEvent(
        type=pb.SPEECH_EVENT_TYPE_ENDED, utterance_index=index, offset_ms=offset_ms, cause=cause))


def test_sent_at_is_the_send_time_of_the_chunk_holding_the_offset():
    timeline = _timeline()
    assert timeline.sent_at(1000) == pytest.approx(51.0)
    assert timeline.sent_at(1001) == pytest.approx(51.1)
    assert timeline.sent_at(99_999) == pytest.approx(57.0)  # not sent yet: the latest send
    assert SendTimeline().sent_at(10) is None
    assert timeline.first_speech_at == pytest.approx(51.1)  # first chunk reaching past 1000 ms


def test_last_speech_is_the_utterance_end_unless_the_vad_cut_inside_it():
    timeline = _timeline()
    assert timeline.last_speech_ms(3050) == 3000  # VAD hangover after the audio end
    assert timeline.last_speech_ms(3000 - MID_UTTERANCE_CUT_MS + 10) == 3000  # trailing quiet in the file
    assert timeline.last_speech_ms(2000) == 2000  # cut inside the utterance: its own offset
    assert timeline.last_speech_ms(5990) == 6000
    assert timeline.last_speech_ms(500) == 500  # before any utterance


def test_tracker_measures_final_latency_endpointing_and_word_lag():
    timeline, stats = _timeline(t0=50.0), RunStats()
    tracker = ResponseTracker(timeline, stats)
    started = pb.StreamAssessResponse(speech_event=pb.SpeechEvent(type=pb.SPEECH_EVENT_TYPE_STARTED, offset_ms=1000))
    tracker.on_response(started, 51.35)
    word = pb.StreamAssessResponse(interim_result=pb.InterimResult(utterance_index=0, provisional_words=[
        pb.InterimWord(word_index=0, start_ms=1100, end_ms=1450)]))
    tracker.on_response(word, 52.0)  # audio to 1450 ms left in the chunk ending at 1500 ms, at 51.5
    tracker.on_response(word, 52.7)  # the same word again (revised): the first receipt counts
    tracker.on_response(_speech_ended(0, 3100), 53.8)  # audio end 3000 ms was sent at 53.0
    utterance = pb.StreamAssessResponse(utterance=pb.UtteranceAssessment(
        utterance_index=0, processing=pb.ProcessingInfo(latency_ms=950.0),
        words=[pb.WordAssessment(word="hello", start_ms=1120, end_ms=1450)]))
    tracker.on_response(utterance, 55.05)
    assert stats.first_response.percentile(50) == pytest.approx(250, rel=0.01)  # 51.35 - 51.1
    assert stats.word_flag_lag.count == 1 and stats.word_flag_lag.max == pytest.approx(500)
    assert stats.endpointing_delay.max == pytest.approx(800)
    assert stats.final_latency.max == pytest.approx(1250)
    assert stats.server_latency.max == pytest.approx(950)
    assert stats.utterances == 1 and stats.error_count == 0


def test_word_lag_counts_the_final_words_from_the_first_result_covering_each():
    stats = RunStats()
    tracker = ResponseTracker(_timeline(t0=50.0), stats)

    def result(start_ms: int, end_ms: int, at: float) -> None:
        tracker.on_response(pb.StreamAssessResponse(interim_result=pb.InterimResult(
            utterance_index=0, provisional_words=[pb.InterimWord(start_ms=start_ms, end_ms=end_ms)])), at)

    result(1000, 1400, 51.7)  # "wan": heard early, revised to "want" below; covers the final's first word
    result(1050, 1450, 52.3)
    result(1500, 1520, 52.4)  # a decode's squeezed hallucination: no final word is there
    final = pb.UtteranceAssessment(utterance_index=0, words=[
        pb.WordAssessment(word="want", start_ms=1050, end_ms=1500),  # sent at 51.5: lag 200 ms
        pb.WordAssessment(word="to", start_ms=1900, end_ms=2300),  # no result before the final: lag to it
        pb.WordAssessment(word="go", start_ms=0, end_ms=0),  # omitted reference word: not in the audio
    ])
    tracker.on_response(pb.StreamAssessResponse(utterance=final), 53.3)
    assert stats.word_flag_lag.count == 2
    assert stats.word_flag_lag.min == pytest.approx(200) and stats.word_flag_lag.max == pytest.approx(1000)


def test_interim_words_of_a_failed_utterance_give_no_lag():
    stats = RunStats()
    tracker = ResponseTracker(_timeline(), stats)
    tracker.on_response(pb.StreamAssessResponse(interim_result=pb.InterimResult(
        utterance_index=0, stable_words=[pb.InterimWord(start_ms=1100, end_ms=1400)])), 51.6)
    tracker.on_response(pb.StreamAssessResponse(utterance_error=pb.UtteranceError(utterance_index=0,
                                                                                  code="INTERNAL")), 53.0)
    assert stats.word_flag_lag.count == 0


def test_tracker_counts_errors_and_skips_endpointing_not_decided_by_silence():
    stats = RunStats()
    tracker = ResponseTracker(_timeline(), stats)
    tracker.on_response(_speech_ended(0, 3000, cause=pb.ENDPOINT_CAUSE_MAX_LENGTH), 53.5)
    tracker.on_response(pb.StreamAssessResponse(utterance_error=pb.UtteranceError(
        utterance_index=0, code="RESOURCE_EXHAUSTED")), 54.0)
    tracker.on_response(_speech_ended(1, 6000, cause=pb.ENDPOINT_CAUSE_END_OF_STREAM), 57.1)
    tracker.on_response(pb.StreamAssessResponse(utterance=pb.UtteranceAssessment(utterance_index=1)), 58.1)
    tracker.on_stream_error("UNAVAILABLE")
    assert stats.endpointing_delay.count == 0
    assert stats.final_latency.count == 1 and stats.final_latency.max == pytest.approx(1000)
    assert stats.errors == Counter({"RESOURCE_EXHAUSTED": 1, "UNAVAILABLE": 1})
    assert stats.utterances == 1


# -- report ------------------------------------------------------------------------------------------------


def _stats() -> RunStats:
    stats = RunStats(utterances=20, audio_seconds_sent=40.0)
    stats.final_latency.record_all(float(v) for v in range(100, 2100, 100))
    stats.word_flag_lag.record_all([300.0, 400.0])
    return stats


def test_report_has_exactly_the_documented_keys_first_and_is_json():
    result = StageResult(streams=4, duration_s=10.0, wall_s=20.0, stats=_stats(), usage=ResourceUsage(151.25, 812.44))
    report = build_report(result)
    assert tuple(report)[: len(REPORT_KEYS)] == REPORT_KEYS
    assert report["streams"] == 4 and report["duration_s"] == 10.0 and report["utterances"] == 20
    assert report["errors"] == {}
    assert set(report["final_latency_ms"]) == {"p50", "p90", "p95", "p99", "max"}
    assert report["final_latency_ms"]["max"] == 2000.0
    assert report["final_latency_ms"]["p50"] == pytest.approx(1000, rel=0.01)
    assert report["final_latency_ms"]["p95"] == pytest.approx(1900, rel=0.01)
    assert set(report["word_flag_lag_ms"]) == {"p50", "p95"}
    assert report["audio_seconds_per_second"] == 2.0
    assert report["server_cpu_percent"] == 151.2 and report["server_rss_mb"] == 812.4
    assert report["max_realtime_streams"] is None and "ramp" not in report
    assert json.loads(json.dumps(report)) == report


def test_report_without_samples_or_server_uses_nulls():
    stats = RunStats()
    stats.errors["UNAVAILABLE"] += 3
    report = build_report(StageResult(2, 5.0, 6.0, stats), max_realtime_streams=0, ramp=[])
    assert report["errors"] == {"UNAVAILABLE": 3}
    assert report["final_latency_ms"] == dict.fromkeys(("p50", "p90", "p95", "p99", "max"))
    assert report["server_cpu_percent"] is None and report["server_rss_mb"] is None
    assert report["max_realtime_streams"] == 0 and report["ramp"] == []


def test_compute_bound_is_cores_over_cpu_seconds_per_audio_second():
    # 2 audio s/s (40 s sent in 20 s) at 50% of a core: 0.25 CPU-s per audio second, 2 cores carry 8 streams
    result = StageResult(streams=1, duration_s=10.0, wall_s=20.0, stats=_stats(), usage=ResourceUsage(50.0, 700.0))
    assert build_report(result)["cpu_seconds_per_audio_second"] == 0.25
    assert compute_bound(result, cores=2) == 8.0
    assert compute_bound(StageResult(1, 10.0, 20.0, _stats()), cores=2) is None  # no CPU sample: no bound


def test_a_stage_holds_only_without_errors_and_within_the_p95_limit():
    good = StageResult(1, 5.0, 5.0, _stats())
    assert stage_held(good, 2000) and not stage_held(good, 1500)
    failing = _stats()
    failing.errors["INTERNAL"] += 1
    assert not stage_held(StageResult(1, 5.0, 5.0, failing), 2000)
    assert not stage_held(StageResult(1, 5.0, 5.0, RunStats()), 2000)  # nothing assessed


def test_late_word_flags_do_not_hold_a_stage():
    good = StageResult(1, 5.0, 5.0, _stats())  # final p95 2000 ms, word-flag lag p95 400 ms
    assert stage_held(good, 2000, max_lag_p95_ms=400) and not stage_held(good, 2000, max_lag_p95_ms=350)
    assert why_not_held(good, 2000, 350) == "word-flag lag p95 400 ms > 350 ms"
    assert why_not_held(good, 1500, 350).startswith("final p95 ") and why_not_held(good, 1500, 350).endswith(" > 1500 ms")
    assert stage_held(good, 2000, max_lag_p95_ms=0), "0: the lag does not count"
    no_words = _stats()
    no_words.word_flag_lag = type(no_words.word_flag_lag)()
    assert stage_held(StageResult(1, 5.0, 5.0, no_words), 2000, 350), "no word to be late"


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra")
    result = StageResult(2, 5.0, 5.0, _stats())
    ramp = [build_report(result), {**build_report(result), "streams": 3}]
    write_plot(tmp_path / "bench.png", result.stats, ramp, 1500.0, 1000.0)
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- command line ------------------------------------------------------------------------------------------


def test_ramp_stages_grow_by_one_then_geometrically():
    assert list(bench.ramp_stages(40)) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    assert list(bench.ramp_stages(1)) == [1]


def test_server_args_may_look_like_flags():
    args = bench.build_parser().parse_args(bench._join_server_args(
        ["--spawn", "--data", "d", "--server-arg", "--max-concurrent-streams=16", "--server-arg=--grace-s=1"]))
    assert args.server_arg == ["--max-concurrent-streams=16", "--grace-s=1"]


def test_batching_comparison_needs_a_spawned_server_and_no_ramp(capsys):
    for argv in (["--target", "h:1", "--data", "d", "--compare-batching"],
                 ["--spawn", "--data", "d", "--compare-batching", "--ramp"]):
        with pytest.raises(SystemExit):
            bench.main(argv)
        assert "--compare-batching goes with --spawn" in capsys.readouterr().err


def test_progress_line_without_a_terminal_prints_whole_lines():
    out = io.StringIO()
    stats = _stats()
    stats.errors["INTERNAL"] += 2
    line = ProgressLine(stats, lambda: 3, label="4 streams", out=out)
    assert line.interval_s == 5.0
    line.finish(12.34)
    text = out.getvalue()
    assert text.endswith("\n") and "\r" not in text
    assert "[4 streams]" in text and "12.3 s" in text and "utterances    20" in text and "errors 2" in text


def _run_main(args: list[str]) -> tuple[int, dict]:
    code = bench.main(args)
    return code, json.loads(open(args[args.index("--report") + 1]).read()) if code == 0 else {}


def test_a_short_run_against_the_fake_server(fake_server, fixtures_dir, tmp_path):
    code, report = _run_main(["--target", fake_server.target, "--streams", "2", "--duration", "0.5",
                              "--realtime-factor", "20", "--chunk-ms", "200", "--data", str(fixtures_dir),
                              "--report", str(tmp_path / "r.json")])
    assert code == 0
    assert tuple(report)[: len(REPORT_KEYS)] == REPORT_KEYS
    assert report["errors"] == {} and report["utterances"] == 2  # the fake answers one utterance per stream
    assert report["final_latency_ms"]["max"] >= 0 and report["word_flag_lag_ms"]["p50"] is not None
    assert report["server_cpu_percent"] is None and report["max_realtime_streams"] is None
    configs = [r.config for r in fake_server.servicer.stream_requests if r.HasField("config")]
    assert len(configs) == 2 and all(c.interim_results and c.audio.encoding == pb.AUDIO_ENCODING_LINEAR16 for c in configs)
    assert {c.audio.sample_rate_hertz for c in configs} == {16000}


def test_a_ramp_against_a_failing_server_stops_at_the_first_stage(fake_server, fixtures_dir, tmp_path):
    fake_server.servicer.abort = (grpc.StatusCode.RESOURCE_EXHAUSTED, "full")
    code, report = _run_main(["--target", fake_server.target, "--ramp", "--duration", "0.3",
                              "--realtime-factor", "20", "--data", str(fixtures_dir),
                              "--report", str(tmp_path / "r.json")])
    assert code == 0
    assert report["max_realtime_streams"] == 0
    assert [stage["streams"] for stage in report["ramp"]] == [1]
    assert report["ramp"][0]["held"] is False and report["errors"] == {"RESOURCE_EXHAUSTED": 1}
    assert report["ramp"][0]["not_held_because"] == "1 error(s)"


def test_an_unreachable_target_is_a_clear_error(dead_target, fixtures_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "CONNECT_TIMEOUT_S", 0.5)
    code = bench.main(["--target", dead_target, "--data", str(fixtures_dir), "--report", str(tmp_path / "r.json")])
    assert code == bench.EXIT_ERROR
    assert "no saywell server" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_resource_sampler_counts_the_servers_child_processes():
    # A busy child (like the server's pocketsphinx workers) shows up in the CPU of the process sampled.
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        sampler = ResourceSampler(os.getpid(), interval_s=0.2).start()
        time.sleep(1.5)
        usage = sampler.stop()
    finally:
        child.kill()
        child.wait()
    assert usage.cpu_percent is not None and usage.cpu_percent > 50  # the child burns about one core
    assert usage.rss_mb is not None and usage.rss_mb > 10
