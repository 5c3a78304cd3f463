"""Per-word prosody for the stress head: how a word's pitch, loudness and length stand against the utterance,
and how its canonically stressed vowel stands against its other vowels.

Raters mark stress on over-stressed function words ("was", "her", "do") as often as on misplaced stress in
long words ("almost", "again"), so both views are kept: the word against its neighbours, the syllable against
its siblings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saywell.engine.features.prosody import ProsodyTrack, semitones
from saywell.engine.language.lexicon import canonical_stress
from saywell.engine.stages.alignment import AlignedPhone, AlignedWord
from saywell.engine.types import FRAME_MS

WORD_PROSODY_NAMES = ("pitch_rel_st", "pitch_peak_rel_st", "intensity_rel_db", "intensity_peak_rel_db",
                      "duration_rel", "stressed_pitch_diff_st", "stressed_intensity_diff_db",
                      "stressed_duration_diff_ms", "stressed_vowel_gop", "vowel_gop_min", "primary_position")


@dataclass(frozen=True)
class UtteranceLevels:
    """What a word is compared with: the speaker's usual pitch, loudness and phone length in this utterance."""
    median_st: float
    mean_db: float
    ms_per_phone: float

    @classmethod
    def of(cls, words: tuple[AlignedWord, ...], prosody: ProsodyTrack) -> "UtteranceLevels":
        if not words:
            return cls(0.0, 0.0, 1.0)
        speech = prosody.slice(words[0].start_frame, words[-1].end_frame)
        tones = semitones(speech.pitch_hz)
        loud = speech.intensity_db[speech.intensity_db > 0]
        phones = sum(len(w.phones) for w in words)
        frames = sum(w.end_frame - w.start_frame for w in words)
        return cls(float(np.median(tones)) if tones.size else 0.0, float(loud.mean()) if loud.size else 0.0,
                   frames * FRAME_MS / max(phones, 1))


def _levels(prosody: ProsodyTrack, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    seg = prosody.slice(start, max(end, start + 1))
    return semitones(seg.pitch_hz), seg.intensity_db


def _vowel_contrasts(vowels: list[AlignedPhone], stresses: tuple[int, ...], prosody: ProsodyTrack,
                     levels: UtteranceLevels) -> dict[str, float]:
    """Primary-stressed vowel minus the most prominent other vowel, per cue; zeros for one-vowel words."""
    if len(vowels) < 2 or len(stresses) != len(vowels) or 1 not in stresses:
        return {"stressed_pitch_diff_st": 0.0, "stressed_intensity_diff_db": 0.0, "stressed_duration_diff_ms": 0.0}
    cues = []
    for vowel in vowels:
        tones, loud = _levels(prosody, vowel.start_frame, vowel.end_frame)
        cues.append((float(tones.mean()) if tones.size else levels.median_st,
                     float(loud.mean()) if loud.size else levels.mean_db, vowel.n_frames * FRAME_MS))
    primary = stresses.index(1)
    others = [c for i, c in enumerate(cues) if i != primary]
    return {"stressed_pitch_diff_st": cues[primary][0] - max(c[0] for c in others),
            "stressed_intensity_diff_db": cues[primary][1] - max(c[1] for c in others),
            "stressed_duration_diff_ms": cues[primary][2] - max(c[2] for c in others)}


def word_prosody_stats(word: AlignedWord, prosody: ProsodyTrack, levels: UtteranceLevels) -> dict[str, float]:
    tones, loud = _levels(prosody, word.start_frame, word.end_frame)
    vowels = [p for p in word.phones if p.canonical[-1:].isdigit()]
    stresses = canonical_stress(tuple(p.canonical for p in word.phones))
    primary = stresses.index(1) if 1 in stresses else 0
    expected_ms = max(len(word.phones), 1) * levels.ms_per_phone
    values = {
        "pitch_rel_st": float(tones.mean()) - levels.median_st if tones.size else 0.0,
        "pitch_peak_rel_st": float(tones.max()) - levels.median_st if tones.size else 0.0,
        "intensity_rel_db": float(loud.mean()) - levels.mean_db if loud.size else 0.0,
        "intensity_peak_rel_db": float(loud.max()) - levels.mean_db if loud.size else 0.0,
        "duration_rel": (word.end_frame - word.start_frame) * FRAME_MS / max(expected_ms, 1.0),
        "stressed_vowel_gop": float(vowels[min(primary, len(vowels) - 1)].gop) if vowels else 0.0,
        "vowel_gop_min": float(min(v.gop for v in vowels)) if vowels else 0.0,
        "primary_position": primary / max(len(vowels) - 1, 1) if len(vowels) > 1 else 0.0,
    }
    values.update(_vowel_contrasts(vowels, stresses, prosody, levels))
    return values
