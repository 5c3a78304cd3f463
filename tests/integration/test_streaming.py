"""The real server and the real client, end to end, on synthesized speech."""
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
import soundfile as sf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from saywell.client import SaywellClient, load_audio
from saywell.client.errors import RpcFailed
from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc
from saywell.server.app import SaywellServer
from saywell.server.config import ServerConfig

from live_server import FIXTURES, RunningServer


def events(responses):
    return [(r.WhichOneof("event"), r) for r in responses]


def test_stream_of_one_sentence_gives_ordered_events_and_a_scored_final(server):
    with SaywellClient(server.target) as client:
        out = events(client.stream_file(load_audio(FIXTURES / "fox.wav"), interim_results=True, chunk_ms=100,
                                        realtime_factor=2.0, client_request_id="req-1"))
    kinds = [k for k, _ in out]
    assert kinds[0] == "speech_event" and kinds[-1] == "summary"
    assert kinds.index("utterance") > max(i for i, k in enumerate(kinds) if k == "speech_event")
    assert all(r.client_request_id == "req-1" for _, r in out)
    utterance = next(r.utterance for k, r in out if k == "utterance")
    assert {"quick", "brown", "fox", "lazy", "dog"} <= {w.word for w in utterance.words}
    starts = [w.start_ms for w in utterance.words]
    assert starts == sorted(starts) and all(w.end_ms >= w.start_ms for w in utterance.words)
    s = utterance.scores
    for value in (s.accuracy, s.fluency, s.prosody, s.total):
        assert 0 <= value <= 10
    assert not s.HasField("completeness")  # open mode
    assert utterance.processing.scorer == "trained"  # the default
    assert abs(s.total - (0.8 * s.accuracy + 0.1 * s.fluency + 0.1 * s.prosody)) < 1.5  # near the rubric
    assert all(p.phone and 0 <= p.accuracy <= 2 for w in utterance.words for p in w.phones)
    assert utterance.processing.model_versions["asr"].startswith("whisper-tiny.en")
    summary = out[-1][1].summary
    assert summary.utterances == 1 and summary.utterance_errors == 0 and summary.audio_ms >= 2900


def test_interim_word_results_arrive_before_the_utterance_ends(server):
    with SaywellClient(server.target) as client:
        out = events(client.stream_file(load_audio(FIXTURES / "market_8k.wav"), interim_results=True,
                                        chunk_ms=100, realtime_factor=1.0))
    ended = next(i for i, (k, r) in enumerate(out) if k == "speech_event"
                 and r.speech_event.type == pb.SPEECH_EVENT_TYPE_ENDED)
    updates = [r.interim_result for k, r in out[:ended] if k == "interim_result"]
    assert updates, "expected the live hypothesis while the learner was still speaking"
    stable = [w for u in updates for w in u.stable_words]
    assert [w.word_index for w in stable] == list(range(len(stable))), "stable words continue, never re-sent"
    for u in updates:  # the tail's indices follow the stable words sent so far
        tail = [w.word_index for w in u.provisional_words]
        assert tail == list(range(tail[0], tail[0] + len(tail))) if tail else True
    words = [w for u in updates for w in list(u.stable_words) + list(u.provisional_words)]
    assert all(0 <= w.accuracy <= 10 and not w.HasField("reference_index") for w in words), "open mode"


def test_two_utterances_are_assessed_in_order_with_stream_offsets(server):
    with SaywellClient(server.target) as client:
        out = events(client.stream_file(load_audio(FIXTURES / "two_utterances.wav"), chunk_ms=200,
                                        endpointing={"end_of_utterance_silence_ms": 500}))
    finals = [r.utterance for k, r in out if k == "utterance"]
    assert [u.utterance_index for u in finals] == [0, 1]
    assert "coffee" in finals[0].transcript.lower() and "brother" in finals[1].transcript.lower()
    assert finals[1].start_ms > finals[0].end_ms >= 2000
    assert finals[1].words[0].start_ms >= finals[1].start_ms
    assert finals[0].cause == pb.ENDPOINT_CAUSE_SILENCE and finals[1].cause == pb.ENDPOINT_CAUSE_END_OF_STREAM


def test_a_pause_inside_an_utterance_is_analysed_while_the_learner_goes_on(server):
    metrics = server.server.metrics.registry

    def count(outcome):
        return metrics.get_sample_value("saywell_speculative_finals_total", {"outcome": outcome}) or 0

    dropped_before = count("dropped")
    with SaywellClient(server.target) as client:
        out = events(client.stream_file(load_audio(FIXTURES / "two_utterances.wav"), chunk_ms=100,
                                        realtime_factor=1.0, endpointing={"end_of_utterance_silence_ms": 2000}))
    finals = [r.utterance for k, r in out if k == "utterance"]
    assert len(finals) == 1, "the 1.2 s gap is shorter than the endpoint: one utterance"
    words = [w.word for w in finals[0].words]
    assert {"coffee", "please", "brother", "years", "old"} <= set(words)
    assert [w.start_ms for w in finals[0].words] == sorted(w.start_ms for w in finals[0].words)
    assert words.index("brother") > words.index("coffee")
    assert count("dropped") > dropped_before, "the pause between the sentences started work that speech resumed"
    ended = next(i for i, (k, r) in enumerate(out) if k == "speech_event"
                 and r.speech_event.type == pb.SPEECH_EVENT_TYPE_ENDED)
    early = [w for k, r in out[:ended] if k == "interim_result" for w in r.interim_result.stable_words]
    assert "coffee" in {w.word for w in early}, "the first sentence's segment is stable while the learner goes on"
    assert [w.word_index for w in early] == list(range(len(early))), "stable words continue, never re-sent"


def test_closed_mode_reports_completeness_and_omissions(server):
    with SaywellClient(server.target) as client:
        out = events(client.stream_file(load_audio(FIXTURES / "brother.wav"),
                                        reference_text="My brother is 10 years old and likes apples."))
    utterance = next(r.utterance for k, r in out if k == "utterance")
    words = [w.word for w in utterance.words]
    assert words[:6] == ["my", "brother", "is", "ten", "years", "old"]
    omitted = [w.word for w in utterance.words if w.error_type == pb.WORD_ERROR_TYPE_OMISSION]
    assert set(omitted) <= {"and", "likes", "apples"} and len(omitted) >= 2
    assert utterance.scores.HasField("completeness") and utterance.scores.completeness < 10
    assert utterance.reference_text.startswith("My brother")


def test_closed_mode_interim_words_point_at_the_reference_words_read(server):
    """A reading app highlights the reference text live: interim words carry the index of the reference word
    (the same index as in the final's words) they were matched to."""
    reference = "Last year my brother was nine; my brother is ten years old and likes apples."
    with SaywellClient(server.target) as client:
        out = events(client.stream_file(load_audio(FIXTURES / "brother.wav"), reference_text=reference,
                                        interim_results=True, chunk_ms=100, realtime_factor=1.0))
    final = next(r.utterance for k, r in out if k == "utterance")
    reference_words = [w.word for w in final.words]
    updates = [list(r.interim_result.stable_words) + list(r.interim_result.provisional_words)
               for k, r in out if k == "interim_result"]
    pointed = [(w.word, w.reference_index) for update in updates for w in update if w.HasField("reference_index")]
    assert pointed, "interim words matched to the reference"
    for update in updates:  # in reading order
        indices = [w.reference_index for w in update if w.HasField("reference_index")]
        assert indices == sorted(set(indices)), update
    said = {word for word, index in pointed if reference_words[index] == word}
    assert {"brother", "ten", "years"} <= said, pointed
    assert all(index >= 5 for word, index in pointed if word == "brother"), "the brother that was read"
    assert all(reference_words[index] == word for word, index in pointed if word in reference_words), pointed


PARAGRAPH = ("My brother is ten years old. He likes apples and pears. We walk to school every morning. "
             "The bus is often late in winter. Our teacher reads stories after lunch. On Fridays we play football "
             "in the park. My sister prefers to paint pictures. In the evening we all eat dinner together.")


def test_an_utterance_that_reads_only_part_of_a_long_reference_is_assessed_not_failed(server):
    """A reading app's paragraph reference while the learner reads one sentence per utterance: the part read
    is assessed, the rest is omitted, and completeness says how much was read (was INTERNAL "audio too
    short")."""
    with SaywellClient(server.target) as client:
        streamed = events(client.stream_file(load_audio(FIXTURES / "brother.wav"), reference_text=PARAGRAPH))
        unary = client.assess_source(load_audio(FIXTURES / "brother.wav"), reference_text=PARAGRAPH).assessment
    kinds = [k for k, _ in streamed]
    assert "utterance_error" not in kinds and kinds.count("utterance") == 1
    for utterance in (next(r.utterance for k, r in streamed if k == "utterance"), unary):
        words = [w.word for w in utterance.words]
        assert len(words) == len(PARAGRAPH.split())
        said = [w.word for w in utterance.words if w.error_type != pb.WORD_ERROR_TYPE_OMISSION]
        assert {"brother", "years", "old"} <= set(said) and len(said) <= 8
        assert 0 < utterance.scores.completeness < 2.5


def test_compressed_stream_ogg_opus(server):
    audio, rate = sf.read(FIXTURES / "coffee.wav", dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="OGG", subtype="OPUS")
    data = buffer.getvalue()

    def requests():
        yield pb.StreamAssessRequest(config=pb.StreamingAssessConfig(audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_OGG_OPUS)))
        for i in range(0, len(data), 2000):
            yield pb.StreamAssessRequest(audio=data[i:i + 2000])

    with grpc.insecure_channel(server.target) as channel:
        out = events(pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(requests()))
    utterance = next(r.utterance for k, r in out if k == "utterance")
    assert "coffee" in utterance.transcript.lower()


def test_unary_assess_and_capabilities(server):
    with SaywellClient(server.target) as client:
        response = client.assess_source(load_audio(FIXTURES / "fox.wav"),
                                        reference_text="The quick brown fox jumps over the lazy dog.")
        capabilities = client.capabilities()
    assessment = response.assessment
    assert len(assessment.words) == 9 and assessment.scores.completeness == pytest.approx(10)
    assert pb.AUDIO_ENCODING_OGG_OPUS in capabilities.encodings and "en-US" in capabilities.language_codes
    assert capabilities.limits.max_concurrent_streams == 4
    assert capabilities.engine.scorers == ["trained", "baseline"]


@pytest.mark.parametrize("first, message", [
    (pb.StreamAssessRequest(audio=b"\x00\x00"), "first message must carry config"),
    (pb.StreamAssessRequest(config=pb.StreamingAssessConfig(audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16))),
     "sample_rate_hertz is required"),
])
def test_bad_streams_get_invalid_argument_and_the_server_keeps_serving(server, first, message):
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            list(stub.StreamAssess(iter([first])))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()
        assert stub.GetCapabilities(pb.GetCapabilitiesRequest()).engine.name == "saywell-cpu"


def test_second_config_is_rejected_after_earlier_utterances_are_delivered(server):
    audio = sf.read(FIXTURES / "coffee.wav", dtype="int16")[0].tobytes()
    config = pb.StreamingAssessConfig(audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000))
    requests = [pb.StreamAssessRequest(config=config), pb.StreamAssessRequest(audio=audio),
                pb.StreamAssessRequest(end_of_utterance=pb.EndOfUtterance()), pb.StreamAssessRequest(config=config)]
    received = []
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as error:
            for response in pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(iter(requests)):
                received.append(response.WhichOneof("event"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "only once" in error.value.details()
    assert "utterance" in received, "the utterance accepted before the error must still be assessed"


def test_streams_beyond_the_limit_are_refused_with_resource_exhausted():
    busy = RunningServer(ServerConfig(port=0, metrics_port=0, max_concurrent_streams=1, warm_up=False))
    try:
        with grpc.insecure_channel(busy.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            gate = threading.Event()

            def held():
                yield pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
                    audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000)))
                gate.wait(10)

            def probe():
                """The status of a second, empty stream: RESOURCE_EXHAUSTED while the held one owns the slot."""
                try:
                    list(stub.StreamAssess(iter([])))
                except grpc.RpcError as error:
                    return error
                raise AssertionError("an empty stream must not succeed")

            grpc.channel_ready_future(channel).result(timeout=10)
            first, refusal = stub.StreamAssess(held()), None
            deadline = time.monotonic() + 10
            while refusal is None and time.monotonic() < deadline:
                if first.done():  # a probe took the only slot for a moment and the held stream was refused
                    first = stub.StreamAssess(held())
                error = probe()
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not first.done():
                    refusal = error
                else:
                    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
                    time.sleep(0.05)
            assert refusal is not None, "the second stream was never refused"
            assert "limit of 1 concurrent streams" in refusal.details()
            gate.set()
            list(first)
    finally:
        busy.stop()


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "saywell.v1.PronunciationAssessmentService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in reply.list_services_response.service}
        assert "saywell.v1.PronunciationAssessmentService" in names and "grpc.health.v1.Health" in names
        # the same through grpc.reflection.v1, which newer tools speak (same messages, another package)
        v1 = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                   request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                   response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="saywell.v1.InterimResult")
        reply = next(v1(iter([request])))
        assert reply.file_descriptor_response.file_descriptor_proto, "v1 finds the contract's file"
        reply = next(v1(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert "grpc.reflection.v1.ServerReflection" in {s.name for s in reply.list_services_response.service}


def test_cli_assess_json_against_the_real_server(server):
    env = dict(os.environ, NO_COLOR="1")
    done = subprocess.run([sys.executable, "-m", "saywell.client.cli", "assess", str(FIXTURES / "fox.wav"),
                           "--target", server.target, "--json", "--reference-text",
                           "the quick brown fox jumps over the lazy dog"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    utterance = report["utterances"][0]
    assert [w["word"] for w in utterance["words"]] == "the quick brown fox jumps over the lazy dog".split()
    assert 0 <= utterance["scores"]["total"] <= 10


def test_metrics_endpoint_counts_utterances(server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metered = RunningServer(ServerConfig(port=0, metrics_port=port, warm_up=False))
    try:
        with SaywellClient(metered.target) as client:
            list(client.stream_file(load_audio(FIXTURES / "brother.wav")))
            client.assess_source(load_audio(FIXTURES / "brother.wav"))
            with pytest.raises(RpcFailed):
                client.assess_source(load_audio(FIXTURES / "brother.wav"), flag_sensitivity=float("nan"))
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'saywell_utterances_total{outcome="assessed"} 1.0' in text
        assert "saywell_final_latency_seconds_count 1.0" in text
        assert "saywell_active_streams 0.0" in text
        assert 'saywell_assess_calls_total{status="OK"} 1.0' in text
        assert 'saywell_assess_calls_total{status="INVALID_ARGUMENT"} 1.0' in text
        assert "saywell_engine_backlog 0.0" in text and "saywell_stream_slots 8.0" in text
        rss = next(line for line in text.splitlines() if line.startswith("process_resident_memory_bytes"))
        assert float(rss.split()[1]) > 50e6, "process metrics: the server's own memory"
    finally:
        metered.stop()
    assert isinstance(metered.server, SaywellServer)


@pytest.mark.parametrize("fixture, reference, said, omitted", [
    ("brother.wav", "My brother is 10 years old.", ["my", "brother", "is", "ten", "years", "old"], set()),
    ("fox.wav", "The quick, brown fox -- jumps over the lazy dog?!", ["the", "quick", "brown", "fox"], set()),
    ("coffee.wav", "I would like a cup of café, please", ["i", "would", "like", "a", "cup", "of", "cafe", "please"],
     set()),
    ("fox.wav", "the quick brown fox jumps over the lazy dog blorpington", ["dog", "blorpington"], {"blorpington"}),
])
def test_reference_texts_with_numbers_punctuation_accents_and_made_up_words(server, fixture, reference, said,
                                                                               omitted):
    with SaywellClient(server.target) as client:
        assessment = client.assess_source(load_audio(FIXTURES / fixture), reference_text=reference).assessment
    words = [w.word for w in assessment.words]
    assert all(w in words for w in said), words
    assert {w.word for w in assessment.words if w.error_type == pb.WORD_ERROR_TYPE_OMISSION} >= omitted
    assert assessment.reference_text == reference.strip()


def test_the_baseline_stays_selectable_and_follows_the_rubric_exactly(server):
    source = load_audio(FIXTURES / "fox.wav")
    config = pb.AssessmentConfig(reference_text="the quick brown fox jumps over the lazy dog", scorer="baseline")
    with SaywellClient(server.target) as client:
        assessment = client.assess(source.data, source.audio_config(), config).assessment
    s = assessment.scores
    assert assessment.processing.scorer == "baseline"
    expected = 0.8 * s.accuracy * s.completeness / 10 + 0.1 * s.fluency + 0.1 * s.prosody
    assert s.total == pytest.approx(expected, abs=0.02)
