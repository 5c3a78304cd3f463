"""What a hostile or broken client (one built from the .proto alone) can do to a server holding a fake engine:
unparsable requests, silence, unary calls past the limits, floods of utterances and of tiny messages."""
import logging
import pathlib
import sys
import threading
import time
import tracemalloc

import grpc
import pytest
import soundfile as sf

from saywell.server import servicer
from saywell.server.config import ServerConfig
from saywell.server.session import MessageRate
from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from fake_engine import FakeEngine  # noqa: E402
from live_server import RunningServer  # noqa: E402

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
PCM = sf.read(FIXTURES / "two_utterances.wav", dtype="int16")[0].tobytes()
SILENCE = bytes(32000)  # 1 s
METHOD = "/saywell.v1.PronunciationAssessmentService/StreamAssess"


def start(engine, **overrides) -> RunningServer:
    config = dict(port=0, metrics_port=0, warm_up=False, max_concurrent_streams=16, max_stream_ms=600_000,
                  grace_s=1.0)
    config.update(overrides)
    return RunningServer(ServerConfig(**config), engine=engine)


def config(client_request_id="", reference_text="", interim_results=False, flag_sensitivity=0.0
           ) -> pb.StreamAssessRequest:
    return pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
        audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000), client_request_id=client_request_id,
        assessment=pb.AssessmentConfig(reference_text=reference_text, flag_sensitivity=flag_sensitivity),
        interim_results=interim_results))


def audio(data: bytes, chunk: int = 3200) -> list[pb.StreamAssessRequest]:
    return [pb.StreamAssessRequest(audio=data[i:i + chunk]) for i in range(0, len(data), chunk)]


def outcome(call) -> tuple[grpc.StatusCode, str, list]:
    """Reads a call to its end: (status, details, responses)."""
    responses = []
    try:
        for response in call:
            responses.append(response)
    except grpc.RpcError:
        pass
    return call.code(), call.details(), responses


def kinds(responses) -> list[str]:
    return [r.WhichOneof("event") for r in responses]


def held(messages, gate: threading.Event):
    """Sends `messages`, then keeps the stream open (sending nothing) until `gate` is set."""
    yield from messages
    gate.wait(30)


def raw_stream(channel, payloads, gate: threading.Event, timeout: float = 20):
    """A stream of hand-made bytes, as a client that ignores the .proto's types would send them."""
    call = channel.stream_stream(METHOD, request_serializer=lambda b: b,
                                 response_deserializer=pb.StreamAssessResponse.FromString)
    return call(held(payloads, gate), timeout=timeout)


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- 1. requests protobuf refuses ----------------------------------------------------------------------------

def _with_bytes(message: pb.StreamAssessRequest, marker: bytes, replacement: bytes) -> bytes:
    raw = message.SerializeToString()
    assert raw.count(marker) == 1
    return raw.replace(marker, replacement)


UNPARSABLE = {
    "invalid UTF-8 in client_request_id": _with_bytes(config(client_request_id="AAAA"), b"AAAA", b"\xff\xfe\xfd\xfc"),
    "invalid UTF-8 in reference_text": _with_bytes(config(reference_text="BBBB"), b"BBBB", b"B\xc3(B"),
    "truncated message": config(client_request_id="truncated").SerializeToString()[:-3],
    "nesting past the parser's limit": b"\x7b" * 200 + b"\x7c" * 200,  # unknown field 15, groups in groups
}


@pytest.fixture(scope="module")
def two_slot_server():
    server = start(FakeEngine(), max_concurrent_streams=2)
    yield server
    server.stop()


@pytest.mark.parametrize("payload", UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_unparsable_requests_end_with_invalid_argument_and_free_their_slots(two_slot_server, payload):
    gate = threading.Event()
    try:
        with grpc.insecure_channel(two_slot_server.target) as channel:
            started = time.monotonic()
            bad = [raw_stream(channel, [payload], gate) for _ in range(2)]  # both slots, streams kept open
            for call in bad:
                code, details, _ = outcome(call)
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
                assert details.startswith("request could not be parsed")
            assert time.monotonic() - started < 5
            good = pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(iter([config()] + audio(PCM)),
                                                                             timeout=20)
            code, details, responses = outcome(good)
            assert code == grpc.StatusCode.OK, details
            assert kinds(responses).count("utterance") == 2
    finally:
        gate.set()


def test_an_unparsable_message_after_the_config_still_delivers_the_accepted_utterances(two_slot_server):
    gate = threading.Event()
    payloads = [m.SerializeToString() for m in [config()] + audio(PCM + SILENCE)] + [UNPARSABLE["truncated message"]]
    try:
        with grpc.insecure_channel(two_slot_server.target) as channel:
            code, details, responses = outcome(raw_stream(channel, payloads, gate))
    finally:
        gate.set()
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert kinds(responses).count("utterance") == 2


@pytest.mark.parametrize("method, payload", [
    ("Assess", _with_bytes(pb.AssessRequest(client_request_id="CCCC"), b"CCCC", b"\xc0\xaf")),
    ("Assess", pb.AssessRequest(audio_content=b"\x00" * 100).SerializeToString()[:50]),
    ("GetCapabilities", UNPARSABLE["nesting past the parser's limit"]),
], ids=["Assess, invalid UTF-8", "Assess, truncated", "GetCapabilities, nested too deep"])
def test_unparsable_unary_requests_get_invalid_argument_not_unknown(caplog, two_slot_server, method, payload):
    with caplog.at_level(logging.INFO, logger="grpc"), grpc.insecure_channel(two_slot_server.target) as channel:
        call = channel.unary_unary(f"/saywell.v1.PronunciationAssessmentService/{method}",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        error = refusal(lambda: call(payload, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("request could not be parsed")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- 2. silent clients ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def impatient_server():
    server = start(FakeEngine(), max_concurrent_streams=1, config_timeout_s=0.5, idle_timeout_s=0.5)
    yield server
    server.stop()


def held_stream(target, messages, timeout=20):
    gate = threading.Event()
    try:
        with grpc.insecure_channel(target) as channel:
            started = time.monotonic()
            call = pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(held(messages, gate), timeout=timeout)
            code, details, responses = outcome(call)
            return code, details, responses, time.monotonic() - started
    finally:
        gate.set()


def test_a_stream_without_config_ends_with_deadline_exceeded_and_frees_its_slot(impatient_server):
    code, details, _, seconds = held_stream(impatient_server.target, [])
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == "no config within 0.5 s of the stream opening"
    assert seconds < 5
    code, details, _, _ = held_stream(impatient_server.target, [config()] + audio(PCM) + [
        pb.StreamAssessRequest(end_of_utterance=pb.EndOfUtterance())])
    assert details == "no audio for 0.5 s"  # the only slot was free again


def test_a_stream_that_goes_quiet_gets_its_finals_then_deadline_exceeded(impatient_server):
    code, details, responses, seconds = held_stream(impatient_server.target, [config()] + audio(PCM))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and details == "no audio for 0.5 s"
    assert "utterance" in kinds(responses), "the utterance ended before the silence is still assessed"
    assert seconds < 5
    code, details, responses, _ = held_stream(impatient_server.target, [config()])
    assert (code, details, responses) == (grpc.StatusCode.DEADLINE_EXCEEDED, "no audio for 0.5 s", [])


def test_an_idle_timeout_of_zero_never_ends_a_stream():
    server = start(FakeEngine(), idle_timeout_s=0, config_timeout_s=0.5)
    slow = threading.Event()

    def paused():
        yield config()
        slow.wait(1.0)  # twice the config timeout, which no longer applies once the config came
        yield from audio(PCM)

    try:
        with grpc.insecure_channel(server.target) as channel:
            code, details, responses = outcome(pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(
                paused(), timeout=20))
        assert code == grpc.StatusCode.OK, details
        assert kinds(responses).count("utterance") == 2
    finally:
        server.stop()


# -- 3. unary Assess under admission control -----------------------------------------------------------------

class GatedEngine(FakeEngine):
    """Says when an assessment has started."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entered = threading.Event()

    async def assess(self, request):
        self.entered.set()
        return await super().assess(request)


def assess_request() -> pb.AssessRequest:
    return pb.AssessRequest(audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000),
                            audio_content=PCM[:32000 * 2])


def assess_in_background(stub) -> tuple[threading.Thread, list]:
    results = []
    thread = threading.Thread(target=lambda: results.append(stub.Assess(assess_request(), timeout=20)))
    thread.start()
    return thread, results


def test_an_assess_in_progress_holds_a_slot_like_a_stream():
    engine = GatedEngine(delay_s=2.0)
    server = start(engine, max_concurrent_streams=1)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            thread, results = assess_in_background(stub)
            assert engine.entered.wait(10)
            second = refusal(lambda: stub.Assess(assess_request(), timeout=10))
            assert second.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 1 concurrent streams" in second.details()
            assert ("retry-after-ms", "1000") in tuple(second.trailing_metadata())
            stream = refusal(lambda: list(stub.StreamAssess(iter([config()]), timeout=10)))
            assert stream.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            thread.join(20)
            assert results and results[0].assessment.scores.total > 0
            assert stub.Assess(assess_request(), timeout=20).assessment.words  # the slot is free again
    finally:
        server.stop()


def test_assess_is_refused_while_the_engine_is_saturated():
    engine = FakeEngine()
    server = start(engine, max_engine_backlog=3)
    try:
        engine.waiting = 4
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            error = refusal(lambda: stub.Assess(assess_request(), timeout=10))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "saturated" in error.details()
            assert ("retry-after-ms", "1000") in tuple(error.trailing_metadata())
            engine.waiting = 0
            assert stub.Assess(assess_request(), timeout=10).assessment.words
    finally:
        server.stop()


def test_assess_counts_against_the_per_client_cap():
    engine = GatedEngine(delay_s=2.0)
    server = start(engine, max_streams_per_client=1)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            thread, results = assess_in_background(stub)
            assert engine.entered.wait(10)
            assert server.server.access.active_streams() == {"127.0.0.1": 1}
            for call in (lambda: stub.Assess(assess_request(), timeout=10),
                         lambda: list(stub.StreamAssess(iter([config()]), timeout=10))):
                error = refusal(call)
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert error.details() == "client 127.0.0.1 is at its limit of 1 concurrent streams; retry after 1000 ms"
            thread.join(20)
            assert results
        wait_for(lambda: not server.server.access.active_streams())
    finally:
        server.stop()


def test_assess_decodes_its_audio_off_the_event_loop(monkeypatch):
    real = servicer.decode_all
    decoding = threading.Event()

    def slow_decode(*args, **kwargs):
        decoding.set()
        time.sleep(1.5)  # a long container; the loop must go on serving meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(servicer, "decode_all", slow_decode)
    server = start(FakeEngine())
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            thread, results = assess_in_background(stub)
            assert decoding.wait(10)
            started = time.monotonic()
            stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10)
            assert time.monotonic() - started < 0.75
            thread.join(20)
            assert results
    finally:
        server.stop()


# -- 4. a stream sending faster than real time ----------------------------------------------------------------

class CountingEngine(FakeEngine):
    """Counts the final assessments in flight (queued or running), by the stream's flag_sensitivity."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.in_flight: dict[float, int] = {}
        self.most_in_flight: dict[float, int] = {}

    async def assess(self, request):
        key = round(request.flag_sensitivity, 2)
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.most_in_flight[key] = max(self.most_in_flight.get(key, 0), self.in_flight[key])
        try:
            return await super().assess(request)
        finally:
            self.in_flight[key] -= 1


def test_a_flooding_stream_keeps_at_most_its_bound_of_finals_in_flight_and_loses_none():
    engine = CountingEngine(delay_s=0.2, capacity=1)
    server = start(engine, speculative_finals=False, max_pending_finals_per_stream=2)
    flood = config(flag_sensitivity=0.3)  # tells the flood's assessments from the other stream's
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            flooder = stub.StreamAssess(iter([flood] + audio((PCM + SILENCE) * 12)), timeout=60)
            wait_for(lambda: engine.in_flight.get(0.3, 0) >= 2)
            time.sleep(1.0)  # unbounded, the flood's 70 s of audio would all be read and queued by now
            code, details, responses = outcome(stub.StreamAssess(iter([config()] + audio(PCM)), timeout=60))
            assert code == grpc.StatusCode.OK, details
            latencies = [r.utterance.processing.latency_ms for r in responses if r.HasField("utterance")]
            code, details, flooded = outcome(flooder)
        assert code == grpc.StatusCode.OK, details
        assert kinds(flooded).count("utterance") == 24 and flooded[-1].summary.utterances == 24
        assert engine.most_in_flight[0.3] == 2, engine.most_in_flight
        # The other stream waits behind at most 2 of the flood's finals (0.2 s each), not behind all 24.
        assert len(latencies) == 2 and max(latencies) < 1500, latencies
    finally:
        server.stop()


# -- 5. logs: the client's errors below ERROR, bugs at ERROR -------------------------------------------------

def saywell_records(caplog, level=logging.ERROR):
    return [r for r in caplog.records if r.name.startswith("saywell") and r.levelno >= level]


def test_client_errors_are_logged_below_error_with_the_request_id(caplog, two_slot_server):
    gate = threading.Event()
    with caplog.at_level(logging.INFO, logger="saywell"):
        try:
            with grpc.insecure_channel(two_slot_server.target) as channel:
                unparsable = [config(client_request_id="req-parse").SerializeToString(),
                              UNPARSABLE["truncated message"]]
                parse = outcome(raw_stream(channel, unparsable, gate))
                twice = outcome(pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(
                    iter([config(client_request_id="req-twice"), config()]), timeout=20))
        finally:
            gate.set()
        wait_for(lambda: len([r for r in caplog.records if r.getMessage() == "stream closed"]) >= 2)
    assert parse[0] == twice[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert not saywell_records(caplog), [r.getMessage() for r in saywell_records(caplog)]
    refused = {r.client_request_id: r for r in caplog.records if r.getMessage() == "stream input refused"}
    assert set(refused) == {"req-parse", "req-twice"}
    assert all(r.levelno in (logging.INFO, logging.WARNING) and not r.exc_info for r in refused.values())
    assert refused["req-twice"].reason.startswith("config may be sent only once")


def test_engine_failures_of_early_work_are_not_logged_as_bugs(caplog):
    server = start(FakeEngine(fail_every=1))  # speculations and finals all fail: each utterance gets an error
    try:
        with caplog.at_level(logging.INFO, logger="saywell"), grpc.insecure_channel(server.target) as channel:
            code, _, responses = outcome(pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(
                iter([config()] + audio(PCM)), timeout=20))
    finally:
        server.stop()
    assert code == grpc.StatusCode.OK and kinds(responses).count("utterance_error") == 2
    assert not saywell_records(caplog), [r.getMessage() for r in saywell_records(caplog)]


class BrokenDecoder:
    def feed(self, data):
        raise RuntimeError("a bug in the decoder")


def test_a_bug_in_the_reader_ends_the_stream_with_internal_and_is_logged_at_error(caplog, monkeypatch):
    from saywell.server import session

    monkeypatch.setattr(session, "make_decoder", lambda *args, **kwargs: BrokenDecoder())
    server = start(FakeEngine(), max_concurrent_streams=1)
    try:
        with caplog.at_level(logging.INFO, logger="saywell"):
            for _ in range(2):  # the second stream finds the only slot free
                with grpc.insecure_channel(server.target) as channel:
                    code, details, _ = outcome(pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(
                        iter([config(client_request_id="req-bug")] + audio(PCM)), timeout=10))
                assert (code, details) == (grpc.StatusCode.INTERNAL, "internal error: RuntimeError")
    finally:
        server.stop()
    errors = saywell_records(caplog)
    assert errors and errors[0].exc_info and errors[0].client_request_id == "req-bug"


# -- 6. tiny messages ---------------------------------------------------------------------------------------

def test_the_message_rate_is_an_average_with_a_burst():
    now = [100.0]
    rate = MessageRate(10, window_s=2, clock=lambda: now[0])
    assert all(rate.take() for _ in range(20)) and not rate.take()  # the burst: 2 s worth at once
    now[0] += 0.5
    assert all(rate.take() for _ in range(5)) and not rate.take()  # then 10 a second
    now[0] += 60
    assert sum(rate.take() for _ in range(100)) == 20  # idle time refills up to the burst, no more


@pytest.mark.parametrize("message", [b"", b"\x00"], ids=["empty", "one byte"])
def test_a_stream_of_tiny_messages_is_ended_at_the_message_rate(message):
    server = start(FakeEngine(), max_messages_per_second=20)  # a burst of 200 messages passes
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            requests = [config()] + [pb.StreamAssessRequest(audio=message)] * 1000
            code, details, _ = outcome(stub.StreamAssess(iter(requests), timeout=20))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert details.startswith("stream exceeded the server's max_messages_per_second of 20 (averaged over")
            code, details, _ = outcome(stub.StreamAssess(iter([config()] + [pb.StreamAssessRequest(audio=b"")] * 100 +
                                                             audio(PCM)), timeout=20))
            assert code == grpc.StatusCode.OK, details  # a few empty messages are harmless
    finally:
        server.stop()



def opus_bomb(seconds: int = 600) -> bytes:
    """Ten minutes of silence in a few kB of Ogg/Opus: it expands ~30,000 times when decoded."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(seconds * 8000, np.float32), 8000, format="OGG", subtype="OPUS")
    return buffer.getvalue()


def poll_capabilities(stub, latencies: list, done: threading.Event) -> None:
    """GetCapabilities every 50 ms until `done`: how long the event loop made each wait."""
    while not done.is_set():
        started = time.perf_counter()
        stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)


def test_a_compressed_bomb_ends_the_stream_at_its_length_limit_without_stalling_other_calls():
    """Decoded in bounded pieces, off the event loop, stopping at max_stream_ms: it was decoded whole on the
    event loop (+600 MB, every stream stalled for seconds)."""
    server = start(FakeEngine(), max_stream_ms=60_000, max_utterance_ms=20_000)
    bomb = opus_bomb()
    tracemalloc.start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            opening = pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
                audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_OGG_OPUS)))
            call = stub.StreamAssess(iter([opening, pb.StreamAssessRequest(audio=bomb)]), timeout=60)
            latencies, done = [], threading.Event()
            poller = threading.Thread(target=poll_capabilities, args=(stub, latencies, done))
            poller.start()
            code, details, _ = outcome(call)
            done.set()
            poller.join(15)
            unary = refusal(lambda: stub.Assess(pb.AssessRequest(
                audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_OGG_OPUS), audio_content=bomb), timeout=60))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        server.stop()
    # Decoded whole, the 600 s would take 38 MB as 16 kHz float32 alone; stopped at 61 s, a few MB.
    assert peak < 20e6, f"peak traced memory {peak / 1e6:.0f} MB"
    assert code == grpc.StatusCode.OUT_OF_RANGE and "max_stream_ms of 60000" in details
    assert len(latencies) >= 2 and max(latencies) < 1.0, f"calls waited for the bomb's decoding: {latencies}"
    assert unary.code() == grpc.StatusCode.INVALID_ARGUMENT and "longer than 20000 ms" in unary.details()


def test_a_finished_stream_lets_go_of_its_audio_state_without_waiting_for_the_garbage_collector():
    """asyncio's exception reference cycles kept finished sessions, and the native buffers of their decoders
    (+128 MB per stream that sent a 20-minute Ogg/Opus message), alive until a full collection that an idle
    server may never run."""
    import asyncio
    import gc
    import weakref

    from saywell.server.metrics import ServerMetrics
    from saywell.server.session import AssessmentSession

    held = {}

    async def one_stream():
        session = AssessmentSession(FakeEngine(), ServerConfig(warm_up=False, metrics_port=0), ServerMetrics())

        async def requests():
            yield pb.StreamAssessRequest(config=pb.StreamingAssessConfig(audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_OGG_OPUS)))
            yield pb.StreamAssessRequest(audio=opus_bomb(30))
            held["decoder"] = weakref.ref(session._decoder)

        async for _ in session.run(requests()):
            pass

    gc.disable()
    try:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(one_stream())
        alive = held["decoder"]() is not None
        loop.close()
    finally:
        gc.enable()
    assert not alive, "the finished stream's decoder (and its buffers) waits for the garbage collector"
