"""Gradient-boosted trees over each word's features, averaged with the network's word scores.

The trees see what the network sees, flattened: the word's scalars (GOP, timing, agreement, per-word prosody),
its neighbours' GOP, the utterance's scalars and the word's pooled encoder frames reduced to a few principal
components, plus the phone probe's goodness of the word's phones and its vowel-stress contrast
(engine/phone_probe.py), fitted with them.
Word stress is a classifier of "at least two of the five experts heard a stress error": a denser target than
the official median (160 errors in 15,849 words) that still ranks words the way the median does.

Training uses scikit-learn (the `train` extra); serving reads the exported trees with numpy alone.
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

import numpy as np

from saywell.engine.features.model_inputs import ModelInputs
from saywell.engine.features.phone_probe import PhoneProbe, fit_phone_probe, probe_features

ENCODER_COMPONENTS = 16
STRESS_ERROR_EXPERTS = 2  # the stress trees predict P(at least this many experts heard a stress error)
STRESS_RIGHT, STRESS_WRONG = 10.0, 5.0  # speechocean762's two stress labels
EXPERTS = 5
BOOSTING = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 40,
            "l2_regularization": 1.0, "random_state": 0}
NEIGHBOUR_COLUMN = 0  # gop_mean: the first word scalar


@dataclass(frozen=True)
class TreeEnsemble:
    """Boosted trees in flat arrays; children are global node indices. Missing values follow `missing_left`."""
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: float
    logistic: bool  # a classifier: the raw sum is a log-odds

    @classmethod
    def from_sklearn(cls, model) -> "TreeEnsemble":
        """From a fitted HistGradientBoostingRegressor or binary HistGradientBoostingClassifier."""
        nodes, roots, offset = [], [], 0
        for (predictor,) in model._predictors:
            tree = predictor.nodes
            roots.append(offset)
            shifted = tree.copy()
            shifted["left"] = tree["left"] + offset
            shifted["right"] = tree["right"] + offset
            nodes.append(shifted)
            offset += len(tree)
        flat = np.concatenate(nodes)
        return cls(flat["feature_idx"].astype(np.int32), flat["num_threshold"].astype(np.float64),
                   flat["missing_go_to_left"].astype(bool), flat["left"].astype(np.int32),
                   flat["right"].astype(np.int32), flat["is_leaf"].astype(bool), flat["value"].astype(np.float64),
                   np.asarray(roots, np.int32), float(np.ravel(model._baseline_prediction)[0]),
                   hasattr(model, "predict_proba"))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, features) -> (n,): the regression value, or the classifier's probability."""
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        while True:
            inner = ~self.leaf[node]
            if not inner.any():
                break
            value = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(value), self.missing_left[node], value <= self.threshold[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        raw = self.baseline + self.value[node].sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw)) if self.logistic else raw

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.{name}": np.asarray(getattr(self, name)) for name in
                ("feature", "threshold", "missing_left", "left", "right", "leaf", "value", "roots", "baseline",
                 "logistic")}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "TreeEnsemble":
        return cls(*(arrays[f"{prefix}.{name}"] for name in
                     ("feature", "threshold", "missing_left", "left", "right", "leaf", "value", "roots")),
                   float(arrays[f"{prefix}.baseline"]), bool(arrays[f"{prefix}.logistic"]))


def sentence_width(inputs: ModelInputs, encoder_dim: int) -> int:
    """The utterance scalars' share of the sentence vector (the rest is the encoder's mean and spread)."""
    return len(inputs.sentence) - 2 * encoder_dim


def neighbour_context(gop: np.ndarray) -> np.ndarray:
    """(N, 3) per word: the number of words, the previous and the next word's GOP (0 at the ends)."""
    n = len(gop)
    return np.stack([np.full(n, n, np.float32), np.r_[0.0, gop[:-1]], np.r_[gop[1:], 0.0]], axis=1)


def stress_score(wrong: np.ndarray) -> np.ndarray:
    """The stress classifier's probability of an error -> the expected label on the 10/5 scale."""
    return STRESS_RIGHT - (STRESS_RIGHT - STRESS_WRONG) * wrong


def stress_errors(stress: np.ndarray) -> np.ndarray:
    """The stress classifier's targets: at least STRESS_ERROR_EXPERTS of five experts heard an error (stress the
    experts' mean on the 10/5 scale)."""
    return (STRESS_RIGHT - stress) / (STRESS_RIGHT - STRESS_WRONG) * EXPERTS >= STRESS_ERROR_EXPERTS - 1e-3


def flat_features(inputs: ModelInputs) -> np.ndarray:
    """Per word: its scalars, the utterance's length, its neighbours' GOP and the utterance scalars."""
    scalars = inputs.word_scalars
    n = len(scalars)
    gop = scalars[:, NEIGHBOUR_COLUMN]
    context = neighbour_context(gop)
    utterance = inputs.sentence[:sentence_width(inputs, inputs.word_encoder.shape[1])]
    return np.hstack([scalars, context, np.repeat(utterance[None, :], n, axis=0)])


def tree_features(inputs: ModelInputs, encoder_mean: np.ndarray, encoder_components: np.ndarray,
                  probe: PhoneProbe | None = None) -> np.ndarray:
    """`flat_features` plus the word's pooled encoder frames projected on the principal components, plus the
    phone probe's word features when there is a probe."""
    reduced = (inputs.word_encoder - encoder_mean) @ encoder_components.T
    parts = [flat_features(inputs), reduced]
    if probe is not None:
        parts.append(probe_features(inputs, probe))
    return np.hstack(parts).astype(np.float64)


@dataclass(frozen=True)
class WordTrees:
    accuracy: TreeEnsemble
    stress: TreeEnsemble  # classifier: at least STRESS_ERROR_EXPERTS experts heard a stress error
    total: TreeEnsemble
    encoder_mean: np.ndarray  # (encoder_dim,)
    encoder_components: np.ndarray  # (ENCODER_COMPONENTS, encoder_dim)
    probe: PhoneProbe | None = None  # None: trees fitted before the phone probe existed

    def features(self, inputs: ModelInputs) -> np.ndarray:
        return tree_features(inputs, self.encoder_mean, self.encoder_components, self.probe)

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """(words, 3): accuracy, stress, total on 0..10."""
        x = self.features(inputs)
        stress = stress_score(self.stress.predict(x))
        return np.clip(np.stack([self.accuracy.predict(x), stress, self.total.predict(x)], axis=1), 0.0, 10.0)

    def save(self, path: pathlib.Path, meta: dict) -> None:
        arrays = {**self.accuracy.arrays("accuracy"), **self.stress.arrays("stress"), **self.total.arrays("total"),
                  "encoder_mean": self.encoder_mean, "encoder_components": self.encoder_components,
                  **(self.probe.arrays() if self.probe is not None else {}), "meta": np.asarray(json.dumps(meta))}
        with open(path, "wb") as out:
            np.savez_compressed(out, **arrays)


def word_trees_path(checkpoint: pathlib.Path | str) -> pathlib.Path:
    """The trees shipped beside a network checkpoint: trained-open.pt -> word-trees-open.npz."""
    checkpoint = pathlib.Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem.replace("trained-", "word-trees-") + ".npz")


def load_word_trees(path: pathlib.Path) -> tuple[WordTrees, dict]:
    with np.load(path, allow_pickle=False) as arrays:
        trees = WordTrees(*(TreeEnsemble.from_arrays(arrays, name) for name in ("accuracy", "stress", "total")),
                          arrays["encoder_mean"], arrays["encoder_components"], PhoneProbe.from_arrays(arrays))
        return trees, json.loads(str(arrays["meta"]))


def principal_components(rows: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    mean = rows.mean(axis=0)
    _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
    return mean.astype(np.float32), vt[:count].astype(np.float32)


def fit_probe(inputs: list[ModelInputs]) -> PhoneProbe | None:
    """The phone probe of these inputs' aligned phones; None when none carries phones."""
    phones = [i.phones for i in inputs if i.phones is not None and len(i.phones.ids)]
    return fit_phone_probe(phones) if phones else None


def fit_word_trees(inputs: list[ModelInputs], targets: list[np.ndarray], probe: PhoneProbe | None = None
                   ) -> WordTrees:
    """`targets`: per utterance (words, 3) of accuracy, stress, total, NaN where unlabelled; stress is the experts'
    mean (10 - the number of experts who heard an error, on speechocean762's 10/5 scale)."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    except ImportError as exc:
        raise RuntimeError("fitting word trees needs scikit-learn: pip install 'saywell[train]'") from exc

    encoder = np.concatenate([i.word_encoder for i in inputs])
    mean, components = principal_components(encoder, ENCODER_COMPONENTS)
    probe = probe or fit_probe(inputs)
    x = np.concatenate([tree_features(i, mean, components, probe) for i in inputs])
    y = np.concatenate(targets)
    known = ~np.isnan(y).any(axis=1)
    x, y = x[known], y[known]
    stress = HistGradientBoostingClassifier(**BOOSTING).fit(x, stress_errors(y[:, 1]))
    return WordTrees(TreeEnsemble.from_sklearn(HistGradientBoostingRegressor(**BOOSTING).fit(x, y[:, 0])),
                     TreeEnsemble.from_sklearn(stress),
                     TreeEnsemble.from_sklearn(HistGradientBoostingRegressor(**BOOSTING).fit(x, y[:, 2])),
                     mean, components, probe)
