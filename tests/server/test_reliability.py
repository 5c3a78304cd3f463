"""Bad input, faults and disconnects against a real grpc.aio server holding a fake engine."""
import pathlib
import random
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saywell.server.config import ServerConfig
from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from fake_engine import FakeEngine  # noqa: E402
from live_server import RunningServer  # noqa: E402

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
DEFINED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
           grpc.StatusCode.RESOURCE_EXHAUSTED}
PCM = sf.read(FIXTURES / "two_utterances.wav", dtype="int16")[0].tobytes()


def start(engine, **overrides) -> RunningServer:
    config = dict(port=0, metrics_port=0, warm_up=False, max_concurrent_streams=16, max_stream_ms=60_000)
    config.update(overrides)
    return RunningServer(ServerConfig(**config), engine=engine)


@pytest.fixture(scope="module")
def fake_server():
    server = start(FakeEngine())
    yield server
    server.stop()


def config(**audio) -> pb.StreamAssessRequest:
    audio = {"encoding": pb.AUDIO_ENCODING_LINEAR16, "sample_rate_hertz": 16000, **audio}
    return pb.StreamAssessRequest(config=pb.StreamingAssessConfig(audio=pb.AudioConfig(**audio), interim_results=True))


def run_stream(target, requests, timeout=20):
    with grpc.insecure_channel(target) as channel:
        call = pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(iter(requests), timeout=timeout)
        kinds = []
        try:
            for response in call:
                kinds.append(response.WhichOneof("event"))
        except grpc.RpcError:
            pass
        return call.code(), call.details(), kinds


requests_strategy = st.lists(st.one_of(
    st.builds(lambda n: config(sample_rate_hertz=n), st.sampled_from([0, -1, 8000, 16000, 44100, 10**9])),
    st.builds(lambda e: config(encoding=e), st.integers(min_value=-2, max_value=9)),
    st.builds(lambda b: pb.StreamAssessRequest(audio=b), st.binary(max_size=3000)),
    st.builds(lambda s: pb.StreamAssessRequest(audio=PCM[s:s + 6400]), st.integers(0, len(PCM))),
    st.just(pb.StreamAssessRequest(end_of_utterance=pb.EndOfUtterance())),
    st.just(pb.StreamAssessRequest()),
), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=requests_strategy)
def test_any_request_sequence_ends_with_a_defined_status(fake_server, requests):
    started = time.monotonic()
    code, details, kinds = run_stream(fake_server.target, requests)
    assert code in DEFINED, (code, details)
    assert time.monotonic() - started < 20
    if code == grpc.StatusCode.OK:
        assert kinds and kinds[-1] == "summary"
    else:
        assert details, "an error must say what was wrong"


def test_server_survives_the_fuzzing_and_keeps_serving(fake_server):
    code, _, kinds = run_stream(fake_server.target, [config(), pb.StreamAssessRequest(audio=PCM)])
    assert code == grpc.StatusCode.OK and kinds.count("utterance") == 2


def test_an_engine_failure_fails_only_that_utterance():
    # Without speculative finals every assessment the fake counts is a final one.
    server = start(FakeEngine(fail_every=1), speculative_finals=False)
    try:
        _, _, kinds = run_stream(server.target, [config(), pb.StreamAssessRequest(audio=PCM)])
        assert kinds.count("utterance_error") == 2 and kinds[-1] == "summary"
    finally:
        server.stop()
    flaky = start(FakeEngine(fail_every=2), speculative_finals=False)
    try:
        _, _, kinds = run_stream(flaky.target, [config(), pb.StreamAssessRequest(audio=PCM)])
        assert kinds.count("utterance") == 1 and kinds.count("utterance_error") == 1
    finally:
        flaky.stop()


@pytest.mark.parametrize("audio, expected", [
    (b"", grpc.StatusCode.OK),  # silence-free empty audio: nothing to assess, still a summary
    (np.zeros(16000 * 2, "<i2").tobytes(), grpc.StatusCode.OK),  # only silence
    ((np.random.default_rng(0).normal(0, 8000, 16000 * 2)).astype("<i2").tobytes(), grpc.StatusCode.OK),  # noise
    (np.full(16000 * 2, 32767, "<i2").tobytes(), grpc.StatusCode.OK),  # clipping
    (PCM + b"\x00", grpc.StatusCode.INVALID_ARGUMENT),  # truncated sample
])
def test_edge_audio_is_handled(fake_server, audio, expected):
    code, details, kinds = run_stream(fake_server.target, [config(), pb.StreamAssessRequest(audio=audio)])
    assert code == expected, details
    if expected == grpc.StatusCode.OK:
        assert kinds[-1] == "summary"


def test_stream_over_the_max_duration_is_out_of_range_after_delivering_what_was_accepted():
    server = start(FakeEngine(), max_stream_ms=4000, max_utterance_ms=2000)
    try:
        code, details, kinds = run_stream(server.target, [config()] + [pb.StreamAssessRequest(audio=PCM)] * 2)
        assert code == grpc.StatusCode.OUT_OF_RANGE and "max_stream_ms" in details
        assert "utterance" in kinds
    finally:
        server.stop()


def test_message_over_the_size_limit_is_refused():
    server = start(FakeEngine(), max_message_bytes=64 * 1024)
    try:
        code, _, _ = run_stream(server.target, [config(), pb.StreamAssessRequest(audio=b"\x00" * 100_000)])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop()


def test_a_disconnect_mid_utterance_frees_the_stream_and_cancels_its_work():
    engine = FakeEngine(delay_s=5.0)
    server = start(engine)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            gate = threading.Event()

            def requests():
                yield config()
                yield pb.StreamAssessRequest(audio=PCM[:16000 * 2 * 2])  # speech in progress
                gate.wait(10)

            call = stub.StreamAssess(requests())
            next(iter(call))  # speech started
            time.sleep(1.0)  # an interim decode is now in flight in the engine
            call.cancel()
            gate.set()
        servicer_streams = lambda: server.server.metrics.active_streams._value.get()  # noqa: E731
        deadline = time.monotonic() + 5  # well inside the engine's 5 s: cancelled, not finished
        # The slot is freed in the same step as the cancel is requested; the engine work sees its cancellation
        # on a later turn of the server's event loop.
        while (servicer_streams() or not engine.cancelled) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert servicer_streams() == 0
        assert engine.cancelled >= 1, "the engine work of a vanished client must be cancelled"
    finally:
        server.stop()


def test_nothing_accepted_is_lost_under_concurrency_with_random_disconnects():
    engine = FakeEngine(delay_s=0.05)
    server = start(engine)
    rng = random.Random(7)
    outcomes = []

    def client(index: int) -> None:
        cancel_after = rng.choice([None, None, 2, 4])
        with grpc.insecure_channel(server.target) as channel:
            call = pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(
                iter([config()] + [pb.StreamAssessRequest(audio=PCM[i:i + 3200]) for i in range(0, len(PCM), 3200)]),
                timeout=30)
            ended, finals, errors, summary = 0, 0, 0, None
            try:
                for n, response in enumerate(call):
                    kind = response.WhichOneof("event")
                    if kind == "speech_event" and response.speech_event.type == pb.SPEECH_EVENT_TYPE_ENDED:
                        ended += 1
                    finals += kind == "utterance"
                    errors += kind == "utterance_error"
                    summary = response.summary if kind == "summary" else summary
                    if cancel_after is not None and n >= cancel_after:
                        call.cancel()
                        break
            except grpc.RpcError:
                pass
            outcomes.append((cancel_after, ended, finals, errors, summary))

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.stop()
    completed = [o for o in outcomes if o[0] is None]
    assert completed, "some streams must run to the end"
    for _, ended, finals, errors, summary in completed:
        assert ended == finals + errors == 2, "every accepted utterance ends in an assessment or an error"
        assert summary.utterances + summary.utterance_errors == ended


def test_a_restarted_server_serves_again_at_once():
    first = start(FakeEngine())
    port = first.port
    first.stop()
    second = start(FakeEngine(), port=port)
    try:
        code, _, kinds = run_stream(second.target, [config(), pb.StreamAssessRequest(audio=PCM)])
        assert code == grpc.StatusCode.OK and kinds[-1] == "summary"
    finally:
        second.stop()


def test_the_client_deadline_is_respected():
    server = start(FakeEngine(delay_s=10.0))
    try:
        started = time.monotonic()
        code, _, _ = run_stream(server.target, [config(), pb.StreamAssessRequest(audio=PCM)], timeout=1.5)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5
    finally:
        server.stop()


def test_a_saturated_engine_refuses_new_streams_with_a_retry_hint():
    engine = FakeEngine()
    server = start(engine, max_engine_backlog=3)
    try:
        engine.waiting = 4
        with grpc.insecure_channel(server.target) as channel:
            call = pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(iter([config()]), timeout=10)
            with pytest.raises(grpc.RpcError) as error:
                list(call)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "saturated" in error.value.details()
            assert ("retry-after-ms", "1000") in tuple(call.trailing_metadata())
        engine.waiting = 0
        code, _, _ = run_stream(server.target, [config(), pb.StreamAssessRequest(audio=PCM)])
        assert code == grpc.StatusCode.OK
    finally:
        server.stop()


def overload_run(max_engine_backlog: int) -> tuple[list[float], dict]:
    """20 streams at once against an engine that assesses 2 utterances at a time, 0.2 s each."""
    engine = FakeEngine(delay_s=0.2, capacity=2)
    server = start(engine, max_engine_backlog=max_engine_backlog, max_concurrent_streams=64)
    latencies, codes, lock = [], {}, threading.Lock()

    def client() -> None:
        requests = [config(), pb.StreamAssessRequest(audio=PCM)]
        with grpc.insecure_channel(server.target) as channel:
            call = pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(iter(requests), timeout=60)
            try:
                for response in call:
                    if response.WhichOneof("event") == "utterance":
                        with lock:
                            latencies.append(response.utterance.processing.latency_ms)
            except grpc.RpcError:
                pass
            with lock:
                codes[call.code().name] = codes.get(call.code().name, 0) + 1

    try:
        threads = []
        for _ in range(20):
            threads.append(threading.Thread(target=client))
            threads[-1].start()
            time.sleep(0.05)
        for t in threads:
            t.join(90)
    finally:
        server.stop()
    return latencies, codes


def test_under_overload_admitted_streams_keep_their_latency_and_the_rest_are_refused():
    guarded, guarded_codes = overload_run(max_engine_backlog=2)
    unguarded, unguarded_codes = overload_run(max_engine_backlog=10_000)
    assert guarded_codes.get("RESOURCE_EXHAUSTED", 0) > 0 and guarded_codes.get("OK", 0) > 0
    assert unguarded_codes == {"OK": 20}
    p95 = lambda values: float(np.percentile(values, 95))  # noqa: E731
    print(f"\noverload: with admission p95 {p95(guarded):.0f} ms, {guarded_codes}; "
          f"without p95 {p95(unguarded):.0f} ms, {unguarded_codes}")
    # Admission keeps the queue short: a final waits for at most a few others (0.2 s each on 2 slots).
    assert p95(guarded) < 1500, guarded
    assert p95(unguarded) > 2 * p95(guarded), (p95(unguarded), p95(guarded))


@pytest.mark.parametrize("enabled", [False, True])
def test_transcripts_reach_the_logs_only_when_enabled(caplog, enabled):
    server = start(FakeEngine(), log_transcripts=enabled)
    try:
        with caplog.at_level("INFO", logger="saywell.server.session"):
            code, _, _ = run_stream(server.target, [config(), pb.StreamAssessRequest(audio=PCM)])
    finally:
        server.stop()
    assert code == grpc.StatusCode.OK
    logged = [r for r in caplog.records if getattr(r, "transcript", None) == "fake words"]
    assert bool(logged) == enabled
