"""What training keeps of each utterance: the serving stages' raw outputs, not the features made from them.

Analysing an utterance (two Whisper passes, the phone loop, two forced alignments, prosody, encoder frames)
costs about a second of CPU; turning an analysis into features costs milliseconds. Caching analyses lets
features change without re-running the models. The stages and their options are the server's defaults, so
what training sees is what the server computes.
"""
from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import pickle
from dataclasses import dataclass

import numpy as np

from saywell.engine.features.model_inputs import ModelInputs, build_inputs
from saywell.engine.features.prosody import ProsodyTrack, extract_prosody
from saywell.engine.features.utterance import UtteranceFeatures, utterance_features
from saywell.engine.options import AsrOptions, EngineOptions
from saywell.engine.stages.alignment import Alignment
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
    """The cpu profile's own engine, run on one utterance at a time on a private event loop (one instance per
    worker process): training sees exactly what the server computes."""

    def __init__(self, options: EngineOptions = EngineOptions()) -> None:
        from saywell.engine.profiles.cpu.engine import CpuEngine

        self._loop = asyncio.new_event_loop()
        # In-process pocketsphinx: this worker process is the parallelism.
        self.engine = CpuEngine(dataclasses.replace(options, aligner_processes=False))

    def raw(self, audio: np.ndarray, reference_text: str):
        """The engine's `Analysis` of one utterance."""
        return self._loop.run_until_complete(self.engine.analyse(audio, reference_text))

    def analyse(self, utt: str, audio: np.ndarray, reference_text: str) -> UtteranceAnalysis:
        from saywell.engine.stages.asr import plausible

        raw = self.raw(audio, reference_text)
        recognised = raw.recognised
        return UtteranceAnalysis(
            utt, raw.duration_ms, Transcript(recognised.text, plausible(recognised, raw.duration_ms)), raw.target,
            recognised.encoder.astype(np.float16), extract_prosody(audio), raw.reference, raw.closed, raw.open)


def target_name(options: EngineOptions) -> str:
    target: AsrOptions | None = options.target_asr
    return f"{options.asr.model}+{target.model}" if target else options.asr.model


def cache_folder(root: pathlib.Path, options: EngineOptions) -> pathlib.Path:
    return root / f"analysis-v{ANALYSIS_VERSION}-{target_name(options)}"


def load(path: pathlib.Path) -> UtteranceAnalysis:
    return pickle.loads(path.read_bytes())
