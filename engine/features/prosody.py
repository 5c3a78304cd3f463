"""Pitch and intensity contours (Praat via parselmouth) on the 10 ms frame grid of the aligner."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saywell.engine.types import SAMPLE_RATE

FRAME_S = 0.01


@dataclass(frozen=True)
class ProsodyTrack:
    pitch_hz: np.ndarray  # per 10 ms frame; 0 where unvoiced
    intensity_db: np.ndarray  # per 10 ms frame

    def slice(self, start_frame: int, end_frame: int) -> "ProsodyTrack":
        return ProsodyTrack(self.pitch_hz[start_frame:end_frame], self.intensity_db[start_frame:end_frame])


def extract_prosody(audio: np.ndarray) -> ProsodyTrack:
    n_frames = max(int(len(audio) / SAMPLE_RATE / FRAME_S), 0)
    if len(audio) < SAMPLE_RATE // 10:
        return ProsodyTrack(np.zeros(n_frames), np.zeros(n_frames))
    import parselmouth  # deferred: the server imports engine types without Praat

    sound = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=SAMPLE_RATE)
    times = (np.arange(n_frames) + 0.5) * FRAME_S
    pitch = sound.to_pitch(time_step=FRAME_S, pitch_floor=75.0, pitch_ceiling=600.0)
    pitch_values = _nearest(times, pitch.xs(), pitch.selected_array["frequency"])
    intensity = sound.to_intensity(minimum_pitch=75.0, time_step=FRAME_S)
    intensity_values = np.interp(times, intensity.xs(), intensity.values[0]) if intensity.n_frames else np.zeros(n_frames)
    return ProsodyTrack(pitch_values, np.asarray(intensity_values, dtype=float))


def _nearest(times: np.ndarray, xs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Nearest-frame lookup: interpolating would invent pitch between voiced and unvoiced frames."""
    if len(xs) == 0:
        return np.zeros(len(times))
    index = np.clip(np.searchsorted(xs, times), 0, len(xs) - 1)
    return np.nan_to_num(np.asarray(values, dtype=float)[index])


def semitones(pitch_hz: np.ndarray) -> np.ndarray:
    """Voiced frames only, relative to 100 Hz, so speakers' ranges compare on one scale."""
    voiced = pitch_hz[pitch_hz > 0]
    return 12.0 * np.log2(voiced / 100.0) if voiced.size else voiced
