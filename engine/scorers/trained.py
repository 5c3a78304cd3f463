"""The trained scorer: the multi-task network of `network.py`, one checkpoint per mode.

Loaded lazily on first use; checkpoints are a few hundred kB and ship in `engine/data/`.
"""
from __future__ import annotations

import pathlib
import threading
from collections.abc import Sequence

import numpy as np

from saywell.engine.features.model_inputs import LEGACY_SENTENCE_SCALARS, LEGACY_WORD_SCALARS, build_inputs
from saywell.engine.features.phone_probe import with_probe_scalars
from saywell.engine.features.utterance import UtteranceFeatures
from saywell.engine.features.windows import weighted_sentence
from saywell.engine.scorers import ScoreJob
from saywell.engine.scorers.baseline import MISPRONOUNCED_BELOW, is_omitted, phone_scores
from saywell.engine.scorers.equating import equate
from saywell.engine.scorers.flags import threshold_at
from saywell.engine.types import FRAME_MS, EngineError, SentenceScores, WordErrorType, WordScore
from saywell.engine.weights import PACKAGED_DATA

DEFAULT_MODEL_DIR = PACKAGED_DATA
SENTENCE_ASPECTS = ("accuracy", "fluency", "prosody", "total")  # network.SENTENCE_TARGETS (imported with torch)
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

                from saywell.engine.scorers.network import load_network

                torch.set_num_threads(1)
                self._networks[key] = load_network(path)
            return self._networks[key]

    def trees(self, mode: str, single_asr: bool = False):
        """The word trees shipped beside a checkpoint, or None (checkpoints that predate them)."""
        key = (mode, single_asr)
        with self._lock:
            if key not in self._trees:
                from saywell.engine.scorers.word_trees import load_word_trees, word_trees_path

                path = word_trees_path(self._path(mode, single_asr))
                self._trees[key] = load_word_trees(path) if path.exists() else None
            return self._trees[key]

    def version(self) -> str:
        _, meta = self.network("closed")
        return str(meta.get("version", "unversioned"))

    def _prepared(self, features: UtteranceFeatures, encoder: np.ndarray | None, mode: str, single_asr: bool):
        if encoder is None:
            raise EngineError("the trained scorer needs Whisper encoder frames")
        network, meta = self.network(mode, single_asr)
        inputs = build_inputs(features, encoder, tuple(meta.get("word_scalars", LEGACY_WORD_SCALARS)),
                              tuple(meta.get("sentence_scalars", LEGACY_SENTENCE_SCALARS)))
        trees = self.trees(mode, single_asr)
        network_inputs = inputs
        if meta.get("phone_probe"):  # the network was fitted with the trees' phone probe features appended
            if trees is None or trees[0].probe is None:
                raise EngineError(f"the {mode} checkpoint needs the phone probe of its word trees, which are missing")
            network_inputs = with_probe_scalars(inputs, trees[0].probe)
        return network, meta, trees, inputs, network_inputs

    def _predict_many(self, requests: list[tuple], blended: int | None = None) -> list[tuple | Exception]:
        """(features, encoder, mode, single_asr) each -> (word predictions, sentence predictions, meta): one
        padded forward pass per checkpoint for all the requests that use it. Only the first `blended` requests
        (default: all) get the word trees blended into their word predictions; the rest are wanted for their
        sentence scores alone (a long utterance's windows)."""
        import torch

        from saywell.engine.scorers.network import pad_batch

        prepared: list = []
        for request in requests:
            try:
                prepared.append(self._prepared(*request))
            except EngineError as exc:
                prepared.append(exc)
        by_network: dict[int, list[int]] = {}
        for index, item in enumerate(prepared):
            if not isinstance(item, Exception):
                by_network.setdefault(id(item[0]), []).append(index)
        outputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for indices in by_network.values():
            network = prepared[indices[0]][0]
            dims = (network.config.word_scalar_dim, network.config.encoder_dim)
            with torch.inference_mode():
                words, sentence = network(*pad_batch([prepared[i][4] for i in indices], dims))
            for row, index in enumerate(indices):
                n = len(prepared[index][4].word_scalars)
                outputs[index] = words[row, :n].numpy().astype(float), sentence[row].numpy().astype(float)
        results: list[tuple | Exception] = []
        for index, item in enumerate(prepared):
            if isinstance(item, Exception):
                results.append(item)
                continue
            _, meta, trees, inputs, _ = item
            words, sentence = outputs[index]
            if trees is not None and (blended is None or index < blended):
                features, encoder = requests[index][:2]
                names = (tuple(trees[1]["word_scalars"]), tuple(trees[1]["sentence_scalars"]))
                same = names == (tuple(meta.get("word_scalars", ())), tuple(meta.get("sentence_scalars", ())))
                tree_inputs = inputs if same else build_inputs(features, encoder, *names)
                share = meta.get("tree_share", 0.5)
                words = (1 - share) * words + share * trees[0].predict(tree_inputs)
            results.append((words, sentence, meta))
        return results

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

    def score_batch(self, jobs: Sequence[ScoreJob]) -> list:
        results: list = [None] * len(jobs)
        pending: list[tuple[int, tuple]] = []
        for index, job in enumerate(jobs):
            if not job.features.words:
                results[index] = () if job.words_only else \
                    (SentenceScores(0.0, 0.0, 0.0, 0.0, 0.0 if job.closed else None), ())
                continue
            closed = job.closed and not job.words_only
            pending.append((index, (job.features, job.encoder, "closed" if closed else "open",
                                    job.single_asr and not closed)))
        # A long utterance's windows ride in the same forward pass; each gives its own sentence scores.
        windows = [(index, (part, encoder, *request[2:])) for index, request in pending
                   for part, encoder in jobs[index].windows]
        predictions = self._predict_many([request for _, request in pending + windows], blended=len(pending))
        by_job: dict[int, list] = {}
        for (index, _), predicted in zip(windows, predictions[len(pending):]):
            by_job.setdefault(index, []).append(predicted)
        for (index, _), predicted in zip(pending, predictions):
            if isinstance(predicted, Exception):
                results[index] = predicted
                continue
            parts = by_job.get(index, [])
            if parts and not any(isinstance(p, Exception) for p in parts):  # else: the whole's sentence scores
                words, _, meta = predicted
                sentence = weighted_sentence([p[1] for p in parts], [len(w.words) for w, _ in jobs[index].windows])
                predicted = (words, sentence, meta)
            results[index] = self._scores(jobs[index], *predicted)
        return results

    def _scores(self, job: ScoreJob, word_preds: np.ndarray, sentence: np.ndarray, meta: dict):
        threshold = self._threshold(meta, job.sensitivity)
        if job.words_only:
            return self._words(job.features, word_preds, threshold, closed=False)
        words = self._words(job.features, word_preds, threshold, job.closed)
        completeness = None
        if job.closed:
            omitted = sum(w.error_type is WordErrorType.OMISSION for w in words)
            completeness = 10.0 * (1 - omitted / len(words))
        # Checkpoints since session 17 spread their sentence scores like the experts' (scorers/equating.py).
        equated = equate(sentence, meta.get("sentence_equating"), SENTENCE_ASPECTS)
        accuracy, fluency, prosody, total = (float(v) for v in equated)
        return SentenceScores(accuracy, fluency, prosody, total, completeness), words

    def _one(self, job: ScoreJob):
        [result] = self.score_batch([job])
        if isinstance(result, Exception):
            raise result
        return result

    def score_words(self, features: UtteranceFeatures, sensitivity: float, encoder: np.ndarray | None = None,
                    single_asr: bool = False) -> tuple[WordScore, ...]:
        """`single_asr`: the features have no target ASR's words (interim decodes, or an engine without one)."""
        return self._one(ScoreJob(features, False, sensitivity, encoder, single_asr, words_only=True))

    def score(self, features: UtteranceFeatures, closed: bool, sensitivity: float,
              encoder: np.ndarray | None = None,
              single_asr: bool = False) -> tuple[SentenceScores, tuple[WordScore, ...]]:
        return self._one(ScoreJob(features, closed, sensitivity, encoder, single_asr))
