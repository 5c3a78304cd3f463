"""A fake saywell servicer: records what it receives, answers canned but structured results."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc


def canned_utterance(index: int = 0) -> pb.UtteranceAssessment:
    """Covers every word kind the renderer distinguishes."""
    phones = [
        pb.PhoneAssessment(phone="K", start_ms=400, end_ms=460, goodness=-0.4, accuracy=2.0),
        pb.PhoneAssessment(phone="W", start_ms=460, end_ms=520, goodness=-3.1, accuracy=0.5),
    ]
    return pb.UtteranceAssessment(
        utterance_index=index,
        start_ms=300,
        end_ms=2900,
        cause=pb.ENDPOINT_CAUSE_END_OF_STREAM,
        transcript="the quick fox um",
        reference_text="the quick brown fox",
        scores=pb.SentenceScores(accuracy=7.5, fluency=8.5, prosody=8.0, total=6.8, completeness=7.5),
        words=[
            pb.WordAssessment(word="the", start_ms=300, end_ms=380, accuracy=9.0, stress=10, total=9.2,
                              error_type=pb.WORD_ERROR_TYPE_NONE),
            pb.WordAssessment(word="quick", start_ms=400, end_ms=700, accuracy=6.0, stress=10, total=6.5,
                              error_type=pb.WORD_ERROR_TYPE_MISPRONUNCIATION, needs_improvement=True, phones=phones),
            pb.WordAssessment(word="brown", error_type=pb.WORD_ERROR_TYPE_OMISSION),
            pb.WordAssessment(word="fox", start_ms=900, end_ms=1300, accuracy=3.0, stress=5, total=3.5,
                              error_type=pb.WORD_ERROR_TYPE_MISPRONUNCIATION, needs_improvement=True),
            pb.WordAssessment(word="um", start_ms=1400, end_ms=1500, accuracy=6.5, stress=10, total=6.9,
                              error_type=pb.WORD_ERROR_TYPE_INSERTION),
        ],
        processing=pb.ProcessingInfo(latency_ms=42.0, audio_ms=2600, engine="fake 0.0", scorer="fake"),
    )


@dataclass
class FakeServicer(pb_grpc.PronunciationAssessmentServiceServicer):
    """Records requests and metadata; `abort` = (code, details) makes every call fail,
    streams once their config has been read (as a server validating it would)."""

    stream_requests: list[pb.StreamAssessRequest] = field(default_factory=list)
    unary_requests: list[pb.AssessRequest] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    abort: tuple[grpc.StatusCode, str] | None = None

    def _record(self, context: grpc.ServicerContext, check: bool = True) -> None:
        self.metadata.append({k: v for k, v in context.invocation_metadata()})
        if check and self.abort is not None:
            context.abort(*self.abort)

    def StreamAssess(self, request_iterator, context):
        self._record(context, check=False)
        for request in request_iterator:
            self.stream_requests.append(request)
            if self.abort is not None:
                context.abort(*self.abort)
        config = self.stream_requests[0].config
        rid = config.client_request_id
        yield pb.StreamAssessResponse(client_request_id=rid, speech_event=pb.SpeechEvent(
            type=pb.SPEECH_EVENT_TYPE_STARTED, offset_ms=300))
        if config.interim_results:
            yield pb.StreamAssessResponse(client_request_id=rid, interim_result=pb.InterimResult(provisional_words=[
                pb.InterimWord(word_index=0, word="quick", start_ms=400, end_ms=700, accuracy=4.0,
                               needs_improvement=True)]))
        yield pb.StreamAssessResponse(client_request_id=rid, speech_event=pb.SpeechEvent(
            type=pb.SPEECH_EVENT_TYPE_ENDED, offset_ms=2900, cause=pb.ENDPOINT_CAUSE_END_OF_STREAM))
        yield pb.StreamAssessResponse(client_request_id=rid, utterance=canned_utterance())
        yield pb.StreamAssessResponse(client_request_id=rid, summary=pb.StreamSummary(
            utterances=1, audio_ms=2965, mean_total=6.8))

    def Assess(self, request, context):
        self._record(context)
        self.unary_requests.append(request)
        return pb.AssessResponse(client_request_id=request.client_request_id, assessment=canned_utterance())

    def GetCapabilities(self, request, context):
        self._record(context)
        return pb.Capabilities(
            encodings=[pb.AUDIO_ENCODING_LINEAR16, pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG_OPUS, pb.AUDIO_ENCODING_WAV],
            language_codes=["en-US"],
            limits=pb.Limits(max_message_bytes=4 << 20, max_stream_ms=600_000, max_utterance_ms=30_000,
                             max_reference_text_chars=1000, min_sample_rate_hertz=8000,
                             max_sample_rate_hertz=48000, max_audio_channel_count=8, max_concurrent_streams=64),
            engine=pb.EngineInfo(name="fake", version="0.0", scorers=["gop", "mlp"],
                                 model_versions={"aligner": "abc123"}),
        )


