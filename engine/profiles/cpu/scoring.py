"""The cpu profile's last stage: prosody, features and the scorer, batched across utterances."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.features.prosody import extract_prosody
from saywell.engine.features.utterance import utterance_features, windowed_features
from saywell.engine.language.text import normalize_words
from saywell.engine.scorers import ScoreJob
from saywell.engine.stages.alignment import Alignment
from saywell.engine.types import AssessmentRequest, EngineError, Transcript


@dataclass(frozen=True)
class ScoreItem:
    audio: np.ndarray
    transcript: Transcript
    alignment: Alignment
    request: AssessmentRequest
    partial: bool  # interim words only, scored as recognised words
    target: Transcript | None = None  # open mode with a target ASR: the words aligned and scored
    # A long utterance's sentence-sized windows: ([first, last) words, first frame, that stretch's encoder frames)
    windows: tuple[tuple[tuple[int, int], int, np.ndarray], ...] = ()


class ScoringStage:
    """Cheap, but CPU work that must stay off the event loop. Each scorer gets all of a batch's utterances
    that chose it in one call, so a network scorer runs one forward pass for many streams."""

    name = "score"

    def __init__(self, scorers: dict, default_scorer: str) -> None:
        self.scorers = scorers
        self.default_scorer = default_scorer

    def scorer_for(self, name: str):
        scorer = self.scorers.get(name or self.default_scorer)
        if scorer is None:
            raise EngineError(f"unknown scorer {name!r}; available: {', '.join(self.scorers)}")
        return scorer

    def load(self) -> None:
        for scorer in self.scorers.values():
            scorer.version()  # loads calibration / checkpoints

    def close(self) -> None:
        pass

    def run_batch(self, items: Sequence[ScoreItem]) -> list:
        results: list = [None] * len(items)
        groups: dict[str, list[tuple[int, ScoreJob]]] = {}
        for index, item in enumerate(items):
            try:
                scorer = self.scorer_for(item.request.scorer)
                groups.setdefault(scorer.name, []).append((index, self._job(item)))
            except EngineError as exc:
                results[index] = exc
            except Exception as exc:  # one utterance's bad luck must not fail the batch
                results[index] = EngineError(f"scoring failed: {type(exc).__name__}: {exc}")
        for name, jobs in groups.items():
            scorer = self.scorers[name]
            for (index, job), result in zip(jobs, scorer.score_batch([job for _, job in jobs])):
                if isinstance(result, Exception) and not isinstance(result, EngineError):
                    result = EngineError(f"scoring failed: {type(result).__name__}: {result}")
                results[index] = result if job.words_only or isinstance(result, Exception) else result + (name,)
        return results

    @staticmethod
    def _job(item: ScoreItem) -> ScoreJob:
        request = item.request
        closed = request.closed and not item.partial
        if closed:
            reference = normalize_words(request.reference_text)
        elif item.target is not None:
            reference = [w.text for w in item.target.words]
        else:
            reference = None
        prosody = extract_prosody(item.audio)
        features = utterance_features(item.alignment, item.transcript, prosody, reference, item.target)
        windows = ()
        if item.windows and not item.partial:
            parts = windowed_features(features, item.transcript, prosody, reference is not None,
                                      [w for w, _, _ in item.windows], [start for _, start, _ in item.windows])
            windows = tuple(zip(parts, [encoder for _, _, encoder in item.windows]))
        # Open-mode features without a target ASR's words (interim decodes, or an engine without a target)
        # are scored by the model fitted on such features.
        return ScoreJob(features, closed, request.flag_sensitivity, item.transcript.encoder,
                        single_asr=item.target is None, words_only=item.partial, windows=windows)
