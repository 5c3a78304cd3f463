"""Word flags: `flag_sensitivity` picks a point on the precision/recall curve measured on training data.

Sensitivity 0 flags only what is wrong 97% of the time, 0.5 (the default) 90%, 1 accepts 70% precision for
more recall; values between interpolate the thresholds.
"""
from __future__ import annotations

import numpy as np

SENSITIVITY_PRECISION = ((0.0, 0.97), (0.5, 0.90), (1.0, 0.70))
DEFAULT_SENSITIVITY = 0.5  # engine.types.AssessmentConfig's default
MIN_FLAGGED = 10  # a threshold must flag at least this many training words to count


def threshold_for_precision(predicted: np.ndarray, needs_work: np.ndarray, min_precision: float) -> float:
    """Highest accuracy threshold whose flags (predicted < threshold) keep the wanted precision."""
    best = float(np.min(predicted)) - 0.01 if len(predicted) else 0.0
    for threshold in np.arange(0.5, 10.0, 0.05):
        flagged = predicted < threshold
        if flagged.sum() >= MIN_FLAGGED and needs_work[flagged].mean() >= min_precision:
            best = float(threshold)
    return best


def fit_thresholds(predicted: np.ndarray, needs_work: np.ndarray) -> list[list[float]]:
    """[[sensitivity, threshold], ...], thresholds non-decreasing in sensitivity."""
    table, floor = [], -np.inf
    for sensitivity, precision in SENSITIVITY_PRECISION:
        floor = max(floor, threshold_for_precision(predicted, needs_work, precision))
        table.append([sensitivity, round(floor, 3)])
    return table


def threshold_at(table, sensitivity: float) -> float:
    xs, ys = zip(*table)
    return float(np.interp(sensitivity, xs, ys))
