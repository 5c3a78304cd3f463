"""The trained scorer: the multi-task network of `scorer_network.py`, one checkpoint per mode.

Loaded lazily on first use; checkpoints are a few hundred kB and ship in `engine/data/`.
"""
from __future__ import annotations

import pathlib
import threading

import numpy as np

from saywell.engine.features import UtteranceFeatures
from saywell.engine.flags import threshold_at
from saywell.engine.model_inputs import LEGACY_SENTENCE_SCALARS, LEGACY_WORD_SCALARS, build_inputs
from saywell.engine.scoring import MISPRONOUNCED_BELOW, is_omitted, phone_scores
from saywell.engine.types import FRAME_MS, EngineError, SentenceScores, WordErrorType, WordScore

DEFAULT_MODEL_DIR = pathlib.Path(__file__).parent / "data"


class TrainedScorer:
    name = "trained"

    def __init__(self, model_dir: pathlib.Path = DEFAULT_MODEL_DIR) -> None:
        self.model_dir = pathlib.Path(model_dir)
        self._networks: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def available(self) -> bool:
        return all((self.model_dir / f"trained-{mode}.pt").exists() for mode in ("open", "closed"))

    def network(self, mode: str):
        with self._lock:
            if mode not in self._networks:
                path = self.model_dir / f"trained-{mode}.pt"
                if not path.exists():
                    raise EngineError(f"trained scorer checkpoint {path} is missing; run `saywell train`")
                import torch

                from saywell.engine.scorer_network import load_network

                torch.set_num_threads(1)
                self._networks[mode] = load_network(path)
            return self._networks[mode]

    def version(self) -> str:
        _, meta = self.network("closed")
        return str(meta.get("version", "unversioned"))

    def _predict(self, features: UtteranceFeatures, encoder: np.ndarray | None, mode: str):
        import torch

        from saywell.engine.scorer_network import pad_batch

        if encoder is None:
            raise EngineError("the trained scorer needs Whisper encoder frames")
        network, meta = self.network(mode)
        inputs = build_inputs(features, encoder, tuple(meta.get("word_scalars", LEGACY_WORD_SCALARS)),
                              tuple(meta.get("sentence_scalars", LEGACY_SENTENCE_SCALARS)))
        config = network.config
        with torch.inference_mode():
            words, sentence = network(*pad_batch([inputs], (config.word_scalar_dim, config.encoder_dim)))
        return words[0].numpy().astype(float), sentence[0].numpy().astype(float), meta

    def _words(self, features: UtteranceFeatures, word_preds: np.ndarray, threshold: float,
               closed: bool) -> tuple[WordScore, ...]:
        result = []
        for word, (accuracy, stress, total) in zip(features.words, word_preds):
            w = word.word
            if closed and is_omitted(word):
                # Not said: no accuracy. Stress keeps the network's value, as speechocean762's raters do: they
                # judge stress only where it was said wrong, and rate unsaid words' stress 10.
                result.append(WordScore(w.text, w.start_frame * FRAME_MS, w.end_frame * FRAME_MS, 0.0,
                                        float(stress), 0.0, WordErrorType.OMISSION, True, phone_scores(word)))
                continue
            error = WordErrorType.MISPRONUNCIATION if accuracy < MISPRONOUNCED_BELOW else WordErrorType.NONE
            result.append(WordScore(w.text, w.start_frame * FRAME_MS, w.end_frame * FRAME_MS, float(accuracy),
                                    float(stress), float(total), error, bool(accuracy < threshold), phone_scores(word)))
        return tuple(result)

    @staticmethod
    def _threshold(meta: dict, sensitivity: float) -> float:
        return threshold_at(meta["flag_thresholds"], sensitivity)

    def flag_threshold(self, sensitivity: float, closed: bool = True) -> float:
        return self._threshold(self.network("closed" if closed else "open")[1], sensitivity)

    def score_words(self, features: UtteranceFeatures, sensitivity: float,
                    encoder: np.ndarray | None = None) -> tuple[WordScore, ...]:
        if not features.words:
            return ()
        word_preds, _, meta = self._predict(features, encoder, "open")
        return self._words(features, word_preds, self._threshold(meta, sensitivity), closed=False)

    def score(self, features: UtteranceFeatures, closed: bool, sensitivity: float,
              encoder: np.ndarray | None = None) -> tuple[SentenceScores, tuple[WordScore, ...]]:
        if not features.words:
            return SentenceScores(0.0, 0.0, 0.0, 0.0, 0.0 if closed else None), ()
        word_preds, sentence, meta = self._predict(features, encoder, "closed" if closed else "open")
        words = self._words(features, word_preds, self._threshold(meta, sensitivity), closed)
        completeness = None
        if closed:
            omitted = sum(w.error_type is WordErrorType.OMISSION for w in words)
            completeness = 10.0 * (1 - omitted / len(words))
        accuracy, fluency, prosody, total = (float(v) for v in sentence)
        return SentenceScores(accuracy, fluency, prosody, total, completeness), words
