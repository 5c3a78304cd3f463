"""Gradient-boosted trees beside the heads: word and sentence scores from the heads' own inputs, flattened,
averaged with the heads' scores.

The heads (heads.py) are small networks trained on ~2,000 utterances; trees over the same numbers make
different errors, and their average beats either. The cpu profile blends its word network with trees the same
way (scorers/word_trees.py, whose flat tree format and numpy evaluator this module reuses).

Per word the trees read the word's numbers (`WORD_FEATURES`), the number of words and its neighbours' mean GOP,
the utterance's numbers (`SENTENCE_FEATURES`), the mean and minimum of each of its phones' numbers
(`PHONE_FEATURES`) and its pooled SSL frames projected on 16 principal components. Per utterance they read the
utterance's numbers, the mean and minimum of the word numbers, the mean of the phone numbers, the word count
and the pooled utterance frames on 16 principal components. Word stress is a classifier of a stress error, as
in the cpu profile, reported as 10 - 5 x its probability (the 10/5 scale).

Measured on cached fold-0 and fold-4 examples (CV, not held-out; engine/profiles/neural/README.md, "Trees beside
the heads"): blending at 0.5 raised closed word accuracy PCC 0.624 -> 0.681 and 0.634 -> 0.690, open 0.408 ->
0.460 and 0.248 -> 0.295, and the sentence aspects by -0.007..+0.066.

The trees file records the hash of the heads checkpoint it was fitted beside; loading it beside another
heads.pt is refused.

Fitting needs scikit-learn (the `train` extra); serving reads the exported trees with numpy alone.
"""
from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saywell.engine.profiles.neural.config import file_hash
from saywell.engine.profiles.neural.heads import SENTENCE_ASPECTS, WORD_ASPECTS, HeadsItem
from saywell.engine.profiles.neural.inputs import PHONE_FEATURES, SENTENCE_FEATURES, WORD_FEATURES, phones_of_words
from saywell.engine.scorers.word_trees import (BOOSTING, TreeEnsemble, neighbour_context, principal_components,
                                               stress_errors, stress_score)
from saywell.engine.types import EngineError

TREES_FORMAT = "saywell-neural-trees/1"
TREES_FILE = "trees.npz"
SHARE = 0.5  # the trees' share of each blended score, as in the cpu profile's word scores
COMPONENTS = 16  # principal components of the pooled SSL frames
SENTENCE_BOOSTING = {**BOOSTING, "min_samples_leaf": 20}  # ~4,000 utterance rows against ~50,000 word rows
GOP_MEAN = WORD_FEATURES.index("gop_mean")


def _mean(frames: np.ndarray) -> np.ndarray:
    """The mean frame, zeros for no frames (as heads.pool counts them)."""
    return frames.sum(0) / max(len(frames), 1)


def pooled_words(item: HeadsItem) -> np.ndarray:
    """(N, D): each word's mean frame over its [start, end) span, as heads.pool pools it."""
    frames = np.asarray(item.frames, np.float32)
    return np.stack([_mean(frames[int(s):int(e)]) for s, e in item.spans]).reshape(len(item.spans), frames.shape[1])


def word_numbers(item: HeadsItem) -> np.ndarray:
    """(N, ...) the word rows before the frames' components."""
    words = np.asarray(item.words, np.float32)
    n = len(words)
    phones = np.zeros((n, 2 * len(PHONE_FEATURES)), np.float32)
    for index, mine in enumerate(phones_of_words(item.phones, item.phone_owner, n)):
        if len(mine):
            phones[index] = np.r_[mine.mean(0), mine.min(0)]
    return np.hstack([words, neighbour_context(words[:, GOP_MEAN]),
                      np.repeat(np.asarray(item.sentence, np.float32)[None], n, 0), phones])


def sentence_numbers(item: HeadsItem) -> np.ndarray:
    """(...) the utterance row before the frames' components."""
    words = np.asarray(item.words, np.float32)
    phones = item.phones.mean(0) if len(item.phones) else np.zeros(len(PHONE_FEATURES), np.float32)
    return np.r_[item.sentence, words.mean(0), words.min(0), phones, len(words)].astype(np.float32)


@dataclass(frozen=True)
class Projection:
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (COMPONENTS, D)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return (rows - self.mean) @ self.components.T


def word_features(item: HeadsItem, frames: Projection) -> np.ndarray:
    return np.hstack([word_numbers(item), frames(pooled_words(item))]).astype(np.float64)


def sentence_features(item: HeadsItem, frames: Projection) -> np.ndarray:
    utterance = _mean(np.asarray(item.frames, np.float32))
    return np.r_[sentence_numbers(item), frames(utterance)].astype(np.float64)[None]


@dataclass(frozen=True)
class HeadTrees:
    words: tuple[TreeEnsemble, TreeEnsemble, TreeEnsemble]  # accuracy, stress (a classifier), total
    sentence: tuple[TreeEnsemble, ...]  # accuracy, fluency, prosody, total
    word_frames: Projection
    utterance_frames: Projection
    share: float = SHARE

    @property
    def ssl_dim(self) -> int:
        return int(self.word_frames.mean.shape[0])

    def predict(self, item: HeadsItem) -> tuple[np.ndarray, np.ndarray]:
        """Word scores (N, 3) and sentence scores (4,) on 0..10."""
        x = word_features(item, self.word_frames)
        accuracy, stress, total = self.words
        words = np.stack([accuracy.predict(x), stress_score(stress.predict(x)), total.predict(x)], axis=1)
        s = sentence_features(item, self.utterance_frames)
        sentence = np.array([tree.predict(s)[0] for tree in self.sentence])
        return np.clip(words, 0, 10).astype(np.float32), np.clip(sentence, 0, 10).astype(np.float32)

    def blend(self, item: HeadsItem, scores: tuple[np.ndarray, np.ndarray, np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The heads' (words, sentence, phones) with the trees' words and sentence averaged in."""
        words, sentence = self.predict(item)
        heads_words, heads_sentence, phones = scores
        return ((1 - self.share) * heads_words + self.share * words,
                (1 - self.share) * heads_sentence + self.share * sentence, phones)

    def save(self, path: Path, meta: dict) -> None:
        arrays: dict[str, np.ndarray] = {}
        for name, tree in zip(WORD_ASPECTS, self.words):
            arrays.update(tree.arrays(f"word_{name}"))
        for name, tree in zip(SENTENCE_ASPECTS, self.sentence):
            arrays.update(tree.arrays(f"sentence_{name}"))
        arrays.update({"word_frames.mean": self.word_frames.mean, "word_frames.components": self.word_frames.components,
                       "utterance_frames.mean": self.utterance_frames.mean,
                       "utterance_frames.components": self.utterance_frames.components})
        header = {"format": TREES_FORMAT, "share": self.share, "word_features": list(WORD_FEATURES),
                  "sentence_features": list(SENTENCE_FEATURES), "phone_features": list(PHONE_FEATURES), "meta": meta}
        with open(path, "wb") as out:
            np.savez_compressed(out, header=np.asarray(json.dumps(header)), **arrays)


def load_trees(path: Path) -> tuple[HeadTrees, dict]:
    if not Path(path).is_file():
        raise EngineError(f"the neural model folder names trees at {path}, and there is no such file: train the "
                          "heads again (--trees-share 0 trains heads served alone)")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            header = json.loads(str(arrays["header"])) if "header" in arrays else {}
            if header.get("format") != TREES_FORMAT or tuple(header["word_features"]) != WORD_FEATURES or \
                    tuple(header["sentence_features"]) != SENTENCE_FEATURES or \
                    tuple(header["phone_features"]) != PHONE_FEATURES:
                raise EngineError(f"{path} was fitted on other inputs than this saywell builds; train the heads again")
            trees = HeadTrees(
                tuple(TreeEnsemble.from_arrays(arrays, f"word_{n}") for n in WORD_ASPECTS),  # type: ignore[arg-type]
                tuple(TreeEnsemble.from_arrays(arrays, f"sentence_{n}") for n in SENTENCE_ASPECTS),
                Projection(arrays["word_frames.mean"], arrays["word_frames.components"]),
                Projection(arrays["utterance_frames.mean"], arrays["utterance_frames.components"]),
                float(header["share"]))
            meta = dict(header["meta"])
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise EngineError(f"{path} is not a readable trees file ({type(exc).__name__}: {exc}); train the heads "
                          "again") from exc
    if not 0 <= trees.share <= 1:
        raise EngineError(f"{path}: the trees' share {trees.share} is outside [0, 1]")
    return trees, meta


class TreesBlend:
    """The trees of a model folder, loaded once on first use (thread-safe) and refused unless fitted beside
    `heads` (the checkpoint served), or nothing when the folder has none."""

    def __init__(self, path: Path | None, heads: Path) -> None:
        self.path = path
        self.heads = heads
        self._trees: HeadTrees | None = None
        self._lock = threading.Lock()

    def load(self) -> HeadTrees | None:
        if self.path is None:
            return None
        with self._lock:
            if self._trees is None:
                trees, meta = load_trees(self.path)
                fitted_beside, served = meta.get("heads"), file_hash(self.heads)
                if fitted_beside != served:
                    beside = f"beside heads {fitted_beside}" if fitted_beside else "without recording its heads"
                    raise EngineError(f"{self.path} was fitted {beside}, and {self.heads.name} is {served}: train "
                                      "the heads again (both are written together)")
                self._trees = trees
            return self._trees

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def check(self, ssl_dim: int) -> None:
        """Loads the trees (refusing other heads' trees) and refuses trees fitted on other frames."""
        trees = self.load()
        if trees is None:
            return
        if trees.ssl_dim != ssl_dim:
            raise EngineError(f"{self.path} was fitted on {trees.ssl_dim}-d SSL frames and the heads read "
                              f"{ssl_dim}-d ones: train the heads again")

    def __call__(self, item: HeadsItem, scores: tuple[np.ndarray, np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        trees = self.load()
        return scores if trees is None else trees.blend(item, scores)


def _constant(value: float, logistic: bool) -> TreeEnsemble:
    """One leaf: what a fit gives where the targets hold one value (a tiny corpus, no stress error in it)."""
    if logistic:
        value = float(np.log(np.clip(value, 1e-6, 1 - 1e-6) / (1 - np.clip(value, 1e-6, 1 - 1e-6))))
    one = np.zeros(1)
    return TreeEnsemble(one.astype(np.int32), one, np.ones(1, bool), one.astype(np.int32), one.astype(np.int32),
                        np.ones(1, bool), one, np.zeros(1, np.int32), value, logistic)


def _regressor(x: np.ndarray, y: np.ndarray, settings: dict) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingRegressor

    if len(np.unique(y)) < 2:
        return _constant(float(y[0]) if len(y) else 0.0, False)
    return TreeEnsemble.from_sklearn(HistGradientBoostingRegressor(**settings).fit(x, y))


def _classifier(x: np.ndarray, wrong: np.ndarray, settings: dict) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingClassifier

    if len(np.unique(wrong)) < 2:
        return _constant(float(wrong.mean()) if len(wrong) else 0.0, True)
    return TreeEnsemble.from_sklearn(HistGradientBoostingClassifier(**settings).fit(x, wrong))


def fit_trees(items: Sequence[HeadsItem], word_targets: Sequence[np.ndarray], sentence_targets: Sequence[np.ndarray],
              share: float = SHARE) -> HeadTrees:
    """`word_targets`: per item (N, 3) accuracy, stress, total (NaN: no label); `sentence_targets`: per item (4,).
    Stress errors are counted as the cpu profile counts them: STRESS_ERROR_EXPERTS of five experts on the 10/5
    scale (with median labels, a label of 5)."""
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("fitting the neural profile's trees needs scikit-learn: pip install 'saywell[train]'") from exc
    word_frames = Projection(*principal_components(np.concatenate([pooled_words(i) for i in items]), COMPONENTS))
    utterance_frames = Projection(*principal_components(
        np.stack([np.asarray(i.frames, np.float32).mean(0) for i in items]), COMPONENTS))
    x = np.concatenate([word_features(i, word_frames) for i in items])
    y = np.concatenate(word_targets).astype(np.float64)
    known = ~np.isnan(y).any(axis=1)
    x, y = x[known], y[known]
    words = (_regressor(x, y[:, 0], BOOSTING), _classifier(x, stress_errors(y[:, 1]), BOOSTING),
             _regressor(x, y[:, 2], BOOSTING))
    xs = np.concatenate([sentence_features(i, utterance_frames) for i in items])
    ys = np.stack(sentence_targets).astype(np.float64)
    sentence = tuple(_regressor(xs, ys[:, j], SENTENCE_BOOSTING) for j in range(len(SENTENCE_ASPECTS)))
    return HeadTrees(words, sentence, word_frames, utterance_frames, share)
