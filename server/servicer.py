"""gRPC edge: thin servicer methods, admission control, and one interceptor that maps errors to statuses."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc
from google.protobuf.message import DecodeError

from saywell.engine.api import Engine
from saywell.engine.types import AssessmentRequest, EngineError
from saywell.server import convert
from saywell.server.audio_decoding import decode_all
from saywell.server.config import ServerConfig
from saywell.server.errors import (RETRY_AFTER_MS, InvalidArgument, OutOfRange, ResourceExhausted, StatusError,
                                   Unparsable, status_of)
from saywell.server.interim_turns import InterimTurns
from saywell.server.metrics import ServerMetrics
from saywell.server.segmenter import EndCause
from saywell.server.session import AssessmentSession
from saywell.server.settings import (ENCODINGS, LANGUAGES, MAX_CHANNELS, MAX_RATE, MIN_RATE, assessment_fields,
                                     audio_settings)
from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
_UNPARSABLE = object()


def _lenient(deserialize):
    """The handler's request parser, giving a marker for bytes protobuf refuses: grpc.aio would answer those
    with UNKNOWN (and log them at ERROR) before any handler could say what was wrong."""
    if deserialize is None:
        return None

    def parse(raw: bytes):
        try:
            return deserialize(raw)
        except DecodeError:
            return _UNPARSABLE
    return parse


class StatusInterceptor(grpc.aio.ServerInterceptor):
    """Typed errors become their gRPC status; engine errors become INTERNAL/RESOURCE_EXHAUSTED; all are counted."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    async def _abort(self, context, exc: Exception):
        code, message = status_of(exc)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            context.set_trailing_metadata((("retry-after-ms", RETRY_AFTER_MS),))
        self.metrics.errors.labels(code.name).inc()
        await context.abort(code, message)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request, context):
                try:
                    if request is _UNPARSABLE:
                        raise Unparsable()
                    return await inner(request, context)
                except (StatusError, EngineError) as exc:
                    await self._abort(context, exc)
            return handler._replace(unary_unary=unary, request_deserializer=_lenient(handler.request_deserializer))
        if handler.stream_stream:
            inner_stream = handler.stream_stream

            async def stream(request_iterator, context):
                try:
                    async for response in inner_stream(request_iterator, context):
                        yield response
                except (StatusError, EngineError) as exc:
                    await self._abort(context, exc)
            return handler._replace(stream_stream=stream)
        return handler


class PronunciationAssessmentServiceServicer(pb_grpc.PronunciationAssessmentServiceServicer):
    def __init__(self, engine: Engine, config: ServerConfig, metrics: ServerMetrics) -> None:
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self.active_calls = 0  # streams and unary Assess calls in progress: each holds one slot
        self.interim_turns = InterimTurns(config.max_interim_decodes, busy=lambda: engine.backlog() > 0)

    @contextlib.contextmanager
    def _slot(self):
        """Admission control for StreamAssess and Assess alike: a slot under max_concurrent_streams, refused
        while the engine's backlog is over max_engine_backlog (adding work would only slow every call)."""
        if self.active_calls >= self.config.max_concurrent_streams:
            raise ResourceExhausted(f"server is at its limit of {self.config.max_concurrent_streams} concurrent "
                                    f"streams; retry after {RETRY_AFTER_MS} ms")
        backlog = self.engine.backlog()
        if backlog > self.config.max_engine_backlog:
            raise ResourceExhausted(f"server is saturated ({backlog} utterances waiting for the engine); "
                                    f"retry after {RETRY_AFTER_MS} ms")
        self.active_calls += 1
        try:
            yield
        finally:
            self.active_calls -= 1

    async def StreamAssess(self, request_iterator, context):
        with self._slot():
            self.metrics.active_streams.inc()
            session = AssessmentSession(self.engine, self.config, self.metrics, lambda: self.active_calls,
                                        self.interim_turns)
            # Read now: touching the context of a call the client already cancelled crashes grpc.aio.
            peer = context.peer()
            started, outcome = time.perf_counter(), "cancelled"
            try:
                async for response in session.run(request_iterator):
                    yield response
                outcome = "ok"
            except StatusError as exc:
                outcome = exc.code.name
                raise
            finally:
                self.metrics.active_streams.dec()
                self.metrics.streams.labels(outcome).inc()
                seconds = round(time.perf_counter() - started, 3)
                log.info("stream closed", extra={"status": outcome, "seconds": seconds, "peer": peer,
                                                 **session.log_fields()})

    async def Assess(self, request: pb.AssessRequest, context) -> pb.AssessResponse:
        outcome = "cancelled"
        try:
            with self._slot():
                settings = audio_settings(request.audio, request.HasField("audio"))
                fields = assessment_fields(request.assessment, self.config, list(self.engine.info.scorers))
                audio = await asyncio.to_thread(self._decode, settings, request.audio_content)  # off the event loop
                response = await self._assess(request, fields, audio)
            outcome = "OK"
            return response
        except (StatusError, EngineError) as exc:
            outcome = status_of(exc)[0].name
            raise
        finally:
            self.metrics.assess_calls.labels(outcome).inc()

    def _decode(self, settings, content: bytes):
        """The whole recording, decoded no further than the longest utterance Assess takes."""
        limit_ms = self.config.max_utterance_ms
        try:
            return decode_all(settings, content, max_samples=(limit_ms + 1) * 16 - 1)
        except OutOfRange:
            raise InvalidArgument(f"audio_content is longer than {limit_ms} ms; Assess takes at most {limit_ms} ms "
                                  "(use StreamAssess for longer audio)") from None

    async def _assess(self, request: pb.AssessRequest, fields: dict, audio) -> pb.AssessResponse:
        duration_ms = len(audio) * 1000 // 16000
        if duration_ms < 100:
            raise InvalidArgument(f"audio_content holds {duration_ms} ms of audio; at least 100 ms is needed")
        if duration_ms > self.config.max_utterance_ms:
            raise InvalidArgument(f"audio_content is {duration_ms} ms long; Assess takes at most "
                                  f"{self.config.max_utterance_ms} ms (use StreamAssess for longer audio)")
        started = time.perf_counter()
        result = await self.engine.assess(AssessmentRequest(
            audio=audio, reference_text=fields["reference_text"], flag_sensitivity=fields["flag_sensitivity"],
            scorer=fields["scorer"]))
        assessment = convert.utterance_assessment(
            result, index=0, start_ms=0, end_ms=duration_ms, cause=EndCause.END_OF_STREAM,
            latency_ms=(time.perf_counter() - started) * 1000, engine=f"{self.engine.info.name} {self.engine.info.version}",
            model_versions=self.engine.info.model_versions)
        return pb.AssessResponse(client_request_id=request.client_request_id, assessment=assessment)

    async def GetCapabilities(self, request, context) -> pb.Capabilities:
        c = self.config
        return pb.Capabilities(
            encodings=list(ENCODINGS), language_codes=list(LANGUAGES),
            limits=pb.Limits(max_message_bytes=c.max_message_bytes, max_stream_ms=c.max_stream_ms,
                             max_utterance_ms=c.max_utterance_ms, max_reference_text_chars=c.max_reference_text_chars,
                             min_sample_rate_hertz=MIN_RATE, max_sample_rate_hertz=MAX_RATE,
                             max_audio_channel_count=MAX_CHANNELS, max_concurrent_streams=c.max_concurrent_streams),
            engine=convert.engine_info(self.engine.info))

