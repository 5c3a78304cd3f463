"""Interim word scores from the recogniser's own outputs: its words, their probabilities and its encoder frames.

An interim decode through the full graph costs a Whisper decode plus two pocketsphinx passes (the phone loop and
the forced alignment): 247 ms of CPU for a 1.7 s live window, against 48 ms for the decode alone (24 live windows
of training speech, BENCHMARKS.md session 18). Under load those passes are what keep the streams' interims
apart. These trees score each recognised word from what the decode already gave: the word's Whisper probability
and timing, its neighbours', its pooled encoder frames on a few principal components, and the phone probe
(features/phone_probe.py) over its lexicon phones spread evenly across its span. An interim then costs the decode
alone. The scores are provisional: the segments and the final assessment still run the whole graph.

Training uses scikit-learn (`engine/offline/frame_words_training.py`); serving reads the trees with numpy alone.
"""
from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.features.phone_probe import CONSONANT, PHONE_INDEX, PhoneFrames, PhoneProbe
from saywell.engine.scorers.flags import threshold_at
from saywell.engine.scorers.word_trees import (BOOSTING, ENCODER_COMPONENTS, TreeEnsemble, principal_components,
                                               stress_errors, stress_score)
from saywell.engine.types import RecognizedWord, WordErrorType, WordScore

ENCODER_FRAME_MS = 20  # Whisper's encoder frames
SCALAR_NAMES = ("probability", "log_ms", "n_phones", "ms_per_phone", "previous_probability", "next_probability",
                "gap_before_ms", "gap_after_ms", "words", "ms_to_edge")
MAX_GAP_MS = 2000.0  # gaps and the distance to the live edge are clipped here (and mark a missing neighbour)
MISPRONOUNCED_BELOW = 5.0  # as the trained scorer: a word under it is a mispronunciation
FORMAT = 1
DEFAULT_PATH = pathlib.Path(__file__).resolve().parent.parent / "data" / "frame-words.npz"


@dataclass(frozen=True)
class FrameWordInputs:
    """One decode's words as the trees read them."""

    scalars: np.ndarray  # (words, len(SCALAR_NAMES))
    pooled: np.ndarray  # (words, encoder_dim): encoder mean over each word's span
    phones: PhoneFrames  # each word's lexicon phones over even shares of its span


def _frames(start_ms: int, end_ms: int, n_frames: int) -> tuple[int, int]:
    first = min(max(start_ms // ENCODER_FRAME_MS, 0), max(n_frames - 1, 0))
    last = min(max(-(-end_ms // ENCODER_FRAME_MS), first + 1), max(n_frames, first + 1))
    return first, last


def frame_word_inputs(words: Sequence[RecognizedWord], encoder: np.ndarray, audio_ms: int,
                      pronounce: Callable[[str], tuple[str, ...]]) -> FrameWordInputs:
    """`encoder`: (frames, dim) over the decoded audio from its start, 20 ms apart; `pronounce`: a word's lexicon
    phones with stress digits (Lexicon.pronounce)."""
    encoder = np.asarray(encoder, np.float32)
    n, dim = len(words), encoder.shape[1]
    probabilities = np.array([w.probability for w in words], np.float64)
    rows, pooled, ids, owners, phone_rows, stress = [], [], [], [], [], []
    for k, w in enumerate(words):
        first, last = _frames(w.start_ms, w.end_ms, len(encoder))
        pooled.append(encoder[first:last].mean(axis=0) if len(encoder) else np.zeros(dim, np.float32))
        try:
            phones = [p for p in pronounce(w.text) if p.rstrip("012") in PHONE_INDEX]
        except Exception:  # no pronunciation (a stray token): the word keeps its other numbers
            phones = []
        ms = max(w.end_ms - w.start_ms, 1)
        edges = np.linspace(first, last, len(phones) + 1) if phones else ()
        for j, phone in enumerate(phones):
            start = min(int(edges[j]), last - 1)
            end = max(int(np.ceil(edges[j + 1])), start + 1)
            ids.append(PHONE_INDEX[phone.rstrip("012")])
            owners.append(k)
            phone_rows.append(encoder[start:end].mean(axis=0))
            stress.append(int(phone[-1]) if phone[-1:].isdigit() else CONSONANT)
        gap_before = w.start_ms - words[k - 1].end_ms if k else MAX_GAP_MS
        gap_after = words[k + 1].start_ms - w.end_ms if k + 1 < n else MAX_GAP_MS
        rows.append([w.probability, np.log(ms), len(phones), ms / max(len(phones), 1),
                     probabilities[k - 1] if k else np.nan, probabilities[k + 1] if k + 1 < n else np.nan,
                     min(max(gap_before, 0), MAX_GAP_MS), min(max(gap_after, 0), MAX_GAP_MS), n,
                     min(max(audio_ms - w.end_ms, 0), MAX_GAP_MS)])
    phones = (PhoneFrames(np.asarray(ids, np.int64), np.asarray(owners, np.int64),
                          np.asarray(phone_rows, np.float32), np.asarray(stress, np.int64))
              if ids else PhoneFrames.empty(dim))
    return FrameWordInputs(np.asarray(rows, np.float64).reshape(n, len(SCALAR_NAMES)),
                           np.asarray(pooled, np.float32).reshape(n, dim), phones)


@dataclass(frozen=True)
class FrameWordScorer:
    accuracy: TreeEnsemble
    stress: TreeEnsemble  # classifier: P(at least two experts heard a stress error)
    total: TreeEnsemble
    encoder_mean: np.ndarray
    components: np.ndarray
    probe: PhoneProbe
    flag_thresholds: tuple[tuple[float, float], ...]  # (sensitivity, word accuracy below which a word is flagged)

    @property
    def width(self) -> int:
        """Columns of `features`: the scalars, the principal components, the probe's word features."""
        return len(SCALAR_NAMES) + len(self.components) + len(self.probe.names)

    def features(self, inputs: FrameWordInputs) -> np.ndarray:
        reduced = (inputs.pooled - self.encoder_mean) @ self.components.T
        probe = self.probe.word_features(inputs.phones, len(inputs.scalars))
        return np.hstack([inputs.scalars, reduced, probe]).astype(np.float64)

    def predict(self, inputs: FrameWordInputs) -> np.ndarray:
        """(words, 3): accuracy, stress, total on 0..10."""
        if not len(inputs.scalars):
            return np.zeros((0, 3))
        x = self.features(inputs)
        scores = np.stack([self.accuracy.predict(x), stress_score(self.stress.predict(x)), self.total.predict(x)],
                          axis=1)
        return np.clip(scores, 0.0, 10.0)

    def flag_threshold(self, sensitivity: float) -> float:
        return threshold_at(self.flag_thresholds, sensitivity)

    def score(self, words: Sequence[RecognizedWord], encoder: np.ndarray, audio_ms: int,
              pronounce: Callable[[str], tuple[str, ...]], sensitivity: float) -> tuple[WordScore, ...]:
        predicted = self.predict(frame_word_inputs(words, encoder, audio_ms, pronounce))
        threshold = self.flag_threshold(sensitivity)
        def inside(ms: int) -> int:  # Whisper may time a last word past the audio
            return min(max(ms, 0), audio_ms)

        return tuple(WordScore(w.text, inside(w.start_ms), inside(w.end_ms), float(a), float(s), float(t),
                               WordErrorType.MISPRONUNCIATION if a < MISPRONOUNCED_BELOW else WordErrorType.NONE,
                               bool(a < threshold))
                     for w, (a, s, t) in zip(words, predicted))

    def save(self, path: pathlib.Path, meta: dict) -> None:
        arrays = {**self.accuracy.arrays("accuracy"), **self.stress.arrays("stress"), **self.total.arrays("total"),
                  **self.probe.arrays(), "encoder_mean": self.encoder_mean, "components": self.components,
                  "flag_thresholds": np.asarray(self.flag_thresholds, np.float64),
                  "meta": np.asarray(json.dumps({**meta, "format": FORMAT, "scalars": SCALAR_NAMES,
                                                 "features": self.width}))}
        with open(path, "wb") as handle:  # np.savez would append ".npz" to a name without it
            np.savez_compressed(handle, **arrays)


def load_frame_words(path: pathlib.Path | str = DEFAULT_PATH) -> tuple[FrameWordScorer, dict]:
    with np.load(path) as arrays:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != FORMAT or tuple(meta.get("scalars", ())) != SCALAR_NAMES:
            raise ValueError(f"{path}: frame-word trees of another format ({meta.get('format')}); retrain them")
        probe = PhoneProbe.from_arrays(arrays)
        if probe is None:
            raise ValueError(f"{path}: no phone probe")
        scorer = FrameWordScorer(TreeEnsemble.from_arrays(arrays, "accuracy"),
                                 TreeEnsemble.from_arrays(arrays, "stress"),
                                 TreeEnsemble.from_arrays(arrays, "total"), np.asarray(arrays["encoder_mean"]),
                                 np.asarray(arrays["components"]), probe,
                                 tuple((float(s), float(t)) for s, t in arrays["flag_thresholds"]))
    if meta.get("features") != scorer.width:
        raise ValueError(f"{path}: trees of {meta.get('features')} features, but these scalars, components and "
                         f"probe make {scorer.width}; retrain them")
    return scorer, meta


def fit_frame_words(inputs: list[FrameWordInputs], targets: list[np.ndarray], probe: PhoneProbe,
                    flag_thresholds=((0.0, 0.0), (1.0, 0.0))) -> FrameWordScorer:
    """`targets`: per decode (words, 3) of accuracy, stress (the experts' mean), total; NaN where unlabelled.
    `probe`: fitted on forced-aligned phones of the same training speakers."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    except ImportError as exc:
        raise RuntimeError("fitting frame-word trees needs scikit-learn: pip install 'saywell[train]'") from exc

    mean, components = principal_components(np.concatenate([i.pooled for i in inputs]), ENCODER_COMPONENTS)
    draft = FrameWordScorer(None, None, None, mean, components, probe, tuple(flag_thresholds))
    x = np.concatenate([draft.features(i) for i in inputs if len(i.scalars)])
    y = np.concatenate([t for i, t in zip(inputs, targets) if len(i.scalars)])
    known = ~np.isnan(y).any(axis=1)
    x, y = x[known], y[known]
    return FrameWordScorer(TreeEnsemble.from_sklearn(HistGradientBoostingRegressor(**BOOSTING).fit(x, y[:, 0])),
                           TreeEnsemble.from_sklearn(HistGradientBoostingClassifier(**BOOSTING).fit(
                               x, stress_errors(y[:, 1]))),
                           TreeEnsemble.from_sklearn(HistGradientBoostingRegressor(**BOOSTING).fit(x, y[:, 2])),
                           mean, components, probe, tuple(tuple(map(float, r)) for r in flag_thresholds))
