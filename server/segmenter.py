"""Cuts a 16 kHz stream into utterances with webrtcvad: speech start, end on silence, forced cut at max length."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

RATE = 16_000
FRAME_MS = 30
FRAME_SAMPLES = RATE * FRAME_MS // 1000


class EndCause(enum.Enum):
    SILENCE = "silence"
    MAX_LENGTH = "max_length"
    CLIENT = "client"
    END_OF_STREAM = "end_of_stream"


@dataclass(frozen=True)
class SegmenterOptions:
    aggressiveness: int = 2
    silence_ms: int = 700
    max_utterance_ms: int = 20_000
    min_speech_ms: int = 120
    pre_roll_ms: int = 300  # audio kept before the detected start: onsets are quiet
    tail_ms: int = 200  # silence kept after the last speech: word ends fade
    gap_ms: int = 150  # a silence this long inside an utterance is a place to cut it for early analysis


@dataclass(frozen=True)
class SpeechStarted:
    index: int
    offset_ms: int


@dataclass(frozen=True)
class SpeechPaused:
    """Silence has lasted `tail_ms`: if it lasts until the endpoint, the utterance is exactly this audio."""

    index: int
    audio: np.ndarray


@dataclass(frozen=True)
class SpeechGap:
    """A short silence inside the utterance (`gap_ms`): audio before `cut_ms` (from the utterance start) will
    not change, and a cut there falls between words, so it can be analysed while the learner goes on."""

    index: int
    cut_ms: int


@dataclass(frozen=True)
class SpeechResumed:
    """Speech came back after a SpeechPaused: the paused audio is no longer the utterance."""

    index: int


@dataclass(frozen=True)
class UtteranceEnded:
    index: int
    start_ms: int  # stream offset of audio[0]
    speech_end_ms: int  # stream offset where the last speech ended
    audio: np.ndarray
    cause: EndCause


def _ms(samples: int) -> int:
    return samples * 1000 // RATE


class VadSegmenter:
    def __init__(self, options: SegmenterOptions = SegmenterOptions()) -> None:
        import webrtcvad

        self.options = options
        self._vad = webrtcvad.Vad(options.aggressiveness)
        self._pending = np.zeros(0, np.float32)  # not yet a whole frame
        self._chunks: list[np.ndarray] = []  # audio since _buf_start
        self._buf_start = 0  # stream sample of the first buffered sample
        self._pos = 0  # stream samples classified so far
        self._voiced_run = 0
        self._silent_run = 0
        self._voiced_since_end = 0
        self._start: int | None = None  # stream sample where the current utterance starts
        self._last_voiced_end = 0
        self._paused = False
        self.index = 0
        self._start_frames = math.ceil(options.min_speech_ms / FRAME_MS)
        self._end_frames = math.ceil(options.silence_ms / FRAME_MS)
        self._pause_frames = math.ceil(options.tail_ms / FRAME_MS)
        self._gap_frames = math.ceil(options.gap_ms / FRAME_MS)

    @property
    def in_speech(self) -> bool:
        return self._start is not None

    @property
    def paused(self) -> bool:
        """In an utterance, silent for at least `tail_ms`: no new words are coming for now."""
        return self._paused

    @property
    def position_ms(self) -> int:
        return _ms(self._pos)

    def utterance_audio(self) -> np.ndarray:
        """Audio of the utterance in progress (empty when idle)."""
        if self._start is None:
            return np.zeros(0, np.float32)
        return self._slice(self._start, self._pos)

    def utterance_ms(self) -> int:
        """Length of the utterance in progress (0 when idle), without copying its audio."""
        return 0 if self._start is None else _ms(self._pos - self._start)

    def utterance_start_ms(self) -> int:
        return _ms(self._start or 0)

    def _slice(self, start: int, end: int) -> np.ndarray:
        audio = np.concatenate(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = [audio] if audio.size else []
        return audio[start - self._buf_start:end - self._buf_start]

    def _drop_before(self, sample: int) -> None:
        if sample <= self._buf_start:
            return
        audio = self._slice(self._buf_start, self._pos)
        self._chunks = [audio[sample - self._buf_start:]]
        self._buf_start = sample

    def feed(self, samples: np.ndarray) -> list:
        events: list = []
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n_frames = len(data) // FRAME_SAMPLES
        # Copies, not views: a view keeps its whole chunk alive, and one message may decode to minutes of audio
        # of which only the pre-roll is kept.
        self._pending = data[n_frames * FRAME_SAMPLES:].copy()
        for i in range(n_frames):
            frame = data[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].copy()
            self._chunks.append(frame)
            self._pos += FRAME_SAMPLES
            pcm = (np.clip(frame, -1, 1) * 32767).astype("<i2").tobytes()
            events.extend(self._step(self._vad.is_speech(pcm, RATE)))
        return events

    def _step(self, voiced: bool) -> list:
        if voiced:
            self._voiced_run += 1
            self._silent_run = 0
            self._voiced_since_end += 1
            self._last_voiced_end = self._pos
        else:
            self._voiced_run = 0
            self._silent_run += 1
        if self._start is None:
            if self._voiced_run >= self._start_frames:
                onset = self._pos - self._voiced_run * FRAME_SAMPLES
                return [self._begin(max(onset - self.options.pre_roll_ms * RATE // 1000, self._buf_start))]
            keep = self._pos - (self.options.pre_roll_ms + self.options.min_speech_ms + FRAME_MS) * RATE // 1000
            self._drop_before(max(keep, self._buf_start))
            return []
        if voiced and self._paused:
            self._paused = False
            return [SpeechResumed(self.index)]
        if self._silent_run >= self._end_frames:
            return [self._end(self._trimmed_end(), EndCause.SILENCE)]
        if self._silent_run == self._gap_frames < self._pause_frames:
            cut = self._pos - self._silent_run * FRAME_SAMPLES // 2  # the middle of the gap so far
            return [SpeechGap(self.index, _ms(cut - self._start))]
        if self._silent_run == self._pause_frames:
            self._paused = True
            return [SpeechPaused(self.index, self._slice(self._start, self._trimmed_end()).copy())]
        if _ms(self._pos - self._start) >= self.options.max_utterance_ms:
            # Idle again: if the learner keeps talking, the start rule fires on the next voiced frame.
            return [self._end(self._pos, EndCause.MAX_LENGTH)]
        return []

    def _trimmed_end(self) -> int:
        """Where an utterance ending now is cut: `tail_ms` after its last speech, or now if that is later."""
        return min(self._last_voiced_end + self.options.tail_ms * RATE // 1000, self._pos)

    def _begin(self, start: int) -> SpeechStarted:
        self._drop_before(start)
        self._start = start
        return SpeechStarted(self.index, _ms(start))

    def _end(self, end: int, cause: EndCause) -> UtteranceEnded:
        start = self._start if self._start is not None else self._buf_start
        audio = self._slice(start, end).copy()
        speech_end = min(self._last_voiced_end, end)
        event = UtteranceEnded(self.index, _ms(start), _ms(max(speech_end, start)), audio, cause)
        self.index += 1
        self._start = None
        self._paused = False
        self._voiced_since_end = 0
        self._drop_before(end)
        return event

    def end_utterance(self, cause: EndCause) -> list:
        """Client end-of-utterance or end of stream: what was heard since the last utterance is one now."""
        if self._pending.size:
            self._chunks.append(self._pending)
            self._pos += len(self._pending)
            self._pending = np.zeros(0, np.float32)
        if self._start is not None:  # cut where the endpoint would have: the paused audio stays valid
            return [self._end(self._trimmed_end() if self._paused else self._pos, cause)]
        if self._voiced_since_end > 0:  # speech too short for the VAD's start rule still counts when asked
            return [self._begin(self._buf_start), self._end(self._pos, cause)]
        return []
