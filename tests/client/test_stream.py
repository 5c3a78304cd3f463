from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
import soundfile as sf

from saywell.client import (
    AsyncSaywellClient,
    AudioSource,
    ClientOptions,
    RpcFailed,
    SaywellClient,
    ServerUnreachable,
    load_audio,
)
from saywell.v1 import assessment_pb2 as pb


def _kinds(responses):
    return [r.WhichOneof("event") for r in responses]


def _silence(seconds: float, rate: int = 16000) -> AudioSource:
    frames = int(seconds * rate)
    return AudioSource(pb.AUDIO_ENCODING_LINEAR16, rate, 1, bytes(frames * 2), frames / rate)


def test_stream_file_sends_config_first_then_all_audio(fake_server, fixtures_dir):
    path = fixtures_dir / "fox.wav"
    source = load_audio(path)
    with SaywellClient(fake_server.target) as client:
        responses = list(client.stream_file(source, reference_text="the quick brown fox", chunk_ms=100,
                                            client_request_id="req-1"))
    sent = fake_server.servicer.stream_requests
    assert sent[0].WhichOneof("request") == "config"
    assert all(r.WhichOneof("request") == "audio" for r in sent[1:])
    cfg = sent[0].config
    assert cfg.audio.encoding == pb.AUDIO_ENCODING_LINEAR16
    assert (cfg.audio.sample_rate_hertz, cfg.audio.audio_channel_count) == (16000, 1)
    assert cfg.assessment.reference_text == "the quick brown fox"
    assert cfg.interim_results is True
    assert cfg.client_request_id == "req-1"
    sizes = [len(r.audio) for r in sent[1:]]
    assert all(s == 3200 for s in sizes[:-1])  # 100 ms of 16 kHz int16 mono
    assert sum(sizes) == sf.info(str(path)).frames * 2
    assert b"".join(r.audio for r in sent[1:]) == source.data
    assert _kinds(responses) == ["speech_event", "interim_result", "speech_event", "utterance", "summary"]
    assert all(r.client_request_id == "req-1" for r in responses)


def test_8k_rate_passes_through_and_20ms_chunks(fake_server, fixtures_dir):
    source = load_audio(fixtures_dir / "market_8k.wav")
    with SaywellClient(fake_server.target) as client:
        list(client.stream_file(source, chunk_ms=20, interim_results=False))
    sent = fake_server.servicer.stream_requests
    assert sent[0].config.audio.sample_rate_hertz == 8000
    assert sent[0].config.interim_results is False
    sizes = [len(r.audio) for r in sent[1:]]
    assert all(s == 320 for s in sizes[:-1])
    assert sum(sizes) == len(source.data)


def test_endpointing_and_sensitivity_reach_the_server(fake_server, fixtures_dir):
    source = load_audio(fixtures_dir / "fox.wav")
    with SaywellClient(fake_server.target) as client:
        list(client.stream_file(source, endpointing={"end_of_utterance_silence_ms": 500, "vad_aggressiveness": 3},
                                flag_sensitivity=0.75))
    cfg = fake_server.servicer.stream_requests[0].config
    assert cfg.endpointing.end_of_utterance_silence_ms == 500
    assert cfg.endpointing.HasField("vad_aggressiveness") and cfg.endpointing.vad_aggressiveness == 3
    assert cfg.assessment.flag_sensitivity == pytest.approx(0.75)


def test_bad_options_fail_before_sending(fake_server, fixtures_dir):
    source = load_audio(fixtures_dir / "fox.wav")
    with SaywellClient(fake_server.target) as client:
        with pytest.raises(ValueError):
            client.stream_file(source, endpointing={"no_such_field": 1})
        with pytest.raises(ValueError):
            client.stream_file(source, flag_sensitivity=1.5)
        with pytest.raises(ValueError):
            client.stream_file(source, chunk_ms=500)
    assert fake_server.servicer.stream_requests == []


def test_bearer_token_is_sent_as_metadata(fake_server, fixtures_dir):
    options = ClientOptions(bearer_token="s3cret")
    with SaywellClient(fake_server.target, options=options) as client:
        client.capabilities()
        list(client.stream_file(_silence(0.2)))
    assert [m.get("authorization") for m in fake_server.servicer.metadata] == ["Bearer s3cret"] * 2


def test_unary_assess_and_capabilities(fake_server, fixtures_dir):
    source = load_audio(fixtures_dir / "fox.wav")
    with SaywellClient(fake_server.target) as client:
        caps = client.capabilities()
        response = client.assess(source.data, source.audio_config(),
                                 pb.AssessmentConfig(reference_text="the quick"), client_request_id="u1")
    assert pb.AUDIO_ENCODING_LINEAR16 in caps.encodings and caps.engine.scorers[0] == "gop"
    (request,) = fake_server.servicer.unary_requests
    assert request.audio_content == source.data
    assert request.audio.sample_rate_hertz == 16000
    assert request.assessment.reference_text == "the quick"
    assert response.client_request_id == "u1"
    assert [w.word for w in response.assessment.words][:2] == ["the", "quick"]


def test_server_abort_is_a_typed_error(fake_server, fixtures_dir):
    fake_server.servicer.abort = (grpc.StatusCode.INVALID_ARGUMENT, "sample rate 4000 out of range")
    with SaywellClient(fake_server.target) as client:
        with pytest.raises(RpcFailed) as info:
            list(client.stream_file(_silence(0.2)))
        assert info.value.code_name == "INVALID_ARGUMENT"
        assert "4000" in info.value.details
        with pytest.raises(RpcFailed, match="INVALID_ARGUMENT"):
            client.capabilities()


def test_unreachable_server_is_server_unreachable(dead_target):
    with SaywellClient(dead_target, options=ClientOptions(timeout_s=5)) as client:
        with pytest.raises(ServerUnreachable) as info:
            client.capabilities()
        assert info.value.target == dead_target
        with pytest.raises(ServerUnreachable):
            list(client.stream_file(_silence(0.2)))


def test_leaving_a_stream_early_does_not_hang(fake_server):
    with SaywellClient(fake_server.target) as client:
        for response in client.stream_file(_silence(0.5)):
            break
    assert response.WhichOneof("event") == "speech_event"


def test_realtime_factor_one_paces_at_audio_duration(fake_server):
    source = _silence(1.0)
    start = time.monotonic()
    with SaywellClient(fake_server.target) as client:
        list(client.stream_file(source, chunk_ms=100, realtime_factor=1.0))
    assert time.monotonic() - start >= 0.8 * source.duration_s


def test_unpaced_stream_is_faster_than_real_time(fake_server, fixtures_dir):
    source = load_audio(fixtures_dir / "fox.wav")
    start = time.monotonic()
    with SaywellClient(fake_server.target) as client:
        list(client.stream_file(source))
    assert time.monotonic() - start < 0.5 * source.duration_s


def test_async_client_streams_the_same_way(fake_server, fixtures_dir):
    source = load_audio(fixtures_dir / "market_8k.wav")

    async def run():
        async with AsyncSaywellClient(fake_server.target, options=ClientOptions(bearer_token="t")) as client:
            caps = await client.capabilities()
            start = time.monotonic()
            responses = [r async for r in client.stream_file(_silence(1.0), realtime_factor=2.0)]
            paced_s = time.monotonic() - start
            await client.assess(source.data, source.audio_config())
            return caps, responses, paced_s

    caps, responses, paced_s = asyncio.run(run())
    assert caps.engine.name == "fake"
    assert _kinds(responses)[-2:] == ["utterance", "summary"]
    assert paced_s >= 0.8 * 0.5
    sent = fake_server.servicer.stream_requests
    assert sent[0].WhichOneof("request") == "config"
    assert sum(len(r.audio) for r in sent[1:]) == 32000
    assert fake_server.servicer.unary_requests[0].audio.sample_rate_hertz == 8000
    assert {m.get("authorization") for m in fake_server.servicer.metadata} == {"Bearer t"}


def test_async_errors_keep_the_server_status(fake_server):
    # grpc.aio reports INTERNAL when a write races the server's end of the call
    # (grpc/grpc#36066); the client must still report the server's own status,
    # unpaced (where the race is likely) as well as paced.
    fake_server.servicer.abort = (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many streams")

    async def run(realtime_factor):
        codes = []
        async with AsyncSaywellClient(fake_server.target) as client:
            for _ in range(10 if realtime_factor is None else 1):
                try:
                    [r async for r in client.stream_file(_silence(1.0), realtime_factor=realtime_factor)]
                except RpcFailed as e:
                    codes.append((e.code, e.details))
        return codes

    for factor in (None, 4.0):
        codes = asyncio.run(run(factor))
        assert codes and set(codes) == {(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many streams")}


def test_pcm_view_matches_soundfile(fixtures_dir):
    path = fixtures_dir / "fox.wav"
    expected, _ = sf.read(str(path), dtype="int16")
    assert np.array_equal(load_audio(path).pcm[:, 0], expected)
