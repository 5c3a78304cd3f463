"""Phone-level agreement for `saywell eval`: predicted phones paired with labelled ones, and
mispronounced-phone detection (precision, recall, F1) against two readings of the labels."""
from __future__ import annotations

import numpy as np

from saywell.engine.language.lexicon import strip_stress
from saywell.engine.offline.dataset import LabeledWord
from saywell.engine.types import WordScore

# A phone is flagged as mispronounced when its predicted accuracy (0..2) is below this: the middle of the scale,
# nearer "wrong or missing" (0) than "correct" (2). The engine maps GOP linearly onto phone accuracy
# (scorers/baseline.py: -5 -> 0, -0.5 -> 2), so this flags a GOP below -2.75 nats per frame.
PHONE_FLAG_BELOW = 1.0
# The two readings of a phone's label (the experts' mean on 0..2) that the flags are scored against.
PHONE_POSITIVES = {"any_deviation": "human accuracy < 2", "wrong_phone": "human accuracy == 0"}
_LABEL_EPS = 1e-6
# Why a labelled word's phones could not be paired with predicted ones, in the order they are checked.
UNPAIRED_REASONS = ("failed_utterance", "word_count_mismatch", "no_phone_labels", "phone_mismatch")


def phone_pairs(words: tuple[WordScore, ...] | None, labels: tuple[LabeledWord, ...]) -> list[list | str]:
    """Per labelled word, its phones paired with the predicted ones as (labelled phone, predicted accuracy,
    human accuracy, the phone heard most over its span or "" when the engine gives none), or why they cannot be
    (one of UNPAIRED_REASONS).

    `words` are the assessed words (None for a failed utterance). Words are paired by position when there are as
    many assessed as labelled words; a word's phones when the sequences agree once stress digits are stripped.
    """
    out: list[list | str] = []
    for i, label in enumerate(labels):
        if words is None:
            out.append("failed_utterance")
        elif len(words) != len(labels):
            out.append("word_count_mismatch")
        elif not label.phones or len(label.phones) != len(label.phones_accuracy):
            out.append("no_phone_labels")
        elif [strip_stress(p.phone).upper() for p in words[i].phones] != \
                [strip_stress(p).upper() for p in label.phones]:
            out.append("phone_mismatch")
        else:
            out.append([(phone, float(p.accuracy), float(human), p.heard[0][0] if p.heard else "")
                        for phone, p, human in zip(label.phones, words[i].phones, label.phones_accuracy)])
    return out


def _phone_positives(true: np.ndarray) -> dict[str, np.ndarray]:
    return {"any_deviation": true < 2 - _LABEL_EPS, "wrong_phone": true <= _LABEL_EPS}


def detection_scores(flagged: np.ndarray, positive: np.ndarray) -> dict[str, float | int | None]:
    """Precision, recall and F1 of boolean flags against boolean labels. Precision is None when nothing is
    flagged, recall and F1 when nothing is positive (F1 is 0 when positives exist and nothing is flagged)."""
    flagged, positive = np.asarray(flagged, bool), np.asarray(positive, bool)
    tp, n_flagged, n_positives = int(np.sum(flagged & positive)), int(flagged.sum()), int(positive.sum())
    precision = tp / n_flagged if n_flagged else None
    recall = tp / n_positives if n_positives else None
    f1 = 2 * tp / (n_flagged + n_positives) if n_positives else None  # = 2PR / (P + R)
    return {"n_positives": n_positives, "n_flagged": n_flagged, "true_positives": tp, "precision": precision,
            "recall": recall, "f1": f1}


def best_f1_threshold(pred, positive) -> dict | None:
    """The threshold t (flag pred < t) with the highest F1 over every distinct cut of the predictions; the
    lowest such t on ties. Chosen on the data it is scored on, so optimistic. None without positives."""
    pred, positive = np.asarray(pred, float), np.asarray(positive, bool)
    if not len(pred) or not positive.any():
        return None
    order = np.argsort(pred, kind="stable")
    ordered, hits = pred[order], np.concatenate([[0], np.cumsum(positive[order])])
    candidates = np.append(np.unique(ordered), np.nextafter(ordered[-1], np.inf))  # the last flags every phone
    n_flagged = np.searchsorted(ordered, candidates, side="left")
    f1 = 2 * hits[n_flagged] / (n_flagged + positive.sum())
    best = int(np.argmax(f1))
    return {"threshold": float(candidates[best])} | detection_scores(pred < candidates[best], positive)


def phone_detection_report(pred: list[float], true: list[float], threshold: float = PHONE_FLAG_BELOW,
                           heard_other: list[bool] | None = None) -> dict:
    """Mispronounced-phone detection: flag pred < threshold, scored against both readings of the labels, and
    the best-F1 threshold on this same data as a diagnostic. With `heard_other` (per phone: the phone heard
    most over its span is another one), also the diagnosis: that rule alone as a detector, and the flagged
    phones whose diagnosis names another phone."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    positives = _phone_positives(true)
    flagged = pred < threshold
    diagnosis = {}
    if heard_other is not None and len(heard_other) == len(pred):
        other = np.asarray(heard_other, bool)
        diagnosis = {"diagnosis": {
            "heard_other_phone": {name: {"positive_when": PHONE_POSITIVES[name]} | detection_scores(other, positive)
                                  for name, positive in positives.items()},
            "flagged_and_heard_other": {
                name: {"positive_when": PHONE_POSITIVES[name]} | detection_scores(flagged & other, positive)
                for name, positive in positives.items()},
            "share_of_flagged_naming_another_phone": float(other[flagged].mean()) if flagged.any() else None}}
    return diagnosis | {
        "threshold": threshold, "flagged_when": "predicted phone accuracy (0..2) < threshold",
        "n_phones": len(pred),
        **{name: {"positive_when": PHONE_POSITIVES[name]} | detection_scores(flagged, positive)
           for name, positive in positives.items()},
        "best_f1_chosen_on_evaluated_data": {
            "note": "threshold picked to maximise F1 on these same phones: optimistic, not a held-out number",
            **{name: best_f1_threshold(pred, positive) for name, positive in positives.items()}},
    }
