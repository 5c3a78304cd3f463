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
from saywell.engine.phone_probe import with_probe_scalars
from saywell.engine.scoring import MISPRONOUNCED_BELOW, is_omitted, phone_scores
from saywell.engine.types import FRAME_MS, EngineError, SentenceScores, WordErrorType, WordScore

DEFAULT_MODEL_DIR = pathlib.Path(__file__).parent / "data"
SINGLE_ASR_SUFFIX = "-single-asr"


def checkpoint_name(mode: str, single_asr: bool = False) -> str:
    """Open mode ships two checkpoints: one fitted on features with a target ASR (the default engine), one on a
    single ASR's (an engine run without a target ASR, for the lowest latency). Closed mode needs no target."""
    return f"trained-{mode}{SINGLE_ASR_SUFFIX if single_asr and mode == 'open' else ''}.pt"


class TrainedScorer:
    name = "trained"

    def __init__(self, model_dir: pathlib.Path = DEFAULT_MODEL_DIR) -> None:
        self.model_dir = pathlib.Path(model_dir)
        self._networks: dict[tuple[str, bool], tuple] = {}  # (mode, single_asr) -> (network, meta)
        self._trees: dict[tuple[str, bool], tuple | None] = {}
        self._lock = threading.Lock()

    def available(self) -> bool:
        return all((self.model_dir / checkpoint_name(mode)).exists() for mode in ("open", "closed"))

    def _path(self, mode: str, single_asr: bool = False) -> pathlib.Path:
        """Open mode's single-ASR checkpoint, where asked for and present; model folders from before it existed
        serve those features with the target ASR's checkpoint."""
        path = self.model_dir / checkpoint_name(mode, single_asr)
        return path if path.exists() or not single_asr else self.model_dir / checkpoint_name(mode)

    def network(self, mode: str, single_asr: bool = False):
        key = (mode, single_asr)
        with self._lock:
            if key not in self._networks:
                path = self._path(mode, single_asr)
                if not path.exists():
                    raise EngineError(f"trained scorer checkpoint {path} is missing; run `saywell train`")
                import torch

                from saywell.engine.scorer_network import load_network

                torch.set_num_threads(1)
                self._networks[key] = load_network(path)
            return self._networks[key]

    def trees(self, mode: str, single_asr: bool = False):
        """The word trees shipped beside a checkpoint, or None (checkpoints that predate them)."""
        key = (mode, single_asr)
        with self._lock:
            if key not in self._trees:
                from saywell.engine.word_trees import load_word_trees, word_trees_path

                path = word_trees_path(self._path(mode, single_asr))
                self._trees[key] = load_word_trees(path) if path.exists() else None
            return self._trees[key]

    def version(self) -> str:
        _, meta = self.network("closed")
        return str(meta.get("version", "unversioned"))

    def _predict(self, features: UtteranceFeatures, encoder: np.ndarray | None, mode: str, single_asr: bool):
        import torch

        from saywell.engine.scorer_network import pad_batch

        if encoder is None:
            raise EngineError("the trained scorer needs Whisper encoder frames")
        network, meta = self.network(mode, single_asr)
        inputs = build_inputs(features, encoder, tuple(meta.get("word_scalars", LEGACY_WORD_SCALARS)),
                              tuple(meta.get("sentence_scalars", LEGACY_SENTENCE_SCALARS)))
        config = network.config
        trees = self.trees(mode, single_asr)
        network_inputs = inputs
        if meta.get("phone_probe"):  # the network was fitted with the trees' phone probe features appended
            if trees is None or trees[0].probe is None:
                raise EngineError(f"the {mode} checkpoint needs the phone probe of its word trees, which are missing")
            network_inputs = with_probe_scalars(inputs, trees[0].probe)
        with torch.inference_mode():
            words, sentence = network(*pad_batch([network_inputs], (config.word_scalar_dim, config.encoder_dim)))
        words = words[0].numpy().astype(float)
        if trees is not None:
            names = (tuple(trees[1]["word_scalars"]), tuple(trees[1]["sentence_scalars"]))
            same = names == (tuple(meta.get("word_scalars", ())), tuple(meta.get("sentence_scalars", ())))
            tree_inputs = inputs if same else build_inputs(features, encoder, *names)
            share = meta.get("tree_share", 0.5)
            words = (1 - share) * words + share * trees[0].predict(tree_inputs)
        return words, sentence[0].numpy().astype(float), meta

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

    def flag_threshold(self, sensitivity: float, closed: bool = True, single_asr: bool = False) -> float:
        return self._threshold(self.network("closed" if closed else "open", single_asr and not closed)[1],
                               sensitivity)

    def score_words(self, features: UtteranceFeatures, sensitivity: float, encoder: np.ndarray | None = None,
                    single_asr: bool = False) -> tuple[WordScore, ...]:
        """`single_asr`: the features have no target ASR's words (interim decodes, or an engine without one)."""
        if not features.words:
            return ()
        word_preds, _, meta = self._predict(features, encoder, "open", single_asr)
        return self._words(features, word_preds, self._threshold(meta, sensitivity), closed=False)

    def score(self, features: UtteranceFeatures, closed: bool, sensitivity: float,
              encoder: np.ndarray | None = None,
              single_asr: bool = False) -> tuple[SentenceScores, tuple[WordScore, ...]]:
        if not features.words:
            return SentenceScores(0.0, 0.0, 0.0, 0.0, 0.0 if closed else None), ()
        word_preds, sentence, meta = self._predict(features, encoder, "closed" if closed else "open",
                                                   single_asr and not closed)
        words = self._words(features, word_preds, self._threshold(meta, sensitivity), closed)
        completeness = None
        if closed:
            omitted = sum(w.error_type is WordErrorType.OMISSION for w in words)
            completeness = 10.0 * (1 - omitted / len(words))
        accuracy, fluency, prosody, total = (float(v) for v in sentence)
        return SentenceScores(accuracy, fluency, prosody, total, completeness), words
