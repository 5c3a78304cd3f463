"""Fuzzing the wire: hand-made request bytes, not only valid messages, reach a real grpc.aio server (fake engine).

An identity request serializer hands arbitrary bytes to the server's own parser: random bytes; valid
StreamAssessRequest / AssessRequest messages mutated (truncated, bits flipped, garbage inserted, invalid UTF-8 in
string fields, overlong length prefixes, groups nested past the parser's depth limit); valid and invalid messages
mixed in one stream. For every fuzzed call:

* it ends within MUST_END_WITHIN_S, with OK or one of the statuses the README documents for bad input (never
  UNKNOWN or INTERNAL, never a traceback-like message, never the client's own deadline, i.e. a hang);
* afterwards no stream slot is held (the server's active-streams gauge drops to 0) and a good stream (config,
  1 s of fox.wav as LINEAR16, end of utterance) still gets its final `utterance` and its `summary`.

The server has max_concurrent_streams=2, so two leaked slots would refuse the good stream. Examples are
derandomized and not shrunk (a failing example that hangs would cost the call timeout per shrink step): a
failure names its payload instead. The whole file is sized to run in well under a minute on two busy cores.
"""
import dataclasses
import pathlib
import sys
import threading
import time
import zlib

import grpc
import pytest
import soundfile as sf
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from saywell.server.config import ServerConfig
from saywell.v1 import assessment_pb2 as pb

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fake_engine import FakeEngine  # noqa: E402
from live_server import RunningServer  # noqa: E402

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
STREAM_METHOD = "/saywell.v1.PronunciationAssessmentService/StreamAssess"
ASSESS_METHOD = "/saywell.v1.PronunciationAssessmentService/Assess"
FOX = sf.read(FIXTURES / "fox.wav", dtype="int16")[0].tobytes()  # 16 kHz mono
FOX_1S = FOX[:32000]

# Bad input may end a call only with one of these (README, "Limits and errors"); OK is fine too.
DEFINED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED,
           grpc.StatusCode.FAILED_PRECONDITION}
TRACEBACK_SIGNS = ("Traceback", "Unexpected <class", "Exception calling application", 'File "')
CALL_TIMEOUT_S = 6.0  # the client's deadline; reaching it means the server let the call hang
MUST_END_WITHIN_S = 4.0
SERVER_TIMEOUT_S = 1.5  # config_timeout_s / idle_timeout_s, where the server has them

FUZZ = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
            report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                   HealthCheck.function_scoped_fixture])


def server_config() -> ServerConfig:
    values = dict(port=0, metrics_port=0, warm_up=False, max_concurrent_streams=2, max_stream_ms=60_000,
                  grace_s=1.0)
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    for name in ("config_timeout_s", "idle_timeout_s"):  # only where this server has them
        if name in known:
            values[name] = SERVER_TIMEOUT_S
    return ServerConfig(**values)


@pytest.fixture(scope="module")
def fuzz_server():
    running = RunningServer(server_config(), engine=FakeEngine())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel(fuzz_server):
    with grpc.insecure_channel(fuzz_server.target) as chan:
        yield chan


class Wire(bytes):
    """Request bytes that print short (length, head, crc32): a failing example stays readable."""

    def __repr__(self) -> str:
        head = bytes(self[:40])
        return f"Wire({len(self)} bytes, crc32 {zlib.crc32(self):08x}: {head!r}{'...' if len(self) > 40 else ''})"

    def _repr_pretty_(self, printer, cycle) -> None:  # what hypothesis prints a failing example with
        printer.text(repr(self))


def wires(payloads) -> list[Wire]:
    return [Wire(p) for p in payloads]


# -- calls ----------------------------------------------------------------------------------------------------

def _sent(payloads, gate: threading.Event | None):
    yield from payloads
    if gate is not None:  # keep the stream open, sending nothing, until the call is over
        gate.wait(CALL_TIMEOUT_S + 2)


def raw_stream(channel, payloads: list[bytes], hold: bool = False):
    """(status, details, response kinds, seconds) of a StreamAssess whose requests are exactly `payloads`;
    half-closed after them unless `hold`."""
    call_raw = channel.stream_stream(STREAM_METHOD, request_serializer=bytes,
                                     response_deserializer=pb.StreamAssessResponse.FromString)
    gate = threading.Event() if hold else None
    started = time.monotonic()
    kinds = []
    try:
        call = call_raw(_sent(payloads, gate), timeout=CALL_TIMEOUT_S)
        try:
            for response in call:
                kinds.append(response.WhichOneof("event"))
        except grpc.RpcError:
            pass
        return call.code(), call.details() or "", kinds, time.monotonic() - started
    finally:
        if gate is not None:
            gate.set()


def raw_assess(channel, payload: bytes):
    """(status, details, seconds) of an Assess whose request is exactly `payload`."""
    call_raw = channel.unary_unary(ASSESS_METHOD, request_serializer=bytes,
                                   response_deserializer=pb.AssessResponse.FromString)
    started = time.monotonic()
    try:
        _, call = call_raw.with_call(payload, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        return error.code(), error.details() or "", time.monotonic() - started
    return call.code(), call.details() or "", time.monotonic() - started


def assert_defined_end(code, details, seconds, payloads, kinds=None):
    shown = wires(payloads)[:8]
    assert not (code == grpc.StatusCode.DEADLINE_EXCEEDED and seconds >= CALL_TIMEOUT_S - 0.5), \
        f"the call hung until the client's deadline ({details!r}); payloads {shown}"
    assert seconds < MUST_END_WITHIN_S, f"ended only after {seconds:.1f} s ({code}, {details!r}); payloads {shown}"
    assert code in DEFINED, f"{code}: {details!r}; payloads {shown}"
    assert not any(sign in details for sign in TRACEBACK_SIGNS), f"traceback-like details {details!r}"
    if code != grpc.StatusCode.OK:
        assert details, f"{code} without saying what was wrong; payloads {shown}"
    elif kinds is not None:
        assert kinds and kinds[-1] == "summary", f"OK without a final summary: {kinds}; payloads {shown}"


def active_streams(server) -> float:
    value = server.server.metrics.registry.get_sample_value("saywell_active_streams")
    return value or 0.0


def assert_still_serving(server, channel):
    """No slot held once the fuzzed call is over, and a good stream still gets its final and its summary."""
    deadline = time.monotonic() + 3
    while active_streams(server) > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert active_streams(server) == 0, "a fuzzed stream still holds its slot after it ended"
    code, details, kinds, seconds = raw_stream(channel, GOOD_STREAM)
    assert code == grpc.StatusCode.OK, (code, details, seconds)
    assert "utterance" in kinds and kinds[-1] == "summary", kinds


# -- valid messages ------------------------------------------------------------------------------------------

def stream_config(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, audio_channel_count=0, reference_text="",
                  client_request_id="", interim_results=False, endpointing=None) -> pb.StreamAssessRequest:
    config = pb.StreamingAssessConfig(
        audio=pb.AudioConfig(encoding=encoding, sample_rate_hertz=sample_rate_hertz,
                             audio_channel_count=audio_channel_count),
        assessment=pb.AssessmentConfig(reference_text=reference_text), interim_results=interim_results,
        client_request_id=client_request_id)
    if endpointing is not None:
        config.endpointing.CopyFrom(endpointing)
    return pb.StreamAssessRequest(config=config)


def audio(data: bytes) -> bytes:
    return pb.StreamAssessRequest(audio=data).SerializeToString()


END = pb.StreamAssessRequest(end_of_utterance=pb.EndOfUtterance()).SerializeToString()
GOOD_STREAM = [stream_config().SerializeToString(), audio(FOX_1S[:16000]), audio(FOX_1S[16000:]), END]

texts = st.one_of(st.just(""), st.sampled_from(["the quick brown fox", "jumps", "café 10", "!!!"]),
                  st.text(max_size=24))
configs = st.builds(
    stream_config,
    encoding=st.sampled_from([pb.AUDIO_ENCODING_LINEAR16, pb.AUDIO_ENCODING_LINEAR16, pb.AUDIO_ENCODING_LINEAR16, pb.AUDIO_ENCODING_WAV, pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG_OPUS, 0, 9]),
    sample_rate_hertz=st.sampled_from([16000, 16000, 8000, 48000, 0, -1, 7999, 10**9]),
    audio_channel_count=st.sampled_from([0, 0, 1, 2, 9, -3]),
    reference_text=texts, client_request_id=texts, interim_results=st.booleans(),
    endpointing=st.one_of(st.none(), st.builds(
        pb.EndpointingConfig, vad_aggressiveness=st.integers(-1, 4),
        end_of_utterance_silence_ms=st.sampled_from([0, 200, 199, 5000, 5001]),
        max_utterance_ms=st.sampled_from([0, 1000, 999, 20_000, 20_001]),
        min_speech_ms=st.sampled_from([0, 30, 29, 1000, 1001])))).map(lambda m: m.SerializeToString())


@st.composite
def audio_messages(draw) -> bytes:
    start = draw(st.integers(0, len(FOX) - 2)) // 2 * 2
    size = draw(st.sampled_from([0, 1, 2, 320, 3200, 6400]))
    return audio(FOX[start:start + size])


@st.composite
def valid_streams(draw) -> list[bytes]:
    """Config, then audio chunks and ends of utterance, as a well-behaved client would send them."""
    body = draw(st.lists(st.one_of(audio_messages(), audio_messages(), st.just(END)), max_size=6))
    return [draw(configs)] + body


# -- invalid bytes -------------------------------------------------------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xed\xa0\x80",  # lone surrogate
                b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80"]  # overlong; > U+10FFFF


@st.composite
def invalid_utf8_config(draw) -> bytes:
    """A config whose reference_text or client_request_id holds bytes that are not UTF-8 (lengths kept right)."""
    bad = draw(st.sampled_from(INVALID_UTF8))
    prefix, suffix = draw(st.sampled_from(["", "ok "])), draw(st.sampled_from(["", " fox"]))
    marker = "Q" * len(bad)
    field = draw(st.sampled_from(["reference_text", "client_request_id"]))
    raw = stream_config(**{field: prefix + marker + suffix}).SerializeToString()
    assert raw.count(marker.encode()) == 1
    return raw.replace(marker.encode(), bad)


@st.composite
def overlong_lengths(draw) -> bytes:
    """A length-delimited field whose length prefix says more than there is, or is not a valid varint."""
    tag = draw(st.sampled_from([b"\x0a", b"\x12", b"\x7a"]))  # config, audio, unknown field 15
    body = draw(st.binary(max_size=16))
    length = draw(st.sampled_from([len(body) + 1, 2**31 - 1, 2**31, 2**32 + 5, 2**63, 2**64 - 1]))
    prefix = draw(st.sampled_from([varint(length), b"\xff" * 10 + b"\x01", b"\x80" * 11]))
    if draw(st.booleans()):  # the same inside the config: its audio config's length overflows the config
        inner = b"\x0a" + prefix + body
        return b"\x0a" + varint(len(inner)) + inner
    return tag + prefix + body


@st.composite
def nested_groups(draw) -> bytes:
    """Unknown groups (field 15) nested past the parser's depth limit, balanced or not."""
    depth = draw(st.integers(90, 400))
    closing = draw(st.sampled_from([depth, 0, depth // 2]))
    groups = b"\x7b" * depth + b"\x7c" * closing
    around = draw(st.sampled_from([b"", stream_config().SerializeToString(), audio(FOX[:320])]))
    return around + groups if draw(st.booleans()) else groups + around


@st.composite
def mutated(draw, messages) -> bytes:
    """One message of `messages`, then 1..3 byte-level mutations."""
    raw = bytearray(draw(messages))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite"]))
        at = draw(st.integers(0, max(0, len(raw) - 1)))
        if kind == "truncate" and raw:
            del raw[at:]
        elif kind == "flip" and raw:
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            raw[at:at] = draw(st.one_of(st.binary(min_size=1, max_size=12), st.sampled_from(INVALID_UTF8)))
        elif raw:
            garbage = draw(st.binary(min_size=1, max_size=8))
            raw[at:at + len(garbage)] = garbage
    return bytes(raw)


any_valid_message = st.one_of(configs, audio_messages(), st.just(END))
invalid_messages = st.one_of(
    st.binary(max_size=64), mutated(any_valid_message), invalid_utf8_config(), overlong_lengths(), nested_groups())


def unparsable(payload: bytes) -> bool:
    try:
        pb.StreamAssessRequest.FromString(payload)
    except Exception:  # noqa: BLE001 - whatever the parser refuses
        return True
    return False


# -- StreamAssess ----------------------------------------------------------------------------------------------

@settings(max_examples=100, **FUZZ)
@given(payloads=st.lists(st.binary(max_size=256), max_size=4).map(wires))
def test_random_bytes_end_the_stream_with_a_defined_status(fuzz_server, channel, payloads):
    code, details, kinds, seconds = raw_stream(channel, payloads)
    assert_defined_end(code, details, seconds, payloads, kinds)
    assert_still_serving(fuzz_server, channel)


@st.composite
def valid_streams_mutated(draw) -> list[bytes]:
    stream = draw(valid_streams())
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(stream) - 1))
        stream[at] = draw(st.one_of(mutated(st.just(stream[at])), invalid_utf8_config(), overlong_lengths(),
                                    nested_groups()))
    return stream


@settings(max_examples=150, **FUZZ)
@given(payloads=valid_streams_mutated().map(wires))
def test_mutated_valid_streams_end_with_a_defined_status(fuzz_server, channel, payloads):
    code, details, kinds, seconds = raw_stream(channel, payloads)
    assert_defined_end(code, details, seconds, payloads, kinds)
    if code == grpc.StatusCode.INVALID_ARGUMENT and any(unparsable(p) for p in payloads):
        assert details, "an unparsable request must be named"
    assert_still_serving(fuzz_server, channel)


@st.composite
def mixed_streams(draw) -> list[bytes]:
    """A valid stream with invalid messages inserted anywhere, the config's place included."""
    stream = draw(valid_streams())
    for _ in range(draw(st.integers(1, 3))):
        stream.insert(draw(st.integers(0, len(stream))), draw(invalid_messages))
    return stream


@settings(max_examples=120, **FUZZ)
@given(payloads=mixed_streams().map(wires))
def test_valid_and_invalid_messages_mixed_end_with_a_defined_status(fuzz_server, channel, payloads):
    code, details, kinds, seconds = raw_stream(channel, payloads)
    assert_defined_end(code, details, seconds, payloads, kinds)
    first_bad = next((i for i, p in enumerate(payloads) if unparsable(p)), None)
    if first_bad is not None:  # nothing may be read past a request that does not parse
        assert code != grpc.StatusCode.OK, f"OK although request {first_bad} does not parse: {details!r}"
    assert_still_serving(fuzz_server, channel)


@settings(max_examples=20, **FUZZ)
@given(prefix=st.sampled_from([[], wires([stream_config().SerializeToString(), audio(FOX[:3200])])]),
       bad=invalid_messages.filter(unparsable).map(Wire))
def test_an_unparsable_request_ends_a_stream_the_client_keeps_open(fuzz_server, channel, prefix, bad):
    """The client never half-closes: the parse error itself, not a timeout, must end the stream, at once."""
    payloads = prefix + [bad]
    code, details, _, seconds = raw_stream(channel, payloads, hold=True)
    assert_defined_end(code, details, seconds, payloads)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code}: {details!r} after {seconds:.1f} s"
    assert seconds < SERVER_TIMEOUT_S, f"took {seconds:.1f} s: ended by a timeout, not by the parse error"
    assert_still_serving(fuzz_server, channel)


# -- Assess ---------------------------------------------------------------------------------------------------

def assess_request(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, reference_text="", client_request_id="",
                   seconds=1.0) -> bytes:
    return pb.AssessRequest(
        audio=pb.AudioConfig(encoding=encoding, sample_rate_hertz=sample_rate_hertz),
        assessment=pb.AssessmentConfig(reference_text=reference_text), client_request_id=client_request_id,
        audio_content=FOX[:int(seconds * 32000) // 2 * 2]).SerializeToString()


assess_requests = st.builds(
    assess_request, encoding=st.sampled_from([pb.AUDIO_ENCODING_LINEAR16, pb.AUDIO_ENCODING_LINEAR16, pb.AUDIO_ENCODING_WAV, pb.AUDIO_ENCODING_OGG_OPUS, 0]),
    sample_rate_hertz=st.sampled_from([16000, 16000, 8000, 0, -1]), reference_text=texts, client_request_id=texts,
    seconds=st.sampled_from([0.0, 0.05, 0.5, 1.0, 2.9]))


@st.composite
def invalid_utf8_assess(draw) -> bytes:
    bad = draw(st.sampled_from(INVALID_UTF8))
    marker = "Q" * len(bad)
    field = draw(st.sampled_from(["reference_text", "client_request_id"]))
    raw = assess_request(**{field: marker}, seconds=0)  # the audio goes after: no marker bytes can hide in it
    assert raw.count(marker.encode()) == 1
    content = FOX[:16000]
    return raw.replace(marker.encode(), bad) + b"\x1a" + varint(len(content)) + content


@settings(max_examples=150, **FUZZ)
@given(payload=st.one_of(st.binary(max_size=256), mutated(assess_requests), invalid_utf8_assess(),
                         overlong_lengths(), nested_groups(), assess_requests).map(Wire))
def test_assess_with_any_bytes_ends_with_a_defined_status(fuzz_server, channel, payload):
    code, details, seconds = raw_assess(channel, payload)
    assert_defined_end(code, details, seconds, [payload])
    assert_still_serving(fuzz_server, channel)
