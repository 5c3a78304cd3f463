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
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from saywell.engine.api import Engine, UtteranceHandle, match_reference, normalize_words
from saywell.engine.types import AssessmentRequest, EngineError, WordScore
from saywell.server import convert
from saywell.server.audio_decoding import make_decoder
from saywell.server.config import ServerConfig
from saywell.server.errors import (DeadlineExceeded, Internal, InvalidArgument, OutOfRange, ResourceExhausted,
                                   StatusError, Unparsable, status_of)
from saywell.server.interim import InterimState
from saywell.server.interim_turns import InterimTurns
from saywell.server.metrics import ServerMetrics
from saywell.server.segmenter import (EndCause, SegmenterOptions, SpeechGap, SpeechPaused, SpeechResumed, SpeechStarted,
                                      UtteranceEnded, VadSegmenter)
from saywell.server.settings import StreamSettings, stream_settings
from saywell.v1 import assessment_pb2 as pb

log = logging.getLogger(__name__)
_END = object()
_NO_AUDIO = np.zeros(0, np.float32)  # an utterance handle's template: the stream's settings without audio
MESSAGE_RATE_WINDOW_S = 10  # max_messages_per_second is an average over this long


class MessageRate:
    """A token bucket: `per_second` messages a second on average, bursts of up to `per_second * window_s`."""

    def __init__(self, per_second: float, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.capacity = per_second * window_s
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()

    def take(self) -> bool:
        """Counts one message; False when it is over the rate."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class StreamTotals:
    utterances: int = 0
    errors: int = 0
    total_sum: float = 0.0


class AssessmentSession:
    def __init__(self, engine: Engine, config: ServerConfig, metrics: ServerMetrics,
                 open_streams: Callable[[], int] = lambda: 1, turns: InterimTurns | None = None) -> None:
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self._open_streams = open_streams  # how many streams the server is serving, this one included
        self._turns = turns if turns is not None else InterimTurns(0)  # server-wide turns for interim decodes
        self._closing = False  # the stream is over: no new interim decode starts
        self.settings: StreamSettings | None = None
        self._out: asyncio.Queue = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._last_final: asyncio.Task | None = None
        self._interim: InterimState | None = None
        self._interim_task: asyncio.Task | None = None
        self._utterance: UtteranceHandle | None = None  # the engine's handle on the utterance being spoken
        self._handles: set[UtteranceHandle] = set()  # every handle whose final is not delivered yet
        self._early: asyncio.Future | None = None  # the engine's early final assessment at the current pause
        self._reference_words: list[str] = []  # closed mode: interim words point at these
        self._segmenter: VadSegmenter | None = None
        self._decoder = None
        self._totals = StreamTotals()
        self._closed_audio_ms = 0
        self._pending_finals: deque[asyncio.Task] = deque()  # finals not yet delivered, oldest first
        rate = config.max_messages_per_second
        self._rate = MessageRate(rate, MESSAGE_RATE_WINDOW_S) if rate else None

    def log_fields(self) -> dict:
        """What a stream's closing log line says: counts and ids, never audio or transcripts."""
        return {"client_request_id": self.settings.client_request_id if self.settings else "",
                "utterances": self._totals.utterances, "utterance_errors": self._totals.errors,
                "audio_ms": self._audio_ms()}

    def _audio_ms(self) -> int:
        return self._segmenter.position_ms if self._segmenter else self._closed_audio_ms

    # -- output -------------------------------------------------------------------------------------------
    def _emit(self, **event) -> None:
        request_id = self.settings.client_request_id if self.settings else ""
        self._out.put_nowait(pb.StreamAssessResponse(client_request_id=request_id, **event))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._log_failure)
        return task

    def _log_failure(self, task: asyncio.Task) -> None:
        """A session task that died of an exception: a bug, unless it was a status or engine error, which whoever
        awaits the task reports."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, (StatusError, EngineError)):
            log.info("session task ended: %s", exc, extra=self._ids())
        else:
            log.error("session task failed", exc_info=exc, extra=self._ids())

    def _ids(self) -> dict:
        return {"client_request_id": self.settings.client_request_id if self.settings else ""}

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
            self._stop_interims()
            for task in list(self._tasks):
                task.cancel()
            for handle in list(self._handles):
                handle.cancel()
            # Once the reader has stopped: a cancelled task may still run to its next await (a request iterator
            # that ended as the client went away lets it reach the final decode first).
            if reader.done():
                self._release()
            else:
                reader.add_done_callback(lambda _: self._release())

    def _stop_interims(self) -> None:
        """No interim decode starts any more for this stream (it ended, or its input failed); a turn it waits for
        passes to the next stream."""
        self._closing = True
        self._turns.withdraw(self)

    def _release(self) -> None:
        """Lets go of the stream's audio state at once. asyncio's exceptions make reference cycles (a task, its
        exception's traceback, the frames that awaited it) that keep a finished session alive until the next
        full garbage collection, which an idle server may not run for long: the decoder's resampler alone holds
        native buffers as large as the largest message it decoded (measured: +128 MB per stream for a 20-minute
        Ogg/Opus message, never returned while the server idled)."""
        self._closed_audio_ms = self._audio_ms()
        self._interim = self._early = None  # late callbacks of cancelled work find nothing to send
        self._decoder = None
        self._segmenter = None

    # -- input --------------------------------------------------------------------------------------------
    async def _consume(self, requests: AsyncIterator[pb.StreamAssessRequest]) -> None:
        failure: StatusError | None = None
        try:
            await self._read(requests)
        except Exception as exc:  # every failure ends the stream with a status, and frees its slot
            failure = self._stream_failure(exc)
            self._stop_interims()  # the finals already accepted still come; no new words for a stream that failed
        # Every utterance already accepted gets its final assessment (or error) before the stream ends.
        if self._last_final is not None:
            await asyncio.wait([self._last_final])
        if failure is not None:
            self._out.put_nowait(failure)
            return
        totals = self._totals
        self._emit(summary=pb.StreamSummary(
            utterances=totals.utterances, utterance_errors=totals.errors,
            audio_ms=self._audio_ms(),
            mean_total=round(totals.total_sum / totals.utterances, 2) if totals.utterances else 0.0))
        self._out.put_nowait(_END)

    def _stream_failure(self, exc: Exception) -> StatusError:
        """The status a failed read ends the stream with. The client's errors are logged at INFO (the status
        tells the client); anything else is a bug: ERROR, with its traceback."""
        if isinstance(exc, DecodeError):  # what grpc.aio raises when a request's bytes are not a valid message
            exc = Unparsable()
        if isinstance(exc, StatusError):
            log.info("stream input refused", extra={"status": exc.code.name, "reason": exc.message, **self._ids()})
            return exc
        log.error("stream reader failed", exc_info=exc, extra=self._ids())
        return Internal(f"internal error: {type(exc).__name__}")

    async def _read(self, requests: AsyncIterator[pb.StreamAssessRequest]) -> None:
        messages = aiter(requests)
        while (request := await self._next_request(messages)) is not None:
            self._count_message()
            await self._handle(request)
            await self._throttle()
        if self.settings is None:
            raise InvalidArgument("empty stream: the first message must carry config")
        try:
            self._on_audio(await self._decode(None))
        finally:
            self._dispatch(self._segmenter.end_utterance(EndCause.END_OF_STREAM))

    async def _next_request(self, messages: AsyncIterator[pb.StreamAssessRequest]) -> pb.StreamAssessRequest | None:
        """The next request, or None once the client has closed its side; a client silent for too long ends the
        stream (it would hold its slot for ever)."""
        configured = self.settings is not None
        timeout = self.config.idle_timeout_s if configured else self.config.config_timeout_s
        try:
            if not timeout:
                return await anext(messages)
            return await asyncio.wait_for(anext(messages), timeout)
        except StopAsyncIteration:
            return None
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"no audio for {timeout:g} s" if configured else
                                   f"no config within {timeout:g} s of the stream opening") from None

    def _count_message(self) -> None:
        """Applies max_messages_per_second: a message costs CPU however little audio it carries."""
        if self._rate is not None and not self._rate.take():
            raise ResourceExhausted(
                f"stream exceeded the server's max_messages_per_second of {self.config.max_messages_per_second} "
                f"(averaged over {MESSAGE_RATE_WINDOW_S} s): send audio in chunks of 20 ms or more")

    async def _decode(self, data: bytes | None):
        """Samples of `data` (None: the stream's end). FLAC and Ogg/Opus decode on a worker thread: a small
        compressed message may expand to minutes of audio, and the event loop serves every stream."""
        decode = self._decoder.finish if data is None else functools.partial(self._decoder.feed, data)
        try:
            if self.settings.audio.encoding in (pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG_OPUS):
                return await asyncio.to_thread(decode)
            return decode()
        except OutOfRange:
            raise self._too_long() from None

    def _too_long(self) -> OutOfRange:
        return OutOfRange(f"stream exceeded the server's max_stream_ms of {self.config.max_stream_ms} ms")

    async def _handle(self, request: pb.StreamAssessRequest) -> None:
        kind = request.WhichOneof("request")
        if self.settings is None:
            if kind != "config":
                raise InvalidArgument(f"the first message must carry config, got {kind or 'an empty request'}")
            self._configure(request.config)
        elif kind == "audio":
            if request.audio:  # an empty one is only counted (max_messages_per_second)
                self._on_audio(await self._decode(request.audio))
        elif kind == "end_of_utterance":
            self._dispatch(self._segmenter.end_utterance(EndCause.CLIENT))
        elif kind == "config":
            raise InvalidArgument("config may be sent only once, as the first message")
        else:
            raise InvalidArgument("empty request: set audio or end_of_utterance")

    async def _throttle(self) -> None:
        """Reads no more while max_pending_finals_per_stream finals are in flight: the stream waits for its oldest
        (HTTP/2 flow control then holds the sender back), so a client faster than real time cannot flood the
        engine. Finals complete in utterance order."""
        pending = self._pending_finals
        while pending and pending[0].done():
            pending.popleft()
        while len(pending) >= self.config.max_pending_finals_per_stream:
            await asyncio.wait([pending.popleft()])

    def _configure(self, config: pb.StreamingAssessConfig) -> None:
        self.settings = s = stream_settings(config, self.config, list(self.engine.info.scorers))
        self._reference_words = normalize_words(s.reference_text)
        # Compressed audio stops decoding a little past max_stream_ms, whatever its bytes expand to (a message of
        # PCM holds at most max_message_bytes of samples; the segmenter's check ends the stream at the limit).
        compressed = s.audio.encoding in (pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG_OPUS)
        self._decoder = make_decoder(s.audio, max_samples=(self.config.max_stream_ms + 1000) * 16 if compressed else None)
        self._segmenter = VadSegmenter(SegmenterOptions(
            aggressiveness=s.vad_aggressiveness, silence_ms=s.end_of_utterance_silence_ms,
            max_utterance_ms=s.max_utterance_ms, min_speech_ms=s.min_speech_ms))

    def _on_audio(self, samples) -> None:
        if not len(samples):
            return
        self.metrics.audio_seconds.inc(len(samples) / 16000)
        self._dispatch(self._segmenter.feed(samples))
        if self._segmenter.position_ms > self.config.max_stream_ms:
            raise self._too_long()
        self._maybe_interim()

    def _dispatch(self, events: list) -> None:
        """The segmenter's events to `_on_events` one at a time, keeping each utterance's final as it starts."""
        for event in events:
            self._on_events([event])
            if isinstance(event, UtteranceEnded):
                self._pending_finals.append(self._last_final)

    def _on_events(self, events: list) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self._interim = InterimState(event.index)
                on_committed = (functools.partial(self._committed_words, self._interim)
                                if self.settings.interim_results else None)
                self._utterance = self.engine.begin_utterance(self._request(_NO_AUDIO), on_committed)
                self._handles.add(self._utterance)
                self._emit(speech_event=pb.SpeechEvent(type=pb.SPEECH_EVENT_TYPE_STARTED,
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
                self._turns.withdraw(self)
                if self._interim_task is not None:
                    self._interim_task.cancel()
                self._early = None
                self._emit(speech_event=pb.SpeechEvent(type=pb.SPEECH_EVENT_TYPE_ENDED, utterance_index=event.index,
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
        """Asks for a turn to decode when the step's new speech came (or at a pause); the decode itself reads the
        audio when the turn starts."""
        if self._interim_due():
            self._turns.request(self, self._start_interim)

    def _interim_due(self) -> bool:
        state = self._interim
        if self._closing or not (self.settings.interim_results and state and self._segmenter.in_speech):
            return False
        if self._interim_task is not None and not self._interim_task.done():
            return False
        audio_ms = self._segmenter.utterance_ms()
        if self._segmenter.paused:
            # One decode at each pause, at once, if a quarter of the step's new audio came since the last: the
            # words just before a pause would otherwise wait for the speculation's full assessment, or for the
            # endpoint's final. (The step grows with the streams open, so under load pauses decode less.)
            return not state.decoded_in_pause and audio_ms - state.decoded_ms >= self.interim_step_ms() // 4
        return audio_ms - state.decoded_ms >= self.interim_step_ms()

    def _start_interim(self) -> bool:
        """The stream's turn: decode the utterance's live window as it is now. False if there is nothing to
        decode any more (the utterance ended or its decode is already running)."""
        state = self._interim
        if not self._interim_due():
            return False
        audio = self._segmenter.utterance_audio()
        audio_ms = len(audio) * 1000 // 16000
        if self._segmenter.paused:
            state.decoded_in_pause = True
        state.decoded_ms = audio_ms
        window_ms = state.window_start_ms()
        request = AssessmentRequest(audio=audio[window_ms * 16:], flag_sensitivity=self.settings.flag_sensitivity,
                                    scorer=self.settings.scorer)
        self._interim_task = self._spawn(self._interim_words(state, request, window_ms, audio_ms))
        self._interim_task.add_done_callback(lambda _: self._turns.release())
        return True

    def interim_step_ms(self) -> int:
        """New speech before the next interim decode: the configured step times the streams open to the power
        `interim_step_growth` (by default 1: one stream every 400 ms, two every 800 ms each), so interim decodes
        give way to the work of finals as streams are added."""
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
        self._send_interim(state, [w.shifted(window_ms) for w in words], audio_ms)

    async def _committed_words(self, state: InterimState, words: tuple[WordScore, ...], settled_ms: int) -> None:
        """Words the engine will not change before the final (a segment analysed at a cut): stable at once; the
        provisional words after the segment stay the tail."""
        if self._interim is not state:
            return
        stable = state.after_committed(list(words))
        self._emit_interim(state, stable, state.tail_after(settled_ms))
        state.commit_segment(stable, settled_ms)

    def _emit_interim(self, state: InterimState, stable: list[WordScore], provisional: list[WordScore]) -> None:
        """One InterimResult: `stable` continues the stable words, `provisional` replaces the tail (nothing is
        sent when neither changes)."""
        if not stable and provisional == state.provisional:
            return
        words = stable + provisional
        references: list[int | None] = [None] * len(words)
        if self._reference_words:  # closed mode: which reference word each recognised word stands for
            references = match_reference(self._reference_words, state.stable_texts + [w.text for w in words])
            references = references[len(state.stable_texts):]
        offset_ms = self._segmenter.utterance_start_ms()
        sent = [convert.interim_word(w, word_index=state.committed + i, offset_ms=offset_ms,
                                     reference_index=references[i]) for i, w in enumerate(words)]
        self._emit(interim_result=pb.InterimResult(utterance_index=state.utterance_index,
                                                   stable_words=sent[:len(stable)],
                                                   provisional_words=sent[len(stable):]))

    def _send_interim(self, state: InterimState, words: list[WordScore], audio_ms: int) -> None:
        """Send the words after the committed ones; commit those two decodes agree on, clear of the live edge."""
        tail = state.after_committed(words)
        stable = state.agreed(tail, audio_ms)
        self._emit_interim(state, tail[:stable], tail[stable:])
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
            code = status_of(exc)[0].name
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
