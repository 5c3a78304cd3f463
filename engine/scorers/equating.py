"""Sentence scores spread like the experts': a linear map fitted on out-of-fold predictions.

A scorer trained on squared error predicts the experts' expected score, which pulls every learner toward the
middle of the scale: on validation fold 0 the cpu profile gave learners the experts rated 10 a sentence accuracy
of 8.8, and native speakers landed at the top of the learners' range rather than in the top band. Linear equating
maps the predictions' mean and spread onto the experts' (`to_mean + to_sd * (score - from_mean) / from_sd`),
both measured on the training folds' out-of-fold predictions, so a learner as far above the mean as the
experts' top learners gets their scores. A linear map leaves every correlation unchanged (only the clip to the
0..10 scale can move it); the cost is a somewhat larger squared error for learners the scorer misjudges.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCALE = (0.0, 10.0)


def fit_equating(predicted: np.ndarray, labels: np.ndarray, aspects: Sequence[str]) -> list[dict]:
    """Per aspect (columns of `predicted` and `labels`, out-of-fold predictions and the experts' scores): the
    means and standard deviations the map takes one to the other."""
    predicted, labels = np.asarray(predicted, float), np.asarray(labels, float)
    if predicted.shape != labels.shape or predicted.shape[1] != len(aspects) or len(predicted) < 3:
        raise ValueError(f"equating needs matching (n >= 3, {len(aspects)}) predictions and labels, got "
                         f"{predicted.shape} and {labels.shape}")
    table = []
    for k, aspect in enumerate(aspects):
        spread = float(predicted[:, k].std())
        if spread <= 0:
            raise ValueError(f"equating: the out-of-fold {aspect} predictions do not vary")
        table.append({"aspect": aspect, "from_mean": round(float(predicted[:, k].mean()), 4),
                      "from_sd": round(spread, 4), "to_mean": round(float(labels[:, k].mean()), 4),
                      "to_sd": round(float(labels[:, k].std()), 4)})
    return table


def equate(scores: np.ndarray, table: Sequence[dict] | None, aspects: Sequence[str] | None = None) -> np.ndarray:
    """Scores (..., aspects) mapped column by column, clipped to the 0..10 scale; unchanged without a table.
    `aspects`: the scores' columns, which the table's rows must name in the same order."""
    scores = np.asarray(scores, float)
    if not table:
        return scores
    if scores.shape[-1] != len(table):
        raise ValueError(f"equating table has {len(table)} aspects, scores have {scores.shape[-1]}")
    if aspects is not None and [row["aspect"] for row in table] != list(aspects):
        raise ValueError(f"equating table's aspects {[row['aspect'] for row in table]} are not the scores' "
                         f"{list(aspects)}")
    from_mean, from_sd, to_mean, to_sd = (np.array([row[key] for row in table], float)
                                          for key in ("from_mean", "from_sd", "to_mean", "to_sd"))
    return np.clip(to_mean + to_sd * (scores - from_mean) / from_sd, *SCALE)
