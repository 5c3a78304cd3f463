"""Incoming audio to 16 kHz mono float32, chunk by chunk: PCM directly, containers progressively."""
from __future__ import annotations

import io

import numpy as np

from saywell.server.errors import InvalidArgument
from saywell.server.settings import AudioSettings
from saywell.v1 import assessment_pb2 as pb

TARGET_RATE = 16_000
REDECODE_BYTES = 4096  # containers are re-read once this much new data has arrived


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "error_string", "") or exc).strip()


class _Resampler:
    def __init__(self, rate: int, channels: int) -> None:
        self.rate = rate
        self.channels = channels
        self._stream = None
        if rate != TARGET_RATE:
            import soxr

            self._stream = soxr.ResampleStream(rate, TARGET_RATE, 1, dtype="float32")

    def __call__(self, frames: np.ndarray, last: bool = False) -> np.ndarray:
        mono = frames.reshape(-1, self.channels).mean(axis=1, dtype=np.float32) if frames.size else \
            np.zeros(0, np.float32)
        if self._stream is None:
            return mono
        return self._stream.resample_chunk(mono, last=last)


class Linear16Decoder:
    """Raw little-endian int16; a chunk may split a sample frame, the remainder waits for the next chunk."""

    def __init__(self, settings: AudioSettings) -> None:
        self.frame_bytes = 2 * settings.channels
        self._carry = b""
        self._resample = _Resampler(settings.sample_rate_hertz, settings.channels)
        self.input_rate = settings.sample_rate_hertz

    def feed(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        usable = len(data) - len(data) % self.frame_bytes
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
        return self._resample(samples)

    def finish(self) -> np.ndarray:
        if self._carry:
            leftover, self._carry = len(self._carry), b""
            raise InvalidArgument(f"LINEAR16 audio ended with {leftover} byte(s) that do not make a whole "
                                  f"sample frame ({self.frame_bytes} bytes per frame): truncated or odd-length PCM")
        return self._resample(np.zeros(0, np.float32), last=True)


class ContainerDecoder:
    """FLAC, Ogg/Opus or WAV bytes: re-read the growing buffer and hand out the samples not yet seen.

    Re-reading costs O(n^2) bytes over a stream but stays cheap at speech bit rates and stream limits;
    it needs no codec state of its own.
    """

    def __init__(self, settings: AudioSettings) -> None:
        self.settings = settings
        self._buffer = bytearray()
        self._emitted = 0  # frames at the input rate already handed out
        self._since_decode = 0
        self._resample: _Resampler | None = None
        self.input_rate = settings.sample_rate_hertz

    def _decode(self, final: bool) -> np.ndarray:
        import soundfile as sf

        name = pb.AudioEncoding.Name(self.settings.encoding)
        try:
            with sf.SoundFile(io.BytesIO(bytes(self._buffer))) as audio:
                self._check_header(audio.samplerate, audio.channels, name)
                blocks = []
                try:
                    audio.seek(self._emitted)
                    # Block by block: an incomplete tail fails only the last block, not what came before.
                    for block in audio.blocks(blocksize=4096, dtype="float32", always_2d=True):
                        blocks.append(block)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    if final:
                        raise InvalidArgument(f"{name} audio is corrupted: {_reason(exc)}") from None
        except sf.LibsndfileError as exc:
            if final:
                raise InvalidArgument(f"{name} audio could not be decoded: {_reason(exc)}") from None
            return np.zeros(0, np.float32)
        frames = np.concatenate(blocks) if blocks else np.zeros((0, self.settings.channels), np.float32)
        self._emitted += len(frames)
        return self._resample(frames.reshape(-1), last=final)

    def _check_header(self, rate: int, channels: int, name: str) -> None:
        expected_rate = self.settings.sample_rate_hertz
        if expected_rate and rate != expected_rate:
            raise InvalidArgument(f"{name} header says {rate} Hz but config.audio.sample_rate_hertz is {expected_rate}")
        if self.settings.channels != 1 and channels != self.settings.channels:
            raise InvalidArgument(f"{name} header says {channels} channel(s) but config.audio.audio_channel_count "
                                  f"is {self.settings.channels}")
        if not 8000 <= rate <= 48000:
            raise InvalidArgument(f"{name} audio at {rate} Hz is out of range 8000..48000")
        if self._resample is None:
            self._resample = _Resampler(rate, channels)
            self.input_rate = rate

    def feed(self, data: bytes) -> np.ndarray:
        self._buffer.extend(data)
        self._since_decode += len(data)
        if self._since_decode < REDECODE_BYTES:
            return np.zeros(0, np.float32)
        self._since_decode = 0
        return self._decode(final=False)

    def finish(self) -> np.ndarray:
        if not self._buffer:
            return np.zeros(0, np.float32)
        return self._decode(final=True)


def make_decoder(settings: AudioSettings) -> Linear16Decoder | ContainerDecoder:
    if settings.encoding == pb.LINEAR16:
        return Linear16Decoder(settings)
    return ContainerDecoder(settings)


def decode_all(settings: AudioSettings, data: bytes) -> np.ndarray:
    decoder = make_decoder(settings)
    head = decoder.feed(data)
    return np.concatenate([head, decoder.finish()])
