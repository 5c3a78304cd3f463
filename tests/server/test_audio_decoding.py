import io
import pathlib

import numpy as np
import pytest
import soundfile as sf

from saywell.server.audio_decoding import decode_all, make_decoder
from saywell.server.errors import InvalidArgument
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
    decoded = feed_in_pieces(make_decoder(AudioSettings(pb.LINEAR16, 16000, 1)), audio.tobytes(), 333)
    np.testing.assert_allclose(decoded, audio / 32768.0, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_linear16_is_resampled_to_16k_keeping_duration(rate):
    import soxr
    audio, _ = fox()
    resampled = (soxr.resample(audio, 16000, rate) * 32767).astype("<i2")
    decoded = feed_in_pieces(make_decoder(AudioSettings(pb.LINEAR16, rate, 1)), resampled.tobytes(), 2000)
    assert abs(len(decoded) - len(audio)) <= 16000 * 0.01
    assert np.corrcoef(decoded[:len(audio) - 200], audio[:len(audio) - 200])[0, 1] > 0.9


def test_stereo_is_mixed_down_to_mono():
    audio, _ = fox("int16")
    stereo = np.stack([audio, np.zeros_like(audio)], axis=1)
    decoded = decode_all(AudioSettings(pb.LINEAR16, 16000, 2), stereo.tobytes())
    assert len(decoded) == len(audio)
    np.testing.assert_allclose(decoded, audio / 32768.0 / 2, atol=1e-4)


def test_truncated_pcm_is_an_error_at_the_end():
    audio, _ = fox("int16")
    decoder = make_decoder(AudioSettings(pb.LINEAR16, 16000, 1))
    decoder.feed(audio.tobytes() + b"\x01")
    with pytest.raises(InvalidArgument, match="1 byte"):
        decoder.finish()


@pytest.mark.parametrize("fmt, subtype, encoding", [("OGG", "OPUS", pb.OGG_OPUS), ("FLAC", "PCM_16", pb.FLAC),
                                                    ("WAV", "PCM_16", pb.WAV)])
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
    if encoding != pb.OGG_OPUS:  # lossless
        np.testing.assert_allclose(decoded, audio, atol=1e-4)


def test_container_rate_must_match_a_declared_rate():
    audio, rate = fox()
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="FLAC")
    with pytest.raises(InvalidArgument, match="header says 16000 Hz but config.audio.sample_rate_hertz is 8000"):
        decode_all(AudioSettings(pb.FLAC, 8000, 1), buffer.getvalue())


def test_corrupted_compressed_audio_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="OGG_OPUS audio could not be decoded"):
        decode_all(AudioSettings(pb.OGG_OPUS, 0, 1), b"OggS" + bytes(range(256)) * 20)
    with pytest.raises(InvalidArgument, match="FLAC audio"):
        decode_all(AudioSettings(pb.FLAC, 0, 1), b"not flac at all" * 400)
