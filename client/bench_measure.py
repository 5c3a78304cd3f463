"""What a load test measures, from two timelines per stream: when audio was sent, when answers came.

All times are seconds of one monotonic clock; stream offsets are milliseconds of the audio as sent, which is
what the server's offsets count too, so "when had the audio up to offset X been sent" is a lookup.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from saywell.client.hdr import LatencyHistogram
from saywell.v1 import assessment_pb2 as pb

__all__ = ["RunStats", "SendTimeline", "ResponseTracker", "MID_UTTERANCE_CUT_MS"]

# A SPEECH_ENDED this far before the end of the utterance audio that contains it was a cut inside the
# audio (a pause in a long recording, MAX_LENGTH): its own offset is then the last speech sample.
MID_UTTERANCE_CUT_MS = 300


@dataclass
class RunStats:
    """Everything one run (or ramp stage) measured, over all its streams."""

    final_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    endpointing_delay: LatencyHistogram = field(default_factory=LatencyHistogram)
    word_flag_lag: LatencyHistogram = field(default_factory=LatencyHistogram)
    first_response: LatencyHistogram = field(default_factory=LatencyHistogram)
    server_latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # as the server reports it
    utterances: int = 0
    errors: Counter = field(default_factory=Counter)
    audio_seconds_sent: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class SendTimeline:
    """When one stream sent what: chunk end offsets with their wall times, and where its utterances lie."""

    def __init__(self) -> None:
        self._end_ms: list[float] = []
        self._sent_at: list[float] = []
        self._utterances: list[tuple[float, float]] = []  # (start_ms, end_ms), in order
        self.first_speech_at: float | None = None

    def add_utterance(self, start_ms: float, end_ms: float) -> None:
        self._utterances.append((start_ms, end_ms))

    def record_chunk(self, end_ms: float, sent_at: float) -> None:
        """Audio up to stream offset `end_ms` had left the client at `sent_at`."""
        self._end_ms.append(end_ms)
        self._sent_at.append(sent_at)
        if self.first_speech_at is None and self._utterances and end_ms > self._utterances[0][0]:
            self.first_speech_at = sent_at

    def sent_at(self, offset_ms: float) -> float | None:
        """When the audio up to `offset_ms` had been sent (the latest send if it has not yet); None: nothing sent."""
        if not self._sent_at:
            return None
        i = bisect.bisect_left(self._end_ms, offset_ms)
        return self._sent_at[min(i, len(self._sent_at) - 1)]

    def last_speech_ms(self, event_offset_ms: float) -> float:
        """Stream offset of the last speech sample before a SPEECH_ENDED at `event_offset_ms`.

        That is the end of the utterance audio the event falls in (or follows), unless the event lies well
        inside that audio (the VAD cut it there), in which case it is the event's own offset.
        """
        starts = [start for start, _ in self._utterances]
        i = bisect.bisect_right(starts, event_offset_ms) - 1
        if i < 0:
            return event_offset_ms
        end_ms = self._utterances[i][1]
        return end_ms if event_offset_ms >= end_ms - MID_UTTERANCE_CUT_MS else event_offset_ms


class ResponseTracker:
    """Turns one stream's responses, stamped with their receipt time, into RunStats samples (in ms)."""

    def __init__(self, timeline: SendTimeline, stats: RunStats) -> None:
        self.timeline = timeline
        self.stats = stats
        self._ended_at: dict[int, float] = {}
        self._word_results: dict[int, list[HeardWord]] = {}  # per open utterance, in order of receipt
        self._answered = False

    def on_response(self, response: pb.StreamAssessResponse, received_at: float) -> None:
        if not self._answered:
            self._answered = True
            start = self.timeline.first_speech_at
            if start is not None:
                self.stats.first_response.record(_ms(received_at - start))
        kind = response.WhichOneof("event")
        if kind == "speech_event":
            self._on_speech_event(response.speech_event, received_at)
        elif kind == "interim_result":
            self._on_interim(response.interim_result, received_at)
        elif kind == "utterance":
            ended_at = self._ended_at.pop(response.utterance.utterance_index, None)
            self._on_final_words(response.utterance, received_at)
            self.stats.utterances += 1
            self.stats.server_latency.record(response.utterance.processing.latency_ms)
            if ended_at is not None:
                self.stats.final_latency.record(_ms(received_at - ended_at))
        elif kind == "utterance_error":
            self._ended_at.pop(response.utterance_error.utterance_index, None)
            self._word_results.pop(response.utterance_error.utterance_index, None)
            self.stats.errors[response.utterance_error.code or "UNKNOWN"] += 1

    def on_stream_error(self, code_name: str) -> None:
        self.stats.errors[code_name] += 1

    def _on_speech_event(self, event: pb.SpeechEvent, received_at: float) -> None:
        if event.type != pb.SPEECH_EVENT_TYPE_ENDED:
            return
        self._ended_at[event.utterance_index] = received_at
        if event.cause != pb.ENDPOINT_CAUSE_SILENCE:
            return  # endpointed by a cut, the client or the half-close: not the VAD's silence decision
        sent = self.timeline.sent_at(self.timeline.last_speech_ms(event.offset_ms))
        if sent is not None:
            self.stats.endpointing_delay.record(_ms(received_at - sent))

    def _on_interim(self, result: pb.InterimResult, received_at: float) -> None:
        heard = self._word_results.setdefault(result.utterance_index, [])
        for word in list(result.stable_words) + list(result.provisional_words):
            heard.append(HeardWord(word.start_ms, word.end_ms, received_at))

    def _on_final_words(self, utterance: pb.UtteranceAssessment, received_at: float) -> None:
        """One word-flag lag sample per word of the final assessment (omitted reference words aside): from the
        send of the audio up to the word's end to the first interim word (stable or provisional) covering it, or
        to this final when none came first. Interim words no final word matches (a decode's passing
        hallucination) are not words of the audio and give no sample."""
        results = self._word_results.pop(utterance.utterance_index, [])
        for word in utterance.words:
            if word.end_ms <= word.start_ms:
                continue
            sent = self.timeline.sent_at(word.end_ms)
            if sent is None:
                continue
            answered = next((r.received_at for r in results if r.covers(word.start_ms, word.end_ms)), received_at)
            self.stats.word_flag_lag.record(max(_ms(answered - sent), 0.0))


@dataclass(frozen=True)
class HeardWord:
    """An interim word as received: its span in the stream and when it came."""

    start_ms: int
    end_ms: int
    received_at: float

    def covers(self, start_ms: int, end_ms: int) -> bool:
        """It is about the word spanning start..end: either one's middle lies inside the other."""
        return (start_ms <= (self.start_ms + self.end_ms) / 2 <= end_ms
                or self.start_ms <= (start_ms + end_ms) / 2 <= self.end_ms)


def _ms(seconds: float) -> float:
    return seconds * 1000.0
