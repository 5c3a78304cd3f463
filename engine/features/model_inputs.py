"""Inputs of the trained scorer: one token per word (GOP, timing, ASR agreement, pooled Whisper encoder) plus
an utterance vector (pause, rate, pitch statistics and the encoder's mean and spread over the speech).

Built from the same `UtteranceFeatures` the baseline uses, so training and serving share one code path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saywell.engine.features.phone_probe import PhoneFrames, phone_frames
from saywell.engine.features.utterance import UtteranceFeatures
from saywell.engine.features.word_prosody import WORD_PROSODY_NAMES
from saywell.engine.stages.asr import ENCODER_FRAME_MS
from saywell.engine.types import FRAME_MS

# Checkpoints name the features they were fitted on (meta "word_scalars" / "sentence_scalars"); these are the
# names new training uses. Checkpoints without names predate them and used the first ten / eighteen.
WORD_SCALARS = ("gop_mean", "gop_min", "gop_low_share", "n_phones", "ms_per_phone", "loop_agreement",
                "n_vowels", "stress_prominence", "asr_probability", "asr_match", "asr_char_distance",
                "asr_time_offset_ms", "own_probability", "loop_phone_distance", "loop_phone_ratio",
                *WORD_PROSODY_NAMES)
LEGACY_WORD_SCALARS = WORD_SCALARS[:10]
TIMING_SCALARS = ("duration_ms", "gap_before_ms", "gap_after_ms", "position")
SENTENCE_SCALARS = ("pauses_per_word", "pause_ratio", "mean_pause_ms", "longest_pause_ms", "speech_rate",
                    "articulation_rate", "words_per_second", "phone_duration_cv", "pitch_std_st", "pitch_range_st",
                    "voiced_ratio", "intensity_std_db", "gop_mean", "gop_p10", "gop_low_word_share",
                    "asr_probability", "n_words", "loop_agreement", "asr_char_distance", "ref_recognized_share",
                    "asr_extra_words", "pitch_median_st")
LEGACY_SENTENCE_SCALARS = SENTENCE_SCALARS[:18]


@dataclass(frozen=True)
class ModelInputs:
    word_scalars: np.ndarray  # (words, len(WORD_SCALARS) + len(TIMING_SCALARS))
    word_encoder: np.ndarray  # (words, encoder_dim): encoder mean over each word's span
    sentence: np.ndarray  # (len(SENTENCE_SCALARS) + 2 * encoder_dim,)
    phones: PhoneFrames | None = None  # encoder frames pooled per aligned phone (for the word trees' phone probe)


def _pool(encoder: np.ndarray, start_ms: int, end_ms: int) -> np.ndarray:
    first = min(int(start_ms // ENCODER_FRAME_MS), max(len(encoder) - 1, 0))
    last = max(int(np.ceil(end_ms / ENCODER_FRAME_MS)), first + 1)
    return encoder[first:last].mean(axis=0)


def build_inputs(features: UtteranceFeatures, encoder: np.ndarray, word_names: tuple[str, ...] = WORD_SCALARS,
                 sentence_names: tuple[str, ...] = SENTENCE_SCALARS) -> ModelInputs:
    """Missing names read as 0 (e.g. reference agreement in open mode without a target ASR)."""
    words = features.words
    dim = encoder.shape[1] if encoder.ndim == 2 and encoder.size else 384
    if encoder.size == 0:
        encoder = np.zeros((1, dim), np.float32)
    scalars, pooled = [], []
    spans = [(w.word.start_frame * FRAME_MS, w.word.end_frame * FRAME_MS) for w in words]
    for i, (word, (start, end)) in enumerate(zip(words, spans)):
        before = start - spans[i - 1][1] if i > 0 else 0
        after = spans[i + 1][0] - end if i + 1 < len(words) else 0
        timing = (end - start, before, after, i / max(len(words) - 1, 1))
        scalars.append([word.values.get(name, 0.0) for name in word_names] + list(timing))
        pooled.append(_pool(encoder, start, end))
    width = len(word_names) + len(TIMING_SCALARS)
    if spans:
        speech = encoder[int(spans[0][0] // ENCODER_FRAME_MS):max(int(np.ceil(spans[-1][1] / ENCODER_FRAME_MS)), 1)]
    else:
        speech = encoder
    speech = speech if len(speech) else encoder
    sentence = np.concatenate([[features.sentence.get(name, 0.0) for name in sentence_names],
                               speech.mean(axis=0), speech.std(axis=0)])
    return ModelInputs(np.asarray(scalars, np.float32).reshape(-1, width),
                       np.asarray(pooled, np.float32).reshape(-1, dim), sentence.astype(np.float32),
                       phone_frames([w.word for w in words], encoder))
