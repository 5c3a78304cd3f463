from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from saywell.client.audio_files import AudioSource, chunk_bytes, chunks, load_audio
from saywell.client.errors import AudioFileError
from saywell.v1 import assessment_pb2 as pb


@pytest.mark.parametrize(("name", "rate"), [("fox.wav", 16000), ("market_8k.wav", 8000)])
def test_wav_becomes_linear16_at_its_own_rate(fixtures_dir, name, rate):
    path = fixtures_dir / name
    info = sf.info(str(path))
    source = load_audio(path)
    assert source.encoding == pb.AUDIO_ENCODING_LINEAR16
    assert (source.sample_rate_hertz, source.channels) == (rate, 1)
    assert len(source.data) == info.frames * 2
    assert source.duration_s == pytest.approx(info.duration, abs=1e-3)
    assert source.pcm.shape == (info.frames, 1)
    cfg = source.audio_config()
    assert (cfg.encoding, cfg.sample_rate_hertz, cfg.audio_channel_count) == (pb.AUDIO_ENCODING_LINEAR16, rate, 1)


def test_32bit_wavex_is_converted_to_int16(fixtures_dir):
    path = fixtures_dir / "two_utterances.wav"
    source = load_audio(path)
    assert len(source.data) == sf.info(str(path)).frames * 2
    assert np.abs(source.pcm).max() > 1000  # scaled, not truncated to zero


def test_chunks_of_100ms_at_16k_are_3200_bytes(fixtures_dir):
    source = load_audio(fixtures_dir / "fox.wav")
    pieces = list(chunks(source, 100))
    assert all(len(p) == 3200 for p in pieces[:-1])
    assert 0 < len(pieces[-1]) <= 3200
    assert b"".join(pieces) == source.data


def test_stereo_wav_keeps_channels_and_whole_frames(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.zeros((4410, 2), dtype="int16"), 44100, subtype="PCM_16")
    source = load_audio(path)
    assert (source.sample_rate_hertz, source.channels) == (44100, 2)
    assert chunk_bytes(source, 20) == 882 * 2 * 2


@pytest.mark.parametrize("bad", [0, 10, 19, 201, 1000])
def test_chunk_ms_outside_20_to_200_is_rejected_at_once(fixtures_dir, bad):
    source = load_audio(fixtures_dir / "fox.wav")
    with pytest.raises(ValueError, match="chunk_ms"):
        chunks(source, bad)


@given(
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    channels=st.integers(1, 4),
    frames=st.integers(0, 5000),
    chunk_ms=st.integers(20, 200),
)
@settings(max_examples=60, deadline=None)
def test_chunks_cover_the_audio_in_whole_frames(rate, channels, frames, chunk_ms):
    data = np.arange(frames * channels, dtype="<i2").tobytes()
    source = AudioSource(pb.AUDIO_ENCODING_LINEAR16, rate, channels, data, frames / rate)
    pieces = list(chunks(source, chunk_ms))
    assert b"".join(pieces) == data
    frame_bytes = 2 * channels
    assert all(len(p) % frame_bytes == 0 for p in pieces)
    assert all(len(p) == (rate * chunk_ms // 1000) * frame_bytes for p in pieces[:-1])


def test_flac_decodes_to_pcm_or_passes_through(tmp_path, fixtures_dir):
    original = load_audio(fixtures_dir / "fox.wav")
    path = tmp_path / "fox.flac"
    sf.write(str(path), original.pcm, 16000, format="FLAC", subtype="PCM_16")
    decoded = load_audio(path)
    assert decoded.encoding == pb.AUDIO_ENCODING_LINEAR16 and decoded.data == original.data  # FLAC is lossless
    raw = load_audio(path, decode=False)
    assert raw.encoding == pb.AUDIO_ENCODING_FLAC and raw.data == path.read_bytes()
    assert raw.duration_s == pytest.approx(original.duration_s, abs=1e-3)
    assert sum(len(c) for c in chunks(raw, 100)) == len(raw.data)


def test_opus_decodes_to_pcm_or_passes_through(tmp_path, fixtures_dir):
    if "OPUS" not in sf.available_subtypes("OGG"):
        pytest.skip("this libsndfile has no Opus support")
    original = load_audio(fixtures_dir / "fox.wav")
    path = tmp_path / "fox.opus"
    sf.write(str(path), original.pcm, 16000, format="OGG", subtype="OPUS")
    decoded = load_audio(path)
    assert decoded.encoding == pb.AUDIO_ENCODING_LINEAR16 and decoded.channels == 1
    assert decoded.duration_s == pytest.approx(original.duration_s, abs=0.05)
    raw = load_audio(path, decode=False)
    assert raw.encoding == pb.AUDIO_ENCODING_OGG_OPUS and raw.data == path.read_bytes()
    with pytest.raises(AudioFileError):
        _ = raw.pcm


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(AudioFileError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav")


def test_non_audio_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio")
    with pytest.raises(AudioFileError, match="cannot read"):
        load_audio(path)
