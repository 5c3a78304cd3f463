"""Plain result and request types of the engine: frozen, gRPC-free, cheap to pass between threads.

Times are milliseconds relative to the start of the utterance's audio; the server shifts them to stream
offsets at its edge.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000
FRAME_MS = 10  # pocketsphinx frame


class WordErrorType(enum.Enum):
    NONE = "none"
    MISPRONUNCIATION = "mispronunciation"
    OMISSION = "omission"
    INSERTION = "insertion"


@dataclass(frozen=True)
class AssessmentRequest:
    """One utterance to assess: 16 kHz mono float32 audio in [-1, 1] and what to compare it with."""

    audio: np.ndarray = field(repr=False)
    reference_text: str = ""  # empty: open-response mode
    flag_sensitivity: float = 0.5  # 0..1, higher flags more words
    scorer: str = ""  # empty: the engine's default

    @property
    def closed(self) -> bool:
        return bool(self.reference_text.strip())

    @property
    def duration_ms(self) -> int:
        return int(round(len(self.audio) * 1000 / SAMPLE_RATE))


@dataclass(frozen=True)
class RecognizedWord:
    """A word from ASR, normalised to the lexicon's spelling."""

    text: str
    start_ms: int
    end_ms: int
    probability: float = 1.0


@dataclass(frozen=True)
class Transcript:
    text: str  # raw recogniser output
    words: tuple[RecognizedWord, ...]
    # Whisper encoder output over the unpadded audio, (frames, dim), 20 ms per frame; when asked for.
    encoder: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class PhoneScore:
    phone: str  # ARPAbet without stress digit
    start_ms: int
    end_ms: int
    goodness: float  # GOP, nats per frame, <= ~0
    accuracy: float  # 0..2


@dataclass(frozen=True)
class WordScore:
    text: str
    start_ms: int
    end_ms: int
    accuracy: float  # 0..10
    stress: float  # 0..10
    total: float  # 0..10
    error_type: WordErrorType
    needs_improvement: bool
    phones: tuple[PhoneScore, ...] = ()


@dataclass(frozen=True)
class SentenceScores:
    accuracy: float
    fluency: float
    prosody: float
    total: float
    completeness: float | None = None  # closed mode only


@dataclass(frozen=True)
class UtteranceResult:
    transcript: str
    reference_text: str
    scores: SentenceScores
    words: tuple[WordScore, ...]
    scorer: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> wall ms


class EngineError(RuntimeError):
    """An utterance could not be assessed; the message says which stage failed and why."""


class OverloadedError(EngineError):
    """A stage queue is full: the caller should back off and retry."""
