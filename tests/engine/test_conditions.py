"""Recording conditions for robustness measurements: deterministic, same length, and each doing what it says."""
import asyncio

import numpy as np
import pytest
from scipy import signal

from saywell.engine.offline import evaluation
from saywell.engine.offline.conditions import CONDITIONS, degrade
from saywell.engine.offline.dataset import LabeledUtterance, LabeledWord


def tone_mix(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)


def band_power(audio: np.ndarray, hz: float) -> float:
    freqs, power = signal.periodogram(audio, fs=16000)
    return float(power[np.argmin(np.abs(freqs - hz))])


@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_condition_keeps_length_range_and_type_and_repeats_with_its_seed(condition):
    audio = tone_mix()
    first, again = degrade(audio, condition, seed=7), degrade(audio, condition, seed=7)
    assert first.dtype == np.float32 and len(first) == len(audio) and np.abs(first).max() <= 1.0
    np.testing.assert_array_equal(first, again)
    if condition == "clean":
        assert first is audio
    else:
        assert not np.allclose(first, audio)


def test_the_telephone_keeps_the_voice_band_and_drops_what_lies_above_it():
    audio = tone_mix()
    phone = degrade(audio, "telephone")
    assert band_power(phone, 1000) > 0.3 * band_power(audio, 1000)
    assert band_power(phone, 6000) < 1e-3 * band_power(audio, 6000)


def test_noise_lies_fifteen_decibels_under_the_signal():
    audio = tone_mix(2.0)
    noise = degrade(audio, "noise", seed=1) - audio
    snr = 10 * np.log10(np.mean(audio ** 2) / np.mean(noise ** 2))
    assert 14.5 < snr < 15.5


def test_reverb_rings_on_after_a_click():
    audio = np.zeros(16000, np.float32)
    audio[1000] = 0.9
    wet = degrade(audio, "reverb", seed=2)
    assert np.abs(wet[1000]) > 0.3  # the direct sound stays
    assert np.sqrt(np.mean(wet[4000:8000] ** 2)) > 1e-4  # 0.2-0.4 s later the room still rings
    assert np.abs(wet[:1000]).max() < 1e-9  # nothing before the click (FFT convolution leaves ~1e-17)


def test_an_unknown_condition_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown condition 'radio'"):
        degrade(tone_mix(), "radio")


def test_eval_lets_the_engine_hear_the_condition_but_times_the_labels_on_the_clean_recording(tmp_path, monkeypatch):
    clean = tone_mix()
    monkeypatch.setattr(evaluation, "load_audio", lambda path: clean)
    heard = {}

    class Engine:
        async def assess(self, request):
            heard["assess"] = request.audio

            class Result:
                words = ()
            return Result()

        async def align(self, audio, words):
            heard["align"] = audio

            class Alignment:
                frame_ms = 10
                words = ()
            return Alignment()

    utterance = LabeledUtterance("u1", "s1", "we call", {}, (LabeledWord("we", 10, 10, 10),), tmp_path / "u1.wav")
    asyncio.run(evaluation._evaluate_one(Engine(), utterance, "open", "telephone"))
    assert heard["align"] is clean and not np.allclose(heard["assess"], clean)
    np.testing.assert_array_equal(heard["assess"], degrade(clean, "telephone", seed=evaluation.zlib.crc32(b"u1")))
