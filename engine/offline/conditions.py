"""Recording conditions applied to clean 16 kHz audio, to measure how scores hold up away from a good microphone.

Each condition is deterministic for a given seed (`saywell eval --condition` seeds it per utterance), so two runs
hear the same noise. They model what learners' and natives' recordings meet in use, not any one device:

- `telephone`: a 300-3400 Hz band-pass, 8 kHz sampling and G.711 mu-law quantisation (a phone call).
- `noise`: white noise at 15 dB SNR over the whole clip (a fan, a busy room's floor).
- `reverb`: a synthetic room, RT60 0.6 s, direct sound kept (a bare room, a laptop across the desk).
- `vintage`: 150-4000 Hz, hiss at 25 dB SNR and a short room (RT60 0.3 s): an old microphone or broadcast.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
CONDITIONS = ("clean", "telephone", "noise", "reverb", "vintage")


def _band_pass(audio: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, audio)


def _add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(audio ** 2))
    if power == 0.0:
        return audio
    return audio + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(audio))


def _reverb(audio: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolution with exponentially decaying noise (-60 dB at rt60_s) after a unit direct path; the result keeps
    the input's peak level."""
    from scipy import signal

    n = int(rt60_s * SAMPLE_RATE)
    decay = np.exp(-6.9 * np.arange(n) / n)  # ln(1000) = 6.9: -60 dB at the end
    tail = rng.normal(0.0, 1.0, n) * decay
    response = tail / np.sqrt(np.sum(tail ** 2))  # the tail carries as much energy as the direct sound
    response[0] += 1.0
    wet = signal.fftconvolve(audio, response)[: len(audio)]
    peak_in, peak_out = float(np.max(np.abs(audio), initial=0.0)), float(np.max(np.abs(wet), initial=0.0))
    return wet * (peak_in / peak_out) if peak_out > 0 else wet


def _mu_law(audio: np.ndarray, mu: int = 255) -> np.ndarray:
    clipped = np.clip(audio, -1.0, 1.0)
    encoded = np.round(np.sign(clipped) * np.log1p(mu * np.abs(clipped)) / np.log1p(mu) * 127) / 127
    return np.sign(encoded) * ((1 + mu) ** np.abs(encoded) - 1) / mu


def degrade(audio: np.ndarray, condition: str, seed: int = 0) -> np.ndarray:
    """`audio` (float32, 16 kHz, mono) as heard under `condition`: the same array for "clean", otherwise a new
    one of the same length, float32, within [-1, 1]."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
    if condition == "clean":
        return audio
    from scipy import signal

    rng = np.random.default_rng(seed)
    x = np.asarray(audio, dtype=np.float64)
    if condition == "telephone":
        narrow = signal.resample_poly(_band_pass(x, 300.0, 3400.0), 1, 2)
        y = signal.resample_poly(_mu_law(narrow), 2, 1)[: len(x)]
    elif condition == "noise":
        y = _add_noise(x, 15.0, rng)
    elif condition == "reverb":
        y = _reverb(x, 0.6, rng)
    else:  # vintage
        y = _add_noise(_reverb(_band_pass(x, 150.0, 4000.0), 0.3, rng), 25.0, rng)
    return np.clip(y, -1.0, 1.0).astype(np.float32)
