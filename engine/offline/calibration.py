"""Fits the baseline scorer's linear heads on speaker-disjoint training folds and writes `baseline.json`.

`python -m saywell.engine.offline.calibration --data ../shared/data/speechocean762/train --out engine/data/baseline.json`
Features come from the very stages the server runs (ASR, forced alignment + GOP, prosody); they are cached per
utterance so refits are instant.
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import pathlib
import pickle
from dataclasses import dataclass

import numpy as np

from saywell.engine.features.utterance import UtteranceFeatures, utterance_features
from saywell.engine.offline.dataset import LabeledUtterance, choice_folds, load_audio, load_corpus, select
from saywell.engine.scorers.flags import fit_thresholds
from saywell.engine.stages.process_stage import start_parent_watch
from saywell.engine.weights import cache_dir

FEATURE_VERSION = 2  # 2: features from the cpu profile's own graph (offline Analyser)
WORD_FEATURES = ("gop_mean", "gop_min", "gop_low_share", "n_phones", "ms_per_phone", "loop_agreement",
                 "n_vowels", "stress_prominence", "asr_probability", "asr_match")
RIDGE_ALPHA = 1.0


@dataclass(frozen=True)
class ExtractedUtterance:
    utt: str
    closed: UtteranceFeatures
    open: UtteranceFeatures


class FeatureExtractor:
    """The cpu profile's own graph (offline `Analyser`) with the recogniser alone: the baseline scores the
    recognised words in open mode (one instance per process)."""

    def __init__(self, asr_model: str = "tiny.en") -> None:
        from saywell.engine.offline.analysis import Analyser
        from saywell.engine.options import AsrOptions, EngineOptions

        self.analyser = Analyser(EngineOptions(asr=AsrOptions(model=asr_model), target_asr=None))
        self.asr_model = asr_model

    def extract(self, utterance: LabeledUtterance) -> ExtractedUtterance:
        from saywell.engine.features.prosody import extract_prosody

        audio = load_audio(utterance.audio_path)
        raw = self.analyser.raw(audio, utterance.text)
        prosody = extract_prosody(audio)
        closed = utterance_features(raw.closed, raw.recognised, prosody, list(raw.reference))
        if raw.open is not None:
            open_features = utterance_features(raw.open, raw.recognised, prosody, None)
        else:
            open_features = UtteranceFeatures(words=(), sentence={})
        return ExtractedUtterance(utterance.utt, closed, open_features)


_worker: FeatureExtractor | None = None


class _CacheUnpickler(pickle.Unpickler):
    """Caches written by `python -m saywell.engine.offline.calibration` name their classes `__main__.*`."""

    def find_class(self, module: str, name: str):
        if module in ("__main__", "__mp_main__") and name in globals():
            return globals()[name]
        return super().find_class(module, name)


def load_cached(path: pathlib.Path):
    with open(path, "rb") as handle:
        return _CacheUnpickler(handle).load()


def extract_cached(args: tuple[LabeledUtterance, str, str]) -> ExtractedUtterance | str:
    global _worker
    utterance, asr_model, folder = args
    path = pathlib.Path(folder) / f"{utterance.utt}.pkl"
    if path.exists():
        return load_cached(path)
    if _worker is None:
        _worker = FeatureExtractor(asr_model)
    try:
        extracted = _worker.extract(utterance)
    except Exception as exc:  # reported and counted by the caller, never silently dropped
        return f"{utterance.utt}: {type(exc).__name__}: {exc}"
    path.write_bytes(pickle.dumps(extracted))
    return extracted


def extract_all(utterances: list[LabeledUtterance], asr_model: str = "tiny.en", jobs: int = 2
                ) -> tuple[list[ExtractedUtterance], list[str]]:
    from tqdm import tqdm

    folder = cache_dir() / "features" / f"v{FEATURE_VERSION}-{asr_model}"
    folder.mkdir(parents=True, exist_ok=True)
    args = [(u, asr_model, str(folder)) for u in utterances]
    with multiprocessing.get_context("spawn").Pool(jobs, initializer=start_parent_watch,
                                                   initargs=(os.getpid(),)) as pool:
        results = list(tqdm(pool.imap(extract_cached, args, chunksize=4), total=len(args),
                            desc="features", unit="utt"))
    return [r for r in results if not isinstance(r, str)], [r for r in results if isinstance(r, str)]


def cached_features(utterances: list[LabeledUtterance], asr_model: str = "tiny.en") -> list[ExtractedUtterance]:
    folder = cache_dir() / "features" / f"v{FEATURE_VERSION}-{asr_model}"
    paths = (folder / f"{u.utt}.pkl" for u in utterances)
    return [load_cached(p) for p in paths if p.exists()]


def fit_head(rows: list[dict[str, float]], targets: list[float], features: tuple[str, ...]) -> dict:
    x = np.array([[row.get(f, 0.0) for f in features] for row in rows], dtype=float)
    y = np.array(targets, dtype=float)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    weights = np.linalg.solve(z.T @ z + RIDGE_ALPHA * np.eye(len(features)), z.T @ (y - y.mean()))
    return {"features": list(features), "mean": mean.tolist(), "scale": scale.tolist(),
            "weights": weights.tolist(), "bias": float(y.mean())}


def _predict(head: dict, row: dict[str, float]) -> float:
    from saywell.engine.scorers.baseline import LinearHead

    return LinearHead.from_dict(head).predict(row)


def word_rows(extracted: list[ExtractedUtterance], labels: dict[str, LabeledUtterance]):
    """Reference words paired one-to-one with their labels (utterances whose normalisation differs are skipped)."""
    for item in extracted:
        words = labels[item.utt].words
        if len(words) == len(item.closed.words):
            yield from zip(item.closed.words, words)


def fit_calibration(extracted: list[ExtractedUtterance], labels: dict[str, LabeledUtterance]) -> dict:
    pairs = list(word_rows(extracted, labels))
    rows = [w.values for w, _ in pairs]
    word = {"accuracy": fit_head(rows, [l.accuracy for _, l in pairs], WORD_FEATURES),
            "stress": fit_head(rows, [l.stress for _, l in pairs], WORD_FEATURES)}
    for row in rows:
        row["pred_accuracy"] = _predict(word["accuracy"], row)
        row["pred_stress"] = _predict(word["stress"], row)
    word["total"] = fit_head(rows, [l.total for _, l in pairs], ("pred_accuracy", "pred_stress", "gop_mean"))
    predicted = np.array([row["pred_accuracy"] for row in rows])
    thresholds = fit_thresholds(predicted, np.array([l.accuracy < 10 for _, l in pairs]))

    def sentence_heads(kind: str) -> dict:
        items = [(getattr(e, kind), labels[e.utt]) for e in extracted if getattr(e, kind).words]
        srows = []
        for features, _ in items:
            row = dict(features.sentence)
            row["pred_word_accuracy"] = float(np.mean([_predict(word["accuracy"], w.values) for w in features.words]))
            srows.append(row)
        names = tuple(sorted(srows[0]))
        return {aspect: fit_head(srows, [lab.scores[aspect] for _, lab in items], names)
                for aspect in ("accuracy", "fluency", "prosody")}

    return {"word": word, "sentence_closed": sentence_heads("closed"), "sentence_open": sentence_heads("open"),
            "flag_thresholds": thresholds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saywell calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="corpus folder in the speechocean762 layout")
    parser.add_argument("--out", required=True, help="where to write the calibration JSON")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--validation-fold", type=int, default=0, help="held out (never fitted on)")
    parser.add_argument("--seed", type=int, default=762)
    parser.add_argument("--limit", type=int, default=None, help="training utterances to use (random, seeded)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--from-cache", action="store_true",
                        help="fit on the training-fold utterances whose features are already cached")
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data)
    folds = choice_folds(corpus, args.folds, args.seed)  # never the confirmation speakers
    train = [u for i, fold in enumerate(folds) if i != args.validation_fold for u in fold]
    if args.from_cache:
        extracted, failures = cached_features(train), []
    else:
        train = select(train, args.limit, args.seed)
        extracted, failures = extract_all(train, jobs=args.jobs)
    calibration = fit_calibration(extracted, {u.utt: u for u in train})
    calibration["meta"] = {
        "version": f"baseline-{datetime.date.today().isoformat()}",
        "data": f"speechocean762 train, folds != {args.validation_fold} of {args.folds} (speaker-disjoint, "
                f"seed {args.seed})", "utterances": len(extracted), "failed": len(failures),
        "feature_version": FEATURE_VERSION, "ridge_alpha": RIDGE_ALPHA}
    pathlib.Path(args.out).write_text(json.dumps(calibration, indent=1) + "\n")
    print(f"wrote {args.out}: {len(extracted)} utterances, {len(failures)} failed, "
          f"flag thresholds {calibration['flag_thresholds']}")
    for failure in failures[:10]:
        print("  failed:", failure)
    return 0


if __name__ == "__main__":
    # Run through the imported module so pickled features name saywell.engine.offline.calibration, not __main__.
    from saywell.engine.offline import calibration

    raise SystemExit(calibration.main())
