"""Read local audio files into something a stream can send.

Everything soundfile can decode becomes 16-bit PCM (LINEAR16), so the client can
pace it at real time and cut it into chunks of a known duration. Ogg/Opus and
FLAC may instead be passed through as container bytes (`decode=False`), which is
what a browser or mobile SDK would send.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from saywell.client.errors import AudioFileError
from saywell.v1 import assessment_pb2 as pb

__all__ = ["AudioSource", "load_audio", "chunks", "chunk_bytes", "MIN_CHUNK_MS", "MAX_CHUNK_MS"]

MIN_CHUNK_MS = 20
MAX_CHUNK_MS = 200

# Container encodings a file can be passed through as, by suffix.
_PASSTHROUGH = {".opus": pb.AUDIO_ENCODING_OGG_OPUS, ".ogg": pb.AUDIO_ENCODING_OGG_OPUS, ".oga": pb.AUDIO_ENCODING_OGG_OPUS, ".flac": pb.AUDIO_ENCODING_FLAC}


@dataclass(frozen=True)
class AudioSource:
    """Audio ready to stream.

    `data` is interleaved little-endian int16 PCM when `encoding` is LINEAR16,
    otherwise the file's bytes in that container encoding.
    """

    encoding: int
    sample_rate_hertz: int
    channels: int
    data: bytes
    duration_s: float
    path: str = ""

    @property
    def is_pcm(self) -> bool:
        return self.encoding == pb.AUDIO_ENCODING_LINEAR16

    @property
    def pcm(self) -> np.ndarray:
        """PCM samples as int16, shape (frames, channels). LINEAR16 only."""
        if not self.is_pcm:
            raise AudioFileError(f"{self.path or 'audio'} holds container bytes, not PCM")
        return np.frombuffer(self.data, dtype="<i2").reshape(-1, self.channels)

    def audio_config(self) -> pb.AudioConfig:
        """The AudioConfig message describing this audio."""
        return pb.AudioConfig(
            encoding=self.encoding,
            sample_rate_hertz=self.sample_rate_hertz,
            audio_channel_count=self.channels,
        )


def load_audio(path: str | Path, *, decode: bool = True) -> AudioSource:
    """Read an audio file (WAV, FLAC, Ogg/Opus, anything libsndfile reads).

    decode=True (default) yields LINEAR16 PCM. decode=False keeps .flac/.ogg/.opus
    files as container bytes (encoding FLAC or OGG_OPUS); other files are decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioFileError(f"no such audio file: {p}")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioFileError(f"cannot read {p} as audio: {e}") from e
    duration_s = info.frames / info.samplerate if info.samplerate else 0.0
    encoding = _PASSTHROUGH.get(p.suffix.lower())
    if not decode and encoding is not None:
        return AudioSource(encoding, info.samplerate, info.channels, p.read_bytes(), duration_s, str(p))
    try:
        samples, rate = sf.read(str(p), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioFileError(f"cannot decode {p}: {e}") from e
    data = np.ascontiguousarray(samples, dtype="<i2").tobytes()
    return AudioSource(pb.AUDIO_ENCODING_LINEAR16, int(rate), int(samples.shape[1]), data, len(samples) / rate, str(p))


def chunk_bytes(source: AudioSource, chunk_ms: int) -> int:
    """Bytes in one chunk of `chunk_ms` (whole PCM frames; pro rata for containers)."""
    _check_chunk_ms(chunk_ms)
    if source.is_pcm:
        frames = max(1, source.sample_rate_hertz * chunk_ms // 1000)
        return frames * source.channels * 2
    if source.duration_s <= 0:
        return max(1, len(source.data))
    return max(1, int(len(source.data) * chunk_ms / (source.duration_s * 1000)))


def chunks(source: AudioSource, chunk_ms: int = 100) -> Iterator[bytes]:
    """Split the audio into pieces of `chunk_ms` (20..200); the last may be shorter."""
    size = chunk_bytes(source, chunk_ms)  # validates now, not on first next()
    return _split(source.data, size)


def _split(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _check_chunk_ms(chunk_ms: int) -> None:
    if not isinstance(chunk_ms, int) or not MIN_CHUNK_MS <= chunk_ms <= MAX_CHUNK_MS:
        raise ValueError(f"chunk_ms must be an integer from {MIN_CHUNK_MS} to {MAX_CHUNK_MS}, got {chunk_ms!r}")
