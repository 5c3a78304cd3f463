"""One StreamAssess call: decode -> segment -> engine -> responses, emitted strictly in stream order.

Speech events go out as they happen; interim word results go out while their utterance is still open (late
ones are dropped, the final supersedes them); final assessments go out in utterance order. When the client
goes away every task of the session is cancelled and the engine drops its queued work.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from saywell.engine.api import Engine, UtteranceHandle
from saywell.engine.types import AssessmentRequest, EngineError, InputError, OverloadedError, WordScore
from saywell.server import convert
from saywell.server.audio_decoding import make_decoder
from saywell.server.config import ServerConfig
from saywell.server.errors import InvalidArgument, OutOfRange, StatusError
from saywell.server.interim import InterimState, shifted
from saywell.server.metrics import ServerMetrics
from saywell.server.segmenter import (EndCause, SegmenterOptions, SpeechGap, SpeechPaused, SpeechResumed, SpeechStarted,
                                      UtteranceEnded, VadSegmenter)
from saywell.server.settings import StreamSettings, stream_settings
from saywell.v1 import assessment_pb2 as pb

log = logging.getLogger(__name__)
_END = object()
_NO_AUDIO = np.zeros(0, np.float32)  # an utterance handle's template: the stream's settings without audio


def _log_failure(task: asyncio.Task) -> None:
    """A session task that died of an exception (a bug: expected failures are handled where they happen)."""
    if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), StatusError):
        log.error("session task failed", exc_info=task.exception())


@dataclass
class StreamTotals:
    utterances: int = 0
    errors: int = 0
    total_sum: float = 0.0


class AssessmentSession:
    def __init__(self, engine: Engine, config: ServerConfig, metrics: ServerMetrics,
                 open_streams: Callable[[], int] = lambda: 1) -> None:
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self._open_streams = open_streams  # how many streams the server is serving, this one included
        self.settings: StreamSettings | None = None
        self._out: asyncio.Queue = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._last_final: asyncio.Task | None = None
        self._interim: InterimState | None = None
        self._interim_task: asyncio.Task | None = None
        self._utterance: UtteranceHandle | None = None  # the engine's handle on the utterance being spoken
        self._handles: set[UtteranceHandle] = set()  # every handle whose final is not delivered yet
        self._early: asyncio.Future | None = None  # the engine's early final assessment at the current pause
        self._segmenter: VadSegmenter | None = None
        self._decoder = None
        self._totals = StreamTotals()

    def log_fields(self) -> dict:
        """What a stream's closing log line says: counts and ids, never audio or transcripts."""
        return {"client_request_id": self.settings.client_request_id if self.settings else "",
                "utterances": self._totals.utterances, "utterance_errors": self._totals.errors,
                "audio_ms": self._segmenter.position_ms if self._segmenter else 0}

    # -- output -------------------------------------------------------------------------------------------
    def _emit(self, **event) -> None:
        request_id = self.settings.client_request_id if self.settings else ""
        self._out.put_nowait(pb.StreamAssessResponse(client_request_id=request_id, **event))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    async def run(self, requests: AsyncIterator[pb.StreamAssessRequest]) -> AsyncIterator[pb.StreamAssessResponse]:
        reader = self._spawn(self._consume(requests))
        try:
            while True:
                item = await self._out.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
            await reader
        finally:
            for task in list(self._tasks):
                task.cancel()
            for handle in list(self._handles):
                handle.cancel()

    # -- input --------------------------------------------------------------------------------------------
    async def _consume(self, requests: AsyncIterator[pb.StreamAssessRequest]) -> None:
        failure: StatusError | None = None
        try:
            await self._read(requests)
        except StatusError as exc:
            failure = exc
        # Every utterance already accepted gets its final assessment (or error) before the stream ends.
        if self._last_final is not None:
            await asyncio.wait([self._last_final])
        if failure is not None:
            self._out.put_nowait(failure)
            return
        totals = self._totals
        self._emit(summary=pb.StreamSummary(
            utterances=totals.utterances, utterance_errors=totals.errors,
            audio_ms=self._segmenter.position_ms if self._segmenter else 0,
            mean_total=round(totals.total_sum / totals.utterances, 2) if totals.utterances else 0.0))
        self._out.put_nowait(_END)

    async def _read(self, requests: AsyncIterator[pb.StreamAssessRequest]) -> None:
        async for request in requests:
            kind = request.WhichOneof("request")
            if self.settings is None:
                if kind != "config":
                    raise InvalidArgument(f"the first message must carry config, got {kind or 'an empty request'}")
                self._configure(request.config)
            elif kind == "audio":
                self._on_audio(self._decoder.feed(request.audio))
            elif kind == "end_of_utterance":
                self._on_events(self._segmenter.end_utterance(EndCause.CLIENT))
            elif kind == "config":
                raise InvalidArgument("config may be sent only once, as the first message")
            else:
                raise InvalidArgument("empty request: set audio or end_of_utterance")
        if self.settings is None:
            raise InvalidArgument("empty stream: the first message must carry config")
        try:
            self._on_audio(self._decoder.finish())
        finally:
            self._on_events(self._segmenter.end_utterance(EndCause.END_OF_STREAM))

    def _configure(self, config: pb.StreamingAssessConfig) -> None:
        self.settings = s = stream_settings(config, self.config, list(self.engine.info.scorers))
        self._decoder = make_decoder(s.audio)
        self._segmenter = VadSegmenter(SegmenterOptions(
            aggressiveness=s.vad_aggressiveness, silence_ms=s.end_of_utterance_silence_ms,
            max_utterance_ms=s.max_utterance_ms, min_speech_ms=s.min_speech_ms))

    def _on_audio(self, samples) -> None:
        if not len(samples):
            return
        self.metrics.audio_seconds.inc(len(samples) / 16000)
        self._on_events(self._segmenter.feed(samples))
        if self._segmenter.position_ms > self.config.max_stream_ms:
            raise OutOfRange(f"stream exceeded the server's max_stream_ms of {self.config.max_stream_ms} ms")
        self._maybe_interim()

    def _on_events(self, events: list) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self._interim = InterimState(event.index)
                on_committed = (functools.partial(self._committed_words, self._interim)
                                if self.settings.interim_results else None)
                self._utterance = self.engine.begin_utterance(self._request(_NO_AUDIO), on_committed)
                self._handles.add(self._utterance)
                self._emit(speech_event=pb.SpeechEvent(type=pb.SpeechEvent.SPEECH_STARTED,
                                                       utterance_index=event.index, offset_ms=event.offset_ms))
            elif isinstance(event, SpeechGap):
                self._utterance.silence(self._segmenter.utterance_audio(), event.cut_ms)
            elif isinstance(event, SpeechPaused):
                self._paused(event)
            elif isinstance(event, SpeechResumed):
                self._resumed()
                if self._interim is not None:
                    self._interim.decoded_in_pause = False
            elif isinstance(event, UtteranceEnded):
                self._interim = None
                if self._interim_task is not None:
                    self._interim_task.cancel()
                self._early = None
                self._emit(speech_event=pb.SpeechEvent(type=pb.SpeechEvent.SPEECH_ENDED, utterance_index=event.index,
                                                       offset_ms=event.speech_end_ms,
                                                       cause=convert.END_CAUSES[event.cause]))
                handle, self._utterance = self._utterance, None
                self._last_final = self._spawn(self._final(event, self._last_final, handle))

    def _request(self, audio) -> AssessmentRequest:
        s = self.settings
        return AssessmentRequest(audio=audio, reference_text=s.reference_text, flag_sensitivity=s.flag_sensitivity,
                                 scorer=s.scorer)

    # -- early work at pauses -----------------------------------------------------------------------------
    def _paused(self, event: SpeechPaused) -> None:
        """The engine may start the final assessment at the pause, so an endpoint `silence_ms` later finds it
        (nearly) done; if it does, its words are the best interim results there are while the pause lasts."""
        self._resumed()
        early = self._utterance.paused(event.audio)
        if early is None:
            return
        self.metrics.speculations.labels("started").inc()
        self._early = early
        if not self.settings.reference_text:  # closed mode scores reference words, not the interim ones
            early.add_done_callback(functools.partial(self._early_words, self._interim, event.audio))

    def _resumed(self) -> None:
        self._early = None
        if self._utterance is not None and self._utterance.resumed():
            self.metrics.speculations.labels("dropped").inc()

    def _early_words(self, state: InterimState | None, audio, early: asyncio.Future) -> None:
        if early.cancelled() or early.exception() is not None or self._early is not early:
            return  # speech resumed, or the utterance ended: the final assessment supersedes these words
        if state is not None and self._interim is state:
            self._send_interim(state, list(early.result().words), len(audio) * 1000 // 16000)

    def _words_settled(self, committed: WordScore, following: WordScore | None) -> None:
        """Fluent speech has no silence to cut at: the end of a committed word is the next best place."""
        if not self.config.cut_at_committed_words or self._utterance is None:
            return
        self._utterance.words_settled(self._segmenter.utterance_audio(), committed.end_ms,
                                      following.start_ms if following is not None else None)

    # -- interim words ------------------------------------------------------------------------------------
    def _maybe_interim(self) -> None:
        state = self._interim
        if not (self.settings.interim_results and state and self._segmenter.in_speech):
            return
        if self._interim_task is not None and not self._interim_task.done():
            return
        audio = self._segmenter.utterance_audio()
        audio_ms = len(audio) * 1000 // 16000
        if self._segmenter.paused:
            # One decode at each pause, at once, if a quarter of the step's new audio came since the last: the
            # words just before a pause would otherwise wait for the speculation's full assessment, or for the
            # endpoint's final. (The step grows with the streams open, so under load pauses decode less.)
            if state.decoded_in_pause or audio_ms - state.decoded_ms < self.interim_step_ms() // 4:
                return
            state.decoded_in_pause = True
        elif audio_ms - state.decoded_ms < self.interim_step_ms():
            return
        state.decoded_ms = audio_ms
        window_ms = state.window_start_ms()
        request = AssessmentRequest(audio=audio[window_ms * 16:], flag_sensitivity=self.settings.flag_sensitivity,
                                    scorer=self.settings.scorer)
        self._interim_task = self._spawn(self._interim_words(state, request, window_ms, audio_ms))

    def interim_step_ms(self) -> int:
        """New speech before the next interim decode: the configured step times the streams open to the power
        `interim_step_growth` (by default the square: one stream every 400 ms, two every 1.6 s each), so interim
        decodes give way to the work of finals as streams are added."""
        return round(self.config.interim_step_ms * max(1, self._open_streams()) ** self.config.interim_step_growth)

    async def _interim_words(self, state: InterimState, request: AssessmentRequest, window_ms: int,
                             audio_ms: int) -> None:
        started = time.perf_counter()
        try:
            words = await self.engine.provisional_words(request)
        except EngineError as exc:  # interim results are best effort; the final assessment still comes
            log.warning("interim decode failed: %s", exc)
            return
        self.metrics.interim_latency.observe(time.perf_counter() - started)
        if self._interim is not state:
            return  # the utterance ended meanwhile; its final assessment supersedes these words
        self._send_interim(state, [shifted(w, window_ms) for w in words], audio_ms)

    async def _committed_words(self, state: InterimState, words: tuple[WordScore, ...], settled_ms: int) -> None:
        """Words the engine will not change before the final (a segment analysed at a cut): committed at once."""
        if self._interim is not state:
            return
        tail = self._emit_after_committed(state, list(words), len(words))
        state.commit_segment(len(tail), settled_ms)

    def _emit_after_committed(self, state: InterimState, words: list[WordScore], committing: int) -> list[WordScore]:
        """Send the words after the committed ones, the first `committing` of them as committed; returns them."""
        tail = state.after_committed(words)
        offset_ms = self._segmenter.utterance_start_ms()
        for i, word in enumerate(tail):
            self._emit(word_result=convert.word_result(word, utterance_index=state.utterance_index,
                                                       word_index=state.committed + i, offset_ms=offset_ms,
                                                       committed=i < committing))
        return tail

    def _send_interim(self, state: InterimState, words: list[WordScore], audio_ms: int) -> None:
        """Send the words after the committed ones; commit those two decodes agree on, clear of the live edge."""
        tail = state.after_committed(words)
        stable = state.agreed(tail, audio_ms)
        self._emit_after_committed(state, tail, stable)
        state.commit_decoded(tail, stable)
        cut_after = state.settled(tail, audio_ms) if self.config.cut_at_settled_words else stable
        if cut_after:
            self._words_settled(tail[cut_after - 1], tail[cut_after] if cut_after < len(tail) else None)

    # -- final assessments --------------------------------------------------------------------------------
    async def _final(self, event: UtteranceEnded, previous: asyncio.Task | None, handle: UtteranceHandle) -> None:
        endpoint = time.perf_counter()
        s = self.settings
        request = self._request(event.audio)
        try:
            try:
                result = await handle.finish(event.audio)
            finally:
                self._handles.discard(handle)
            if handle.path == "early":
                self.metrics.speculations.labels("used").inc()
            latency_ms = (time.perf_counter() - endpoint) * 1000
            log.debug("final assessment", extra={
                "utterance_index": event.index, "audio_ms": request.duration_ms, "latency_ms": round(latency_ms),
                "path": handle.path, "cause": event.cause.value})
            message = {"utterance": convert.utterance_assessment(
                result, index=event.index, start_ms=event.start_ms, end_ms=event.start_ms + request.duration_ms,
                cause=event.cause, latency_ms=latency_ms, engine=f"{self.engine.info.name} {self.engine.info.version}",
                model_versions=self.engine.info.model_versions)}
        except EngineError as exc:
            code = ("RESOURCE_EXHAUSTED" if isinstance(exc, OverloadedError) else
                    "INVALID_ARGUMENT" if isinstance(exc, InputError) else "INTERNAL")
            log.warning("utterance %d failed: %s", event.index, exc)
            message = {"utterance_error": pb.UtteranceError(utterance_index=event.index, code=code, message=str(exc))}
        except Exception as exc:  # a bug must still end the utterance with an explicit error, not silence
            log.exception("utterance %d failed unexpectedly", event.index)
            message = {"utterance_error": pb.UtteranceError(
                utterance_index=event.index, code="INTERNAL", message=f"internal error: {type(exc).__name__}")}
        if previous is not None:
            await asyncio.wait([previous])
        if "utterance" in message and self.config.log_transcripts:
            log.info("utterance assessed", extra={"utterance_index": event.index,
                                                  "transcript": message["utterance"].transcript,
                                                  "reference_text": s.reference_text,
                                                  "total": round(message["utterance"].scores.total, 2)})
        if "utterance" in message:
            self._totals.utterances += 1
            self._totals.total_sum += message["utterance"].scores.total
            self.metrics.utterances.labels("assessed").inc()
            self.metrics.final_latency.observe(latency_ms / 1000)
        else:
            self._totals.errors += 1
            self.metrics.utterances.labels("failed").inc()
        self._emit(**message)
