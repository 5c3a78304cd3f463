"""Incoming audio to 16 kHz mono float32, chunk by chunk: PCM and WAV as they arrive, FLAC and Ogg/Opus by
re-reading their growing buffer.

Every decoder bounds what a stream can cost: output length (`max_samples`, checked block by block so a small
compressed file cannot expand into gigabytes before anyone looks), header size (`HEADER_LIMIT_BYTES`) and, for the
formats that must keep their bytes, buffered size (`max_buffered_bytes`). Decoders hold no shared state: one caller
at a time may drive each from any thread.
"""
from __future__ import annotations

import io
import struct

import numpy as np

from saywell.server.errors import InvalidArgument, OutOfRange, ResourceExhausted
from saywell.server.settings import MAX_CHANNELS, AudioSettings
from saywell.v1 import assessment_pb2 as pb

TARGET_RATE = 16_000
BLOCK_FRAMES = 4096  # FLAC/Ogg decode this many frames at a time, checking the length limit between blocks
HEADER_LIMIT_BYTES = 64 * 1024  # a container's header (and a WAV's other chunks) must fit in this many bytes
MAX_BUFFERED_BYTES = 32 * 1024 * 1024  # default cap on the bytes a FLAC/Ogg stream keeps for re-reading
REDECODE_BYTES = 4096  # FLAC/Ogg are re-read once this much new data has arrived...
REDECODE_FRACTION = 16  # ...and 1/16 of the buffer, so re-reading stays amortised on long streams...
REDECODE_MAX_SECONDS = 1.0  # ...but never more than about this much audio, so audio keeps flowing
_WAV_FORMATS = {1: "PCM", 3: "IEEE float", 6: "A-law", 7: "mu-law"}


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "error_string", "") or exc).strip()


def _check_length(name: str, frames: int, rate: int, max_samples: int | None) -> None:
    """OutOfRange once `frames` at `rate` come to more than `max_samples` at 16 kHz; callers check before they
    convert or keep more frames, so a limit costs at most one block past it."""
    if max_samples is not None and frames * TARGET_RATE > max_samples * rate:
        raise OutOfRange(f"{name} audio runs past the limit of {max_samples * 1000 // TARGET_RATE} ms")


def _check_header(settings: AudioSettings, name: str, rate: int, channels: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidArgument(f"{name} header says {channels} channel(s); at most {MAX_CHANNELS} are accepted")
    expected_rate = settings.sample_rate_hertz
    if expected_rate and rate != expected_rate:
        raise InvalidArgument(f"{name} header says {rate} Hz but config.audio.sample_rate_hertz is {expected_rate}")
    if settings.channels != 1 and channels != settings.channels:
        raise InvalidArgument(f"{name} header says {channels} channel(s) but config.audio.audio_channel_count "
                              f"is {settings.channels}")
    if not 8000 <= rate <= 48000:
        raise InvalidArgument(f"{name} audio at {rate} Hz is out of range 8000..48000")


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


def encoding_name(encoding: int) -> str:
    """The encoding's name without its enum prefix, as errors and logs say it ("LINEAR16")."""
    return pb.AudioEncoding.Name(encoding).removeprefix("AUDIO_ENCODING_")


class Linear16Decoder:
    """Raw little-endian int16; a chunk may split a sample frame, the remainder waits for the next chunk."""

    def __init__(self, settings: AudioSettings, max_samples: int | None = None) -> None:
        self.name = encoding_name(settings.encoding)
        self.frame_bytes = 2 * settings.channels
        self.input_rate = settings.sample_rate_hertz
        self.max_samples = max_samples
        self.input_frames = 0  # frames at the input rate handed out so far
        self.bytes_read = 0
        self._carry = b""
        self._resample = _Resampler(settings.sample_rate_hertz, settings.channels)

    @property
    def buffered_bytes(self) -> int:
        return len(self._carry)

    def feed(self, data: bytes) -> np.ndarray:
        self.bytes_read += len(data)
        data = self._carry + data if self._carry else data
        frames = len(data) // self.frame_bytes
        usable = frames * self.frame_bytes
        self._carry = bytes(data[usable:])
        _check_length(self.name, self.input_frames + frames, self.input_rate, self.max_samples)
        self.input_frames += frames
        samples = np.frombuffer(data, dtype="<i2", count=usable // 2).astype(np.float32) / 32768.0
        return self._resample(samples)

    def finish(self) -> np.ndarray:
        if self._carry:
            leftover, self._carry = len(self._carry), b""
            raise InvalidArgument(f"{self.name} audio ended with {leftover} byte(s) that do not make a whole "
                                  f"sample frame ({self.frame_bytes} bytes per frame): truncated or odd-length PCM")
        return self._resample(np.zeros(0, np.float32), last=True)


class WavDecoder:
    """RIFF/WAVE carrying 16-bit PCM: the header is parsed here, then the `data` payload streams through a
    Linear16Decoder, so a WAV costs linear time and keeps no bytes once they are decoded."""

    def __init__(self, settings: AudioSettings, max_samples: int | None = None) -> None:
        self.settings = settings
        self.max_samples = max_samples
        self.input_rate = settings.sample_rate_hertz
        self.bytes_read = 0
        self._head = bytearray()  # unparsed header bytes
        self._head_seen = 0  # header bytes consumed so far
        self._skip = 0  # bytes of a chunk being skipped still to come
        self._fmt: tuple[int, int] | None = None  # (rate, channels) once the fmt chunk is parsed
        self._pcm: Linear16Decoder | None = None
        self._payload_left: int | None = None  # data bytes still due; None: up to the end of the stream
        self._trailer = 0  # bytes after the data chunk, skipped

    @property
    def input_frames(self) -> int:
        return self._pcm.input_frames if self._pcm else 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._head) + (self._pcm.buffered_bytes if self._pcm else 0)

    def feed(self, data: bytes) -> np.ndarray:
        if self._pcm is None:
            self._head += data
            self._parse_header()
            if self._pcm is None:
                return np.zeros(0, np.float32)
            data, self._head = bytes(self._head), bytearray()
        if self._payload_left is not None:
            self._trailer += max(0, len(data) - self._payload_left)
            if self._trailer > HEADER_LIMIT_BYTES:
                raise InvalidArgument(f"WAV audio carries over {HEADER_LIMIT_BYTES} bytes after its data chunk")
            data = data[:self._payload_left]
            self._payload_left -= len(data)
        self.bytes_read += len(data)
        return self._pcm.feed(data)

    def finish(self) -> np.ndarray:
        if self._pcm is None:
            if not self._head_seen and not self._head:
                return np.zeros(0, np.float32)
            raise InvalidArgument("WAV audio could not be decoded: the stream ended inside its header")
        return self._pcm.finish()

    def _parse_header(self) -> None:
        """Consume whole RIFF chunks from `_head` until the data chunk starts; other chunks are skipped."""
        head = self._head
        while self._pcm is None:
            if self._skip:
                taken = min(self._skip, len(head))
                self._consume(taken)
                self._skip -= taken
                if self._skip:
                    break
            if not self._head_seen:
                if len(head) < 12:
                    break
                if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                    kind = head[:4].decode() if head[:4] in (b"RF64", b"RIFX") else "not RIFF/WAVE"
                    raise InvalidArgument(f"WAV audio could not be decoded: header is {kind}; a little-endian "
                                          f"RIFF/WAVE file is accepted")
                self._consume(12)
                continue
            if len(head) < 8:
                break
            chunk_id, size = struct.unpack_from("<4sI", head)
            if chunk_id == b"data":
                if self._fmt is None:
                    raise InvalidArgument("WAV audio could not be decoded: the data chunk comes before fmt")
                self._consume(8)
                self._payload_left = None if size in (0, 0xFFFFFFFF) else size
                rate, channels = self._fmt
                self._pcm = Linear16Decoder(AudioSettings(pb.AUDIO_ENCODING_WAV, rate, channels), self.max_samples)
                self.input_rate = rate
            elif chunk_id == b"fmt ":
                if size + 8 > HEADER_LIMIT_BYTES or len(head) < size + 8:
                    break
                self._fmt = self._parse_fmt(bytes(head[8:8 + size]))
                self._consume(8 + size)
                self._skip = size & 1
            else:
                self._consume(8)
                self._skip = size + (size & 1)
        if self._pcm is None and self._head_seen + len(head) > HEADER_LIMIT_BYTES:
            raise InvalidArgument(f"WAV audio could not be decoded: its header did not parse within "
                                  f"{HEADER_LIMIT_BYTES} bytes")

    def _consume(self, count: int) -> None:
        del self._head[:count]
        self._head_seen += count
        self.bytes_read += count

    def _parse_fmt(self, fmt: bytes) -> tuple[int, int]:
        if len(fmt) < 16:
            raise InvalidArgument(f"WAV audio could not be decoded: fmt chunk of {len(fmt)} bytes is too short")
        tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
        if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag
            tag = struct.unpack_from("<H", fmt, 24)[0]
        if tag != 1 or bits != 16:
            kind = _WAV_FORMATS.get(tag, f"format 0x{tag:04x}")
            raise InvalidArgument(f"WAV header says {bits}-bit {kind}; WAV audio must be 16-bit PCM "
                                  f"(send other sample formats as FLAC)")
        _check_header(self.settings, "WAV", rate, channels)
        if block_align != 2 * channels:
            raise InvalidArgument(f"WAV header says {block_align} bytes per frame; 16-bit PCM with {channels} "
                                  f"channel(s) has {2 * channels}")
        return rate, channels


class _BufferFile:
    """Read-only file over a bytearray: libsndfile reads what it needs, not a copy of the whole buffer per re-read.
    Counts the bytes it hands out."""

    def __init__(self, data: bytearray) -> None:
        self._data = data
        self._pos = 0
        self.bytes_read = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, out) -> int:
        chunk = self._data[self._pos:self._pos + len(out)]
        out[:len(chunk)] = chunk
        self._pos += len(chunk)
        self.bytes_read += len(chunk)
        return len(chunk)


class ContainerDecoder:
    """FLAC or Ogg/Opus: reopen the growing buffer, seek past the frames already handed out, decode the rest.

    These formats need their header and a seekable whole, so their bytes stay buffered (at most
    `max_buffered_bytes`). A re-read reads the header, the tail and a seek search, not the whole buffer: a
    bounded cost (150-600 kB measured) however long the stream, so spacing re-reads keeps a stream linear.
    """

    def __init__(self, settings: AudioSettings, max_samples: int | None = None,
                 max_buffered_bytes: int = MAX_BUFFERED_BYTES) -> None:
        self.settings = settings
        self.name = encoding_name(settings.encoding)
        self.max_samples = max_samples
        self.max_buffered_bytes = max_buffered_bytes
        self.input_rate = settings.sample_rate_hertz
        self.input_frames = 0  # frames at the input rate already handed out
        self.bytes_read = 0  # bytes libsndfile has read, over all re-reads
        self._buffer = bytearray()
        self._since_decode = 0
        self._resample: _Resampler | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def _decode(self, final: bool) -> np.ndarray:
        import soundfile as sf

        source = _BufferFile(self._buffer)
        blocks = []
        try:
            with sf.SoundFile(source) as audio:
                if self._resample is None:
                    _check_header(self.settings, self.name, audio.samplerate, audio.channels)
                    self._resample = _Resampler(audio.samplerate, audio.channels)
                    self.input_rate = audio.samplerate
                try:
                    audio.seek(self.input_frames)
                    # Block by block: an incomplete tail fails only the last block, and the length limit is
                    # checked before more than a block past it is decoded.
                    while len(block := audio.read(BLOCK_FRAMES, dtype="float32", always_2d=True)):
                        _check_length(self.name, self.input_frames + len(block), self.input_rate, self.max_samples)
                        blocks.append(block)
                        self.input_frames += len(block)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    if final:
                        raise InvalidArgument(f"{self.name} audio is corrupted: {_reason(exc)}") from None
        except sf.LibsndfileError as exc:
            if final:
                raise InvalidArgument(f"{self.name} audio could not be decoded: {_reason(exc)}") from None
        finally:
            self.bytes_read += source.bytes_read
        if self._resample is None:
            return np.zeros(0, np.float32)
        frames = np.concatenate(blocks) if blocks else np.zeros((0, self._resample.channels), np.float32)
        return self._resample(frames.reshape(-1), last=final)

    def _redecode_gap(self) -> int:
        """New bytes to wait for before a re-read: a share of the buffer amortises a re-read's fixed cost, capped at
        about REDECODE_MAX_SECONDS of audio at the bit rate so far, so audio is never much more than that behind."""
        gap = len(self._buffer) // REDECODE_FRACTION
        if self.input_frames:
            per_second = len(self._buffer) * self.input_rate / self.input_frames
            gap = min(gap, int(per_second * REDECODE_MAX_SECONDS))
        return max(REDECODE_BYTES, gap)

    def feed(self, data: bytes) -> np.ndarray:
        if len(self._buffer) + len(data) > self.max_buffered_bytes:
            raise ResourceExhausted(f"{self.name} streams may buffer at most {self.max_buffered_bytes} bytes of "
                                    f"audio; stream long audio as LINEAR16, which is decoded as it arrives")
        self._buffer += data
        self._since_decode += len(data)
        header_due = self._resample is None and len(self._buffer) > HEADER_LIMIT_BYTES
        if self._since_decode < self._redecode_gap() and not header_due:
            return np.zeros(0, np.float32)
        self._since_decode = 0
        samples = self._decode(final=False)
        if self._resample is None and len(self._buffer) > HEADER_LIMIT_BYTES:
            raise InvalidArgument(f"{self.name} audio could not be decoded: its header did not parse within "
                                  f"{HEADER_LIMIT_BYTES} bytes")
        return samples

    def finish(self) -> np.ndarray:
        if not self._buffer:
            return np.zeros(0, np.float32)
        samples = self._decode(final=True)
        self._buffer = bytearray()
        return samples


def make_decoder(settings: AudioSettings, max_samples: int | None = None,
                 max_buffered_bytes: int = MAX_BUFFERED_BYTES) -> Linear16Decoder | WavDecoder | ContainerDecoder:
    """`max_samples` caps the output (16 kHz samples; None: unlimited); `max_buffered_bytes` caps what a FLAC or
    Ogg/Opus stream may hold for re-reading (LINEAR16 and WAV keep at most a partial frame)."""
    if settings.encoding == pb.AUDIO_ENCODING_LINEAR16:
        return Linear16Decoder(settings, max_samples)
    if settings.encoding == pb.AUDIO_ENCODING_WAV:
        return WavDecoder(settings, max_samples)
    return ContainerDecoder(settings, max_samples, max_buffered_bytes)


def decode_all(settings: AudioSettings, data: bytes, max_samples: int | None = None) -> np.ndarray:
    decoder = make_decoder(settings, max_samples)
    head = decoder.feed(data)
    return np.concatenate([head, decoder.finish()])
