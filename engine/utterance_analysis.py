"""What training keeps of each utterance: the serving stages' raw outputs, not the features made from them.

Analysing an utterance (two Whisper passes, the phone loop, two forced alignments, prosody, encoder frames)
costs about a second of CPU; turning an analysis into features costs milliseconds. Caching analyses lets
features change without re-running the models. The stages and their options are the server's defaults, so
what training sees is what the server computes.
"""
from __future__ import annotations

import pathlib
import pickle
from dataclasses import dataclass

import numpy as np

from saywell.engine.alignment import Alignment, AlignmentError
from saywell.engine.features import UtteranceFeatures, utterance_features
from saywell.engine.model_inputs import ModelInputs, build_inputs
from saywell.engine.options import AsrOptions, EngineOptions
from saywell.engine.prosody import ProsodyTrack
from saywell.engine.types import FRAME_MS, Transcript

ANALYSIS_VERSION = 2


@dataclass(frozen=True)
class UtteranceAnalysis:
    utt: str
    duration_ms: int
    recognised: Transcript  # the recognising ASR's plausible words (encoder frames kept apart, below)
    target: Transcript | None  # open mode's target ASR, when the engine has one
    encoder: np.ndarray  # float16 (frames, dim): the recognising ASR's encoder over the unpadded audio
    prosody: ProsodyTrack
    reference: tuple[str, ...]  # normalised reference words
    closed: Alignment  # of the reference
    open: Alignment | None  # of the target's words (or the recognised ones without a target); None: no words

    def features(self, mode: str) -> UtteranceFeatures | None:
        if mode == "closed":
            return utterance_features(self.closed, self.recognised, self.prosody, list(self.reference))
        if self.open is None:
            return None
        if self.target is None:
            return utterance_features(self.open, self.recognised, self.prosody, None)
        return utterance_features(self.open, self.recognised, self.prosody, [w.text for w in self.target.words],
                                  self.target)

    def model_inputs(self, mode: str) -> tuple[ModelInputs | None, tuple[tuple[int, int], ...]]:
        """The scorer's inputs and the scored words' spans (ms)."""
        features = self.features(mode)
        if features is None or not features.words:
            return None, ()
        spans = tuple((w.word.start_frame * FRAME_MS, w.word.end_frame * FRAME_MS) for w in features.words)
        return build_inputs(features, self.encoder.astype(np.float32)), spans


class Analyser:
    """The engine's stages run synchronously on one utterance at a time (one instance per worker process)."""

    def __init__(self, options: EngineOptions = EngineOptions()) -> None:
        from saywell.engine.alignment import PhoneAligner
        from saywell.engine.asr import WhisperAsr

        self.asr = WhisperAsr(options.asr)
        self.target_asr = WhisperAsr(options.target_asr) if options.target_asr else None
        self.aligner = PhoneAligner()

    def analyse(self, utt: str, audio: np.ndarray, reference_text: str) -> UtteranceAnalysis:
        from saywell.engine.asr import AsrRequest
        from saywell.engine.pipeline import MIN_TARGET_SAMPLES, plausible
        from saywell.engine.prosody import extract_prosody
        from saywell.engine.text import normalize_words

        duration_ms = len(audio) * 1000 // 16000
        recognised = _unwrap(self.asr.run_batch([AsrRequest(audio, with_encoder=True)])[0])
        target = None
        if self.target_asr is not None:  # the server's rule: audio too short for the target keeps its words
            too_short = len(audio) < MIN_TARGET_SAMPLES
            heard = recognised if too_short else _unwrap(self.target_asr.run_batch([AsrRequest(audio)])[0])
            target = Transcript(heard.text, plausible(heard, duration_ms))
        loop = self.aligner.phone_loop(audio)
        reference = tuple(normalize_words(reference_text))
        scored = target or Transcript(recognised.text, plausible(recognised, duration_ms))
        words = [w.text for w in scored.words]
        closed = self.aligner.align(audio, list(reference), loop)
        try:
            scored_alignment = self.aligner.align(audio, words, loop) if words else None
        except AlignmentError:  # e.g. a hallucinated transcript that cannot fit the audio: no open-mode item
            scored_alignment = None
        return UtteranceAnalysis(
            utt, duration_ms, Transcript(recognised.text, plausible(recognised, duration_ms)), target,
            recognised.encoder.astype(np.float16), extract_prosody(audio), reference, closed, scored_alignment)


def _unwrap(result):
    if isinstance(result, Exception):
        raise result
    return result


def target_name(options: EngineOptions) -> str:
    target: AsrOptions | None = options.target_asr
    return f"{options.asr.model}+{target.model}" if target else options.asr.model


def cache_folder(root: pathlib.Path, options: EngineOptions) -> pathlib.Path:
    return root / f"analysis-v{ANALYSIS_VERSION}-{target_name(options)}"


def load(path: pathlib.Path) -> UtteranceAnalysis:
    return pickle.loads(path.read_bytes())
