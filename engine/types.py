"""Plain result and request types of the engine: frozen, gRPC-free, cheap to pass between threads.

Times are milliseconds relative to the start of the utterance's audio; the server shifts them to stream
offsets at its edge.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000
FRAME_MS = 10  # pocketsphinx's frame: the default of an Alignment's frame_ms


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
    ends_sentence: bool = False  # the recogniser closed a sentence after it (".", "?" or "!")


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
    # Diagnosis: phones a free phone recogniser heard over this phone's span with the share of the span each
    # covers, most first (at most 3); "SIL" for silence. Empty when the profile has no phone recogniser.
    heard: tuple[tuple[str, float], ...] = ()


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

    def shifted(self, ms: int) -> "WordScore":
        """The word with its times (and its phones') moved `ms` later."""
        if not ms:
            return self
        phones = tuple(dataclasses.replace(p, start_ms=p.start_ms + ms, end_ms=p.end_ms + ms) for p in self.phones)
        return dataclasses.replace(self, start_ms=self.start_ms + ms, end_ms=self.end_ms + ms, phones=phones)


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


@dataclass(frozen=True)
class Capabilities:
    interim_words: bool = True  # provisional_words gives words while the learner speaks
    phones: bool = True  # word results carry phones with goodness
    open_mode: bool = True  # assessment without a reference text
    closed_mode: bool = True  # assessment against a reference text
    assessment: bool = True  # False: placeholder scores for load testing the serving path, not an assessment
    phone_diagnosis: bool = False  # phones carry `heard`: what a phone recogniser heard over each phone


@dataclass(frozen=True)
class EngineInfo:
    profile: str  # registry name, e.g. "cpu"
    backend: str  # where the models run, e.g. "local"
    name: str  # engine name shown to clients, e.g. "saywell-cpu"
    version: str  # the saywell package version
    scorers: tuple[str, ...]  # the default first
    model_versions: Mapping[str, str] = field(default_factory=dict)
    capabilities: Capabilities = field(default_factory=Capabilities)


class EngineError(RuntimeError):
    """An utterance could not be assessed; the message says which stage failed and why."""


class InputError(EngineError):
    """The input cannot be assessed as sent (a client's matter, not a fault of the engine): the message says
    what to change."""


class OverloadedError(EngineError):
    """A stage queue is full: the caller should back off and retry."""


class UnavailableError(EngineError):
    """A service the engine depends on (a Triton Inference Server) cannot be reached or timed out: the
    utterance failed, the stream goes on, and a retry may succeed once the service is back (gRPC UNAVAILABLE)."""
