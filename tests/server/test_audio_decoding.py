import io
import pathlib
import struct

import numpy as np
import pytest
import soundfile as sf

from saywell.server.audio_decoding import decode_all, make_decoder
from saywell.server.errors import InvalidArgument, OutOfRange, ResourceExhausted
from saywell.server.settings import AudioSettings
from saywell.v1 import assessment_pb2 as pb

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


def fox(dtype="float32"):
    audio, rate = sf.read(FIXTURES / "fox.wav", dtype=dtype)
    return audio, rate


def feed_in_pieces(decoder, data: bytes, size: int) -> np.ndarray:
    parts = [decoder.feed(data[i:i + size]) for i in range(0, len(data), size)]
    parts.append(decoder.finish())
    return np.concatenate(parts)


def test_linear16_chunks_that_split_samples_are_reassembled_exactly():
    audio, _ = fox("int16")
    decoded = feed_in_pieces(make_decoder(AudioSettings(pb.AUDIO_ENCODING_LINEAR16, 16000, 1)), audio.tobytes(), 333)
    np.testing.assert_allclose(decoded, audio / 32768.0, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_linear16_is_resampled_to_16k_keeping_duration(rate):
    import soxr
    audio, _ = fox()
    resampled = (soxr.resample(audio, 16000, rate) * 32767).astype("<i2")
    decoded = feed_in_pieces(make_decoder(AudioSettings(pb.AUDIO_ENCODING_LINEAR16, rate, 1)), resampled.tobytes(), 2000)
    assert abs(len(decoded) - len(audio)) <= 16000 * 0.01
    assert np.corrcoef(decoded[:len(audio) - 200], audio[:len(audio) - 200])[0, 1] > 0.9


def test_stereo_is_mixed_down_to_mono():
    audio, _ = fox("int16")
    stereo = np.stack([audio, np.zeros_like(audio)], axis=1)
    decoded = decode_all(AudioSettings(pb.AUDIO_ENCODING_LINEAR16, 16000, 2), stereo.tobytes())
    assert len(decoded) == len(audio)
    np.testing.assert_allclose(decoded, audio / 32768.0 / 2, atol=1e-4)


def test_truncated_pcm_is_an_error_at_the_end():
    audio, _ = fox("int16")
    decoder = make_decoder(AudioSettings(pb.AUDIO_ENCODING_LINEAR16, 16000, 1))
    decoder.feed(audio.tobytes() + b"\x01")
    with pytest.raises(InvalidArgument, match="1 byte"):
        decoder.finish()


@pytest.mark.parametrize("fmt, subtype, encoding", [("OGG", "OPUS", pb.AUDIO_ENCODING_OGG_OPUS), ("FLAC", "PCM_16", pb.AUDIO_ENCODING_FLAC),
                                                    ("WAV", "PCM_16", pb.AUDIO_ENCODING_WAV)])
def test_containers_decode_progressively_to_the_whole_signal(fmt, subtype, encoding):
    audio, rate = fox()
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    decoder = make_decoder(AudioSettings(encoding, 0, 1))
    data = buffer.getvalue()
    early = [decoder.feed(data[i:i + 1500]) for i in range(0, len(data), 1500)]
    assert sum(len(e) for e in early) > 0, "audio should arrive before the stream ends"
    decoded = np.concatenate(early + [decoder.finish()])
    assert len(decoded) == len(audio)
    if encoding != pb.AUDIO_ENCODING_OGG_OPUS:  # lossless
        np.testing.assert_allclose(decoded, audio, atol=1e-4)


def test_container_rate_must_match_a_declared_rate():
    audio, rate = fox()
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="FLAC")
    with pytest.raises(InvalidArgument, match="header says 16000 Hz but config.audio.sample_rate_hertz is 8000"):
        decode_all(AudioSettings(pb.AUDIO_ENCODING_FLAC, 8000, 1), buffer.getvalue())


def test_corrupted_compressed_audio_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="OGG_OPUS audio could not be decoded"):
        decode_all(AudioSettings(pb.AUDIO_ENCODING_OGG_OPUS, 0, 1), b"OggS" + bytes(range(256)) * 20)
    with pytest.raises(InvalidArgument, match="FLAC audio"):
        decode_all(AudioSettings(pb.AUDIO_ENCODING_FLAC, 0, 1), b"not flac at all" * 400)


# -- limits and costs (reliability audit) ---------------------------------------------------------------------

def encode(audio, rate, fmt, subtype="PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def riff(*chunks: tuple[bytes, bytes], data_size: int | None = None) -> bytes:
    """A RIFF/WAVE file from (id, body) chunks, odd bodies padded; `data_size` overrides the data chunk's size."""
    body = b"WAVE"
    for chunk_id, payload in chunks:
        size = data_size if chunk_id == b"data" and data_size is not None else len(payload)
        body += chunk_id + struct.pack("<I", size) + payload + b"\0" * (len(payload) % 2)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt_chunk(rate=16000, channels=1, bits=16, tag=1) -> tuple[bytes, bytes]:
    align = channels * bits // 8
    return b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def test_wav_streams_through_other_chunks_split_anywhere_and_ignores_trailing_chunks():
    audio, _ = fox("int16")
    data = riff(fmt_chunk(), (b"LIST", b"x" * 333), (b"data", audio.tobytes()), (b"id3 ", b"y" * 1001))
    decoded = feed_in_pieces(make_decoder(AudioSettings(pb.AUDIO_ENCODING_WAV, 0, 1)), data, 7)
    np.testing.assert_allclose(decoded, audio / 32768.0, atol=1e-6)
    # A data chunk of unknown size (0 or 0xFFFFFFFF, as streaming writers leave it) runs to the end of the stream.
    for size in (0, 0xFFFFFFFF):
        unsized = riff(fmt_chunk(), (b"data", audio.tobytes()), data_size=size)
        assert len(decode_all(AudioSettings(pb.AUDIO_ENCODING_WAV, 0, 1), unsized)) == len(audio)


def test_wav_is_decoded_in_linear_time_keeping_no_decoded_bytes():
    stereo = np.zeros((20 * 48000, 2), np.float32)
    stereo[:, 0] = np.sin(np.arange(len(stereo)) / 20)
    data = encode(stereo, 48000, "WAV")
    decoder = make_decoder(AudioSettings(pb.AUDIO_ENCODING_WAV, 0, 2))
    chunk = 48000 * 4 // 10  # 100 ms
    held = 0
    for i in range(0, len(data), chunk):
        decoder.feed(data[i:i + chunk])
        held = max(held, decoder.buffered_bytes)
    decoder.finish()
    assert decoder.bytes_read <= len(data) < 2 * decoder.bytes_read
    assert held < 4  # at most a split sample frame waits


@pytest.mark.parametrize("fmt, subtype, encoding, channels", [("OGG", "OPUS", pb.AUDIO_ENCODING_OGG_OPUS, 1),
                                                              ("FLAC", "PCM_16", pb.AUDIO_ENCODING_FLAC, 2)])
def test_flac_and_ogg_rereads_cost_no_more_late_in_a_stream_than_early(fmt, subtype, encoding, channels):
    """A re-read costs about the same whatever the buffer holds, so a stream costs linear time (re-reading the
    whole buffer made each re-read grow with the stream, the total quadratic: ~100x the input here)."""
    import soxr
    audio, _ = fox()
    speech = soxr.resample(np.tile(audio, 11)[:30 * 16000], 16000, 48000)
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", 48000, channels, format=fmt, subtype=subtype, compression_level=0) as out:
        out.write(np.stack([speech] * channels, axis=1))  # Opus at its highest bit rate: a big buffer, quickly
    data = buffer.getvalue()
    decoder = make_decoder(AudioSettings(encoding, 0, 1))
    step = len(data) // 300  # 100 ms of audio
    decoded, costs = [], {}  # buffer size -> bytes read by the re-read at that size
    for i in range(0, len(data), step):
        before = decoder.bytes_read
        decoded.append(decoder.feed(data[i:i + step]))
        if decoder.bytes_read > before:
            costs[decoder.buffered_bytes] = decoder.bytes_read - before
    decoded.append(decoder.finish())
    assert len(np.concatenate(decoded)) == 30 * 16000
    middle = max(cost for size, cost in costs.items() if len(data) // 4 < size <= len(data) // 2)
    late = max(cost for size, cost in costs.items() if size > len(data) // 2)
    assert late < 1.5 * middle
    assert decoder.bytes_read < 20 * len(data)


@pytest.mark.parametrize("encoding", [pb.AUDIO_ENCODING_OGG_OPUS, pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_WAV])
def test_a_header_that_does_not_parse_within_the_limit_is_rejected_early(encoding):
    from saywell.server.audio_decoding import HEADER_LIMIT_BYTES
    junk = np.random.default_rng(0).bytes(16 * 1024)
    # WAV: a valid RIFF start, then a chunk that never ends
    head = riff()[:12] + b"LIST" + struct.pack("<I", 0xFFFFFFF0) if encoding == pb.AUDIO_ENCODING_WAV else b""
    decoder = make_decoder(AudioSettings(encoding, 0, 1))
    fed = 0
    with pytest.raises(InvalidArgument, match=f"header did not parse within {HEADER_LIMIT_BYTES} bytes"):
        for piece in [head] + [junk] * 200:  # 3.2 MB
            decoder.feed(piece)
            fed += len(piece)
    assert fed <= HEADER_LIMIT_BYTES + len(head)
    assert decoder.buffered_bytes <= HEADER_LIMIT_BYTES + len(junk) + len(head)


def test_what_is_not_a_wav_is_rejected_at_once():
    with pytest.raises(InvalidArgument, match="not RIFF/WAVE"):
        make_decoder(AudioSettings(pb.AUDIO_ENCODING_WAV, 0, 1)).feed(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InvalidArgument, match="ended inside its header"):
        decode_all(AudioSettings(pb.AUDIO_ENCODING_WAV, 0, 1), riff(fmt_chunk())[:30])


def test_flac_and_ogg_buffering_is_capped():
    audio, rate = fox()
    data = encode(audio, rate, "FLAC")  # about 56 kB
    decoder = make_decoder(AudioSettings(pb.AUDIO_ENCODING_FLAC, 0, 1), max_buffered_bytes=20_000)
    with pytest.raises(ResourceExhausted, match="at most 20000 bytes.*LINEAR16"):
        for i in range(0, len(data), 1000):
            decoder.feed(data[i:i + 1000])
    assert decoder.buffered_bytes <= 20_000
    # The default cap is generous: the whole file decodes
    assert len(decode_all(AudioSettings(pb.AUDIO_ENCODING_FLAC, 0, 1), data)) == len(audio)


@pytest.mark.parametrize("channels", [9, 16])
def test_wav_with_more_channels_than_the_server_takes_is_rejected(channels):
    data = encode(np.zeros((1600, channels), np.float32), 16000, "WAV")
    with pytest.raises(InvalidArgument, match=f"WAV header says {channels} channel.*at most 8"):
        make_decoder(AudioSettings(pb.AUDIO_ENCODING_WAV, 0, 1)).feed(data)


def test_eight_channel_wav_is_accepted():
    data = encode(np.full((1600, 8), 0.25, np.float32), 16000, "WAV")  # WAVE_FORMAT_EXTENSIBLE
    np.testing.assert_allclose(decode_all(AudioSettings(pb.AUDIO_ENCODING_WAV, 0, 8), data), 0.25, atol=1e-4)


@pytest.mark.parametrize("subtype, says", [("PCM_U8", "8-bit PCM"), ("PCM_24", "24-bit PCM"),
                                           ("FLOAT", "32-bit IEEE float"), ("ULAW", "8-bit mu-law")])
def test_wav_that_is_not_16_bit_pcm_is_rejected(subtype, says):
    data = encode(np.zeros(1600, np.float32), 16000, "WAV", subtype)
    with pytest.raises(InvalidArgument, match=f"WAV header says {says}; WAV audio must be 16-bit PCM"):
        make_decoder(AudioSettings(pb.AUDIO_ENCODING_WAV, 0, 1)).feed(data)


def test_ogg_with_more_channels_than_the_server_takes_is_rejected():
    data = encode(np.zeros((16000, 9), np.float32), 16000, "OGG", "OPUS")
    with pytest.raises(InvalidArgument, match="OGG_OPUS header says 9 channel.*at most 8"):
        decode_all(AudioSettings(pb.AUDIO_ENCODING_OGG_OPUS, 0, 1), data)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_linear16_and_wav_stop_at_the_sample_limit(rate):
    tone = (np.sin(np.arange(rate * 10) / 10) * 10000).astype("<i2")  # 10 s
    limit = 16000 * 5  # 5 s at 16 kHz
    exact = decode_all(AudioSettings(pb.AUDIO_ENCODING_LINEAR16, rate, 1), tone[:rate * 5].tobytes(), max_samples=limit)
    assert abs(len(exact) - limit) <= 16
    for encoding, data in [(pb.AUDIO_ENCODING_LINEAR16, tone.tobytes()), (pb.AUDIO_ENCODING_WAV, riff(fmt_chunk(rate), (b"data", tone.tobytes())))]:
        decoder = make_decoder(AudioSettings(encoding, rate if encoding == pb.AUDIO_ENCODING_LINEAR16 else 0, 1), max_samples=limit)
        chunk = rate * 2 // 10  # 100 ms
        with pytest.raises(OutOfRange, match="limit of 5000 ms"):
            for i in range(0, len(data), chunk):
                decoder.feed(data[i:i + chunk])
        assert decoder.input_frames <= rate * 5


@pytest.fixture(scope="module")
def opus_bomb() -> bytes:
    """Ten minutes of silence in about 140 kB (an hour takes seconds to encode; the shape is the same)."""
    return encode(np.zeros(600 * 8000, np.float32), 8000, "OGG", "OPUS")


def test_an_opus_decompression_bomb_stops_at_the_limit_without_decoding_it_whole(opus_bomb):
    import tracemalloc
    from saywell.server.audio_decoding import BLOCK_FRAMES
    limit = 16000 * 30  # 30 s
    tracemalloc.start()
    try:
        with pytest.raises(OutOfRange, match="limit of 30000 ms"):
            decode_all(AudioSettings(pb.AUDIO_ENCODING_OGG_OPUS, 0, 1), opus_bomb, max_samples=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 30 * 8000 * 4  # a few copies of 30 s at 8 kHz float32; whole it is 19 MB (38 MB at 16 kHz)
    decoder = make_decoder(AudioSettings(pb.AUDIO_ENCODING_OGG_OPUS, 0, 1), max_samples=limit)
    with pytest.raises(OutOfRange):
        for i in range(0, len(opus_bomb), 2000):
            decoder.feed(opus_bomb[i:i + 2000])
        decoder.finish()
    assert decoder.input_frames <= 30 * 8000 + BLOCK_FRAMES


def test_container_sample_limit_leaves_audio_within_it_alone():
    audio, rate = fox()
    data = encode(audio, rate, "FLAC")
    assert len(decode_all(AudioSettings(pb.AUDIO_ENCODING_FLAC, 0, 1), data, max_samples=len(audio))) == len(audio)
    with pytest.raises(OutOfRange, match="FLAC audio runs past the limit of 1000 ms"):
        decode_all(AudioSettings(pb.AUDIO_ENCODING_FLAC, 0, 1), data, max_samples=16000)
