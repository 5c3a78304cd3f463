"""What travels between a saywell replica and its Triton models: tensor names, the per-version parameter the
export writes, and the padding of variable-length items (each batch is padded to its longest item and carries
every item's length, so the model cuts each item back out: batch-invariant like the local stages).

Both sides import this module: the replica's stages (`stages.py`) and the Python-backend model that runs in
Triton (`deploy/triton/model.py`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

MODEL_PREFIX = "saywell_"  # Triton model name = prefix + stage name: saywell_phone_posteriors, saywell_ssl, ...
# Stages whose items are 16 kHz mono audio and whose results are (frames, dim) float32.
AUDIO_STAGES = ("phone_posteriors", "ssl")
HEADS_STAGE = "heads"
STAGES = AUDIO_STAGES + (HEADS_STAGE,)

# Audio stages: AUDIO (B, S) float32 padded with zeros, LENGTHS (B, 1) valid samples -> OUTPUT (B, T, D) and
# OUTPUT_LENGTHS (B, 1) valid frames.
AUDIO, LENGTHS, OUTPUT, OUTPUT_LENGTHS = "AUDIO", "LENGTHS", "OUTPUT", "OUTPUT_LENGTHS"
# Heads: SSL frames (B, T, D) with FRAME_LENGTHS, word spans in frames (B, N, 2) and word values (B, N, W) with
# WORD_LENGTHS, sentence values (B, S), phone values (B, P, F), phone class ids (B, P) and each phone's word
# (B, P) with PHONE_LENGTHS -> WORD_SCORES (B, N, 3), SENTENCE_SCORES (B, 4), PHONE_SCORES (B, P).
FRAMES, FRAME_LENGTHS, SPANS, WORD_VALUES, WORD_LENGTHS, SENTENCE_VALUES = (
    "FRAMES", "FRAME_LENGTHS", "SPANS", "WORD_VALUES", "WORD_LENGTHS", "SENTENCE_VALUES")
PHONE_VALUES, PHONE_IDS, PHONE_OWNER, PHONE_LENGTHS = "PHONE_VALUES", "PHONE_IDS", "PHONE_OWNER", "PHONE_LENGTHS"
WORD_SCORES, SENTENCE_SCORES, PHONE_SCORES = "WORD_SCORES", "SENTENCE_SCORES", "PHONE_SCORES"


def model_name(stage: str) -> str:
    return MODEL_PREFIX + stage


def version_parameter(version: int | str) -> str:
    """The model config parameter that describes one exported version: `saywell_v<N>` = JSON (see `describe`)."""
    return f"saywell_v{version}"


def describe(stage: str, source: str, meta: dict[str, Any]) -> str:
    """A version's description: the stage, the weights it was exported from (`name@hash`, what the replica's
    own model folder must match) and what the replica needs to know of the model (frame step, dimensions...)."""
    return json.dumps({"stage": stage, "source": source, "meta": meta}, sort_keys=True)


def source_hash(source: str) -> str:
    """The hash of a `name@hash` source: the folder's name may differ between machines, the weights may not."""
    return source.rsplit("@", 1)[-1]


def pad(arrays: Sequence[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Arrays of one rank differing in their first dimension -> (B, L, ...) zero-padded and (B, 1) lengths."""
    longest = max((len(a) for a in arrays), default=0)
    rest = arrays[0].shape[1:] if arrays else ()
    batch = np.zeros((len(arrays), longest, *rest), dtype)
    for row, array in enumerate(arrays):
        batch[row, :len(array)] = array
    return batch, np.array([[len(a)] for a in arrays], np.int64)


def unpad(batch: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The inverse of `pad`: each row cut to its length (copies, contiguous)."""
    return [np.ascontiguousarray(batch[row, :int(n)]) for row, n in enumerate(np.asarray(lengths).reshape(-1))]
