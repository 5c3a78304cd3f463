"""The calibrated baseline scorer: standardised linear heads over the features of `features.py`.

Each head is `clip(bias + weights · (x - mean) / scale, 0, 10)`, fitted by ridge regression on speaker-disjoint
training folds of speechocean762 (`saywell.engine.offline.calibration`); the fitted numbers ship in
`data/baseline.json` with the data, folds and date they came from. Total follows the corpus rubric:
0.8 · accuracy · completeness/10 + 0.1 · fluency + 0.1 · prosody.
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

import numpy as np

from saywell.engine.features.utterance import UtteranceFeatures, WordFeatures
from saywell.engine.scorers.flags import threshold_at
from saywell.engine.types import FRAME_MS, PhoneScore, SentenceScores, WordErrorType, WordScore
from saywell.engine.weights import PACKAGED_DATA

DEFAULT_CALIBRATION = PACKAGED_DATA / "baseline.json"
OMISSION_MS_PER_PHONE = 35.0  # a forced-aligned word squeezed below this was probably not said
MISPRONOUNCED_BELOW = 5.0  # word accuracy under this is reported as a mispronunciation
PHONE_GOP_GOOD, PHONE_GOP_BAD = -0.5, -5.0  # GOP mapped linearly onto phone accuracy 2 .. 0


@dataclass(frozen=True)
class LinearHead:
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def predict(self, values: dict[str, float]) -> float:
        x = np.array([values.get(name, 0.0) for name in self.features])
        z = (x - np.array(self.mean)) / np.array(self.scale)
        return float(np.clip(self.bias + float(np.dot(self.weights, z)), 0.0, 10.0))

    @classmethod
    def from_dict(cls, data: dict) -> "LinearHead":
        return cls(tuple(data["features"]), tuple(data["mean"]), tuple(data["scale"]),
                   tuple(data["weights"]), float(data["bias"]))


@dataclass(frozen=True)
class BaselineCalibration:
    word: dict[str, LinearHead]  # accuracy, stress, total
    sentence_closed: dict[str, LinearHead]  # accuracy, fluency, prosody
    sentence_open: dict[str, LinearHead]
    flag_thresholds: tuple[tuple[float, float], ...]  # (sensitivity, word accuracy threshold), see flags.py
    meta: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: pathlib.Path = DEFAULT_CALIBRATION) -> "BaselineCalibration":
        data = json.loads(pathlib.Path(path).read_text())
        heads = lambda group: {k: LinearHead.from_dict(v) for k, v in data[group].items()}  # noqa: E731
        return cls(heads("word"), heads("sentence_closed"), heads("sentence_open"),
                   tuple(tuple(row) for row in data["flag_thresholds"]), data.get("meta", {}))

    def threshold(self, sensitivity: float) -> float:
        return threshold_at(self.flag_thresholds, sensitivity)


def phone_accuracy(gop: float) -> float:
    return float(np.clip((gop - PHONE_GOP_BAD) / (PHONE_GOP_GOOD - PHONE_GOP_BAD) * 2, 0.0, 2.0))


def phone_scores(word: WordFeatures) -> tuple[PhoneScore, ...]:
    return tuple(PhoneScore(p.phone, p.start_frame * FRAME_MS, p.end_frame * FRAME_MS, float(p.gop),
                            phone_accuracy(p.gop), tuple((h, round(share, 3)) for h, share in p.heard[:3]))
                 for p in word.word.phones)


def is_omitted(word: WordFeatures) -> bool:
    """MultiPA-style duration rule, guarded by the ASR: not heard, and squeezed by the forced alignment.

    A GOP criterion was dropped: on speechocean762 unheard words with GOP < -6 are mispronounced (mean expert
    accuracy 5.7 over 233 words), not omitted (0.02% of words there are rated 0).
    """
    return not word.recognized and word.values["ms_per_phone"] < OMISSION_MS_PER_PHONE


class BaselineScorer:
    name = "baseline"

    def __init__(self, calibration_path: pathlib.Path = DEFAULT_CALIBRATION) -> None:
        self.calibration_path = calibration_path
        self._calibration: BaselineCalibration | None = None

    @property
    def calibration(self) -> BaselineCalibration:
        if self._calibration is None:
            self._calibration = BaselineCalibration.load(self.calibration_path)
        return self._calibration

    def score_word(self, word: WordFeatures, sensitivity: float, closed: bool) -> WordScore:
        cal = self.calibration
        w = word.word
        if closed and is_omitted(word):
            return WordScore(w.text, w.start_frame * FRAME_MS, w.end_frame * FRAME_MS, 0.0, 0.0, 0.0,
                             WordErrorType.OMISSION, True, phone_scores(word))
        accuracy = cal.word["accuracy"].predict(word.values)
        stress = cal.word["stress"].predict(word.values)
        total = cal.word["total"].predict({**word.values, "pred_accuracy": accuracy, "pred_stress": stress})
        error = WordErrorType.MISPRONUNCIATION if accuracy < MISPRONOUNCED_BELOW else WordErrorType.NONE
        return WordScore(w.text, w.start_frame * FRAME_MS, w.end_frame * FRAME_MS, accuracy, stress, total,
                         error, accuracy < cal.threshold(sensitivity), phone_scores(word))

    def version(self) -> str:
        return str(self.calibration.meta.get("version", "unversioned"))

    def flag_threshold(self, sensitivity: float, closed: bool = True, single_asr: bool = False) -> float:
        return self.calibration.threshold(sensitivity)  # one word model serves every mode

    def score_batch(self, jobs):
        from saywell.engine.scorers import score_each

        return score_each(self, jobs)

    def score_words(self, features: UtteranceFeatures, sensitivity: float, encoder: np.ndarray | None = None,
                    single_asr: bool = False) -> tuple[WordScore, ...]:
        """Words of an utterance still in progress, scored as recognised words."""
        return tuple(self.score_word(w, sensitivity, False) for w in features.words)

    def score(self, features: UtteranceFeatures, closed: bool, sensitivity: float,
              encoder: np.ndarray | None = None,
              single_asr: bool = False) -> tuple[SentenceScores, tuple[WordScore, ...]]:
        words = tuple(self.score_word(w, sensitivity, closed) for w in features.words)
        if not words:
            return SentenceScores(0.0, 0.0, 0.0, 0.0, 0.0 if closed else None), ()
        heads = self.calibration.sentence_closed if closed else self.calibration.sentence_open
        values = dict(features.sentence)
        values["pred_word_accuracy"] = float(np.mean([w.accuracy for w in words]))
        accuracy = heads["accuracy"].predict(values)
        fluency = heads["fluency"].predict(values)
        prosody = heads["prosody"].predict(values)
        completeness = None
        if closed:
            omitted = sum(w.error_type is WordErrorType.OMISSION for w in words)
            completeness = 10.0 * (1 - omitted / len(words))
        total = 0.8 * accuracy * (completeness if closed else 10.0) / 10 + 0.1 * fluency + 0.1 * prosody
        return SentenceScores(accuracy, fluency, prosody, float(np.clip(total, 0, 10)), completeness), words
