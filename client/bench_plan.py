"""What each load-test stream says and when: a corpus of utterances, a seeded plan, real-time pacing.

Plans are made up front from a seeded random generator, so a run with the same --seed sends the same audio
in the same order; only the server's answers (and the wall clock) differ.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from saywell.client.errors import AudioFileError

__all__ = [
    "AUDIO_SUFFIXES",
    "BenchCorpus",
    "BenchUtterance",
    "Pacer",
    "PlanSegment",
    "find_audio_files",
    "load_corpus",
    "plan_stream",
    "segment_chunks",
]

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".opus", ".ogg", ".oga"})
TARGET_RATE = 16000
LEAD_IN_S = (0.2, 2.0)  # silence before a stream's first utterance: staggers streams that start together
GAP_S = (0.8, 2.0)  # silence between utterances, as a learner pauses between answers
MIN_TAIL_S = 1.2  # silence after the last utterance: enough for the VAD to endpoint it (default 700 ms)


@dataclass(frozen=True)
class BenchUtterance:
    """One recording as mono int16 PCM at the corpus rate."""

    name: str
    pcm: np.ndarray

    def duration_s(self, rate: int) -> float:
        return len(self.pcm) / rate


@dataclass(frozen=True)
class BenchCorpus:
    """Utterances to stream, all at one sample rate (the files' own when they agree, else 16 kHz)."""

    sample_rate_hertz: int
    utterances: tuple[BenchUtterance, ...]


def find_audio_files(root: str | Path) -> list[Path]:
    """Audio files under `root`, recursively, sorted; a speechocean762 folder is read from its audio/."""
    base = Path(root)
    if not base.is_dir():
        raise AudioFileError(f"--data {base} is not a folder")
    if (base / "audio").is_dir():
        base = base / "audio"
    return sorted(p for p in base.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def load_corpus(root: str | Path, *, max_files: int = 200, seed: int = 0) -> BenchCorpus:
    """Decode up to `max_files` files (a seeded sample when there are more) to mono LINEAR16."""
    files = find_audio_files(root)
    if not files:
        raise AudioFileError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) under {root}")
    if len(files) > max_files:
        files = sorted(random.Random(seed).sample(files, max_files))
    decoded = [_read_mono(p) for p in files]
    rates = {rate for _, rate in decoded}
    rate = rates.pop() if len(rates) == 1 else TARGET_RATE
    utterances = tuple(
        BenchUtterance(str(path), resample(samples, source_rate, rate))
        for path, (samples, source_rate) in zip(files, decoded)
        if len(samples)
    )
    if not utterances:
        raise AudioFileError(f"every audio file under {root} is empty")
    return BenchCorpus(rate, utterances)


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioFileError(f"cannot decode {path}: {e}") from e
    return samples.mean(axis=1), int(rate)


def resample(samples: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    """Float samples in -1..1 at `source_rate` -> int16 at `rate` (linear interpolation: enough for load)."""
    if source_rate != rate and len(samples):
        n = max(1, round(len(samples) * rate / source_rate))
        samples = np.interp(np.arange(n) * (source_rate / rate), np.arange(len(samples)), samples)
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")


@dataclass(frozen=True)
class PlanSegment:
    """A stretch of one stream's audio: an utterance (`utterance` set) or silence, in stream samples."""

    start: int
    length: int
    utterance: BenchUtterance | None = None

    @property
    def end(self) -> int:
        return self.start + self.length

    def samples(self) -> np.ndarray:
        return self.utterance.pcm if self.utterance is not None else np.zeros(self.length, dtype="<i2")


def plan_stream(
    corpus: BenchCorpus, rng: random.Random, duration_s: float, realtime_factor: float
) -> list[PlanSegment]:
    """Lead-in silence, then utterance, gap, utterance, ... and a closing silence.

    Utterances keep coming while the next one would end within `duration_s` of wall time at the given pace
    (the first always comes), so a stream half-closes at about `duration_s` after a silence that lets the
    server endpoint its last utterance.
    """
    rate = corpus.sample_rate_hertz
    segments = [PlanSegment(0, round(rng.uniform(*LEAD_IN_S) * rate))]
    position = segments[0].end
    while True:
        utterance = rng.choice(corpus.utterances)
        ends_s = (position + len(utterance.pcm)) / rate / realtime_factor
        if len(segments) > 1 and ends_s > duration_s:
            break
        segments.append(PlanSegment(position, len(utterance.pcm), utterance))
        position += len(utterance.pcm)
        gap = PlanSegment(position, round(rng.uniform(*GAP_S) * rate))
        segments.append(gap)
        position = gap.end
    last = segments[-1]
    segments[-1] = PlanSegment(last.start, max(last.length, round(MIN_TAIL_S * rate)))
    return segments


def segment_chunks(segment: PlanSegment, chunk_samples: int) -> Iterator[tuple[int, np.ndarray]]:
    """(stream sample offset after the chunk, chunk) for one segment."""
    samples = segment.samples()
    for start in range(0, segment.length, chunk_samples):
        piece = samples[start : start + chunk_samples]
        yield segment.start + start + len(piece), piece


class Pacer:
    """When a chunk may leave: like a microphone, once its audio has been spoken, sped up by `realtime_factor`.

    `start` is the wall time (seconds, any monotonic clock) the stream's first sample was spoken.
    """

    def __init__(self, start: float, sample_rate_hertz: int, realtime_factor: float) -> None:
        if realtime_factor <= 0:
            raise ValueError(f"realtime_factor must be > 0, got {realtime_factor}")
        self.start = start
        self.rate = sample_rate_hertz
        self.realtime_factor = realtime_factor

    def due(self, end_sample: int) -> float:
        """Wall time at which the audio up to stream sample `end_sample` has been spoken."""
        return self.start + end_sample / self.rate / self.realtime_factor
