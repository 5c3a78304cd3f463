"""`saywell train`: features -> 5-fold speaker-disjoint cross-validation -> the shipped trained scorer.

`saywell train --data ../shared/data/speechocean762/train --out engine/data` extracts (and caches) the
features of every utterance with the engine's own stages, cross-validates the multi-task network per mode,
then trains the shipped checkpoints on every fold but the validation fold, so `saywell eval --fold 0`
reproduces the validation fold's numbers. Writes trained-{open,closed}.pt, MODEL_CARD.md and cv.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import multiprocessing
import os
import pathlib
import pickle
import random
import sys

from saywell.engine.offline.analysis import Analyser, cache_folder
from saywell.engine.offline.analysis import load as load_analysis
from saywell.engine.offline.cross_validation import (confirmation_metrics, cross_validate, fit_final, fit_scorer,
                                                     model_card, out_of_fold_equating, out_of_fold_thresholds)
from saywell.engine.offline.dataset import (LabeledUtterance, choice_folds, confirmation_speakers, load_audio,
                                            load_choice_corpus, load_corpus, load_expert_means, speaker_folds)
from saywell.engine.offline.items import TARGET_CHOICES, training_items
from saywell.engine.options import EngineOptions, with_target_asr
from saywell.engine.scorers.trained import SINGLE_ASR_SUFFIX, checkpoint_name
from saywell.engine.stages.process_stage import start_parent_watch
from saywell.engine.weights import cache_dir

MODES = ("open", "closed")
TRAINED_PROFILES = ("cpu", "neural", "lmm")


def _profile_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saywell train", add_help=False)
    parser.add_argument("--profile", choices=TRAINED_PROFILES, default="cpu",
                        help="the engine profile to train: cpu (this command's scorers), neural (its heads: see "
                             "`saywell train --profile neural --help`) or lmm (LoRA adapters: see "
                             "`saywell train --profile lmm --help`)")
    return parser


_analyser = None  # the worker process's own


def _analysis_worker(args: tuple[LabeledUtterance, str, EngineOptions]) -> str | None:
    """Analyses one utterance into the cache; returns an error line, or None."""
    global _analyser
    utterance, folder, options = args
    path = pathlib.Path(folder) / f"{utterance.utt}.pkl"
    if path.exists():
        return None
    if _analyser is None:
        _analyser = Analyser(options)
    try:
        analysis = _analyser.analyse(utterance.utt, load_audio(utterance.audio_path), utterance.text)
    except Exception as exc:  # reported and counted by the caller, never silently dropped
        return f"{utterance.utt}: {type(exc).__name__}: {exc}"
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(pickle.dumps(analysis))
    temporary.replace(path)  # a killed run never leaves half a file that later runs would trust
    return None


def analysis_folder(options: EngineOptions) -> pathlib.Path:
    return cache_folder(cache_dir() / "features", options)


def ensure_analyses(utterances: list[LabeledUtterance], jobs: int, options: EngineOptions) -> list[str]:
    """Analyses every utterance not yet in the cache; returns the failures' error lines."""
    from tqdm import tqdm

    folder = analysis_folder(options)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(u, str(folder), options) for u in utterances if not (folder / f"{u.utt}.pkl").exists()]
    if not todo:
        return []
    with multiprocessing.get_context("spawn").Pool(jobs, initializer=start_parent_watch,
                                                   initargs=(os.getpid(),)) as pool:
        return [r for r in tqdm(pool.imap(_analysis_worker, todo, chunksize=4), total=len(todo),
                                desc="analysis", unit="utt") if r]


def extract_inputs(utterances: list[LabeledUtterance], jobs: int,
                   options: EngineOptions) -> tuple[dict, list[str]]:
    """Analyses every utterance (cached), then builds both modes' model inputs from the analyses."""
    from tqdm import tqdm

    folder = analysis_folder(options)
    failures = ensure_analyses(utterances, jobs, options)
    records = {}
    for u in tqdm([u for u in utterances if (folder / f"{u.utt}.pkl").exists()], desc="features", unit="utt"):
        analysis = load_analysis(folder / f"{u.utt}.pkl")
        records[u.utt] = {mode: analysis.model_inputs(mode) for mode in MODES}
    return records, failures


def phone_frame_targets(utterances: list[LabeledUtterance], whisper: str, phones: tuple[str, ...], silence: str,
                        jobs: int = 2):
    """The neural profile's embedded phone classifier's training frames and targets: the cpu profile's analyses
    (its forced alignments, Whisper `whisper`'s encoder frames) of `utterances`, extracted where not cached."""
    from saywell.engine.offline.phone_targets import corpus_frame_targets

    recognising = dataclasses.replace(EngineOptions(), asr=dataclasses.replace(EngineOptions().asr, model=whisper))
    # Only the closed alignment and the encoder frames are read, and neither depends on open mode's target ASR:
    # analyses cached with one serve, and missing ones are made without it (a second Whisper model's cost saved).
    folders = [analysis_folder(with_target_asr(recognising, "")), analysis_folder(recognising)]
    missing = [u for u in utterances if not any((f / f"{u.utt}.pkl").exists() for f in folders)]
    for failure in ensure_analyses(missing, jobs, with_target_asr(recognising, "")):
        print(f"skipped {failure}")
    return corpus_frame_targets(utterances, folders, phones, silence)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen, rest = _profile_parser().parse_known_args(argv)
    if chosen.profile == "neural":  # the neural profile trains its own heads, from the same corpus layout
        from saywell.engine.profiles.neural.training import main as train_neural

        return train_neural(rest, load_corpus, load_audio, split=speaker_folds, phone_targets=phone_frame_targets,
                            held_out=confirmation_speakers)
    if chosen.profile == "lmm":  # LoRA adapters on a speech LLM, from the same corpus layout
        from saywell.engine.profiles.lmm.training import main as train_lmm

        return train_lmm(rest, load_choice_corpus, load_audio)  # no folds: trains on every choice speaker
    parser = argparse.ArgumentParser(prog="saywell train", description=__doc__.splitlines()[0],
                                     parents=[_profile_parser()])
    parser.add_argument("--data", required=True, help="corpus folder in the speechocean762 layout")
    parser.add_argument("--out", required=True, help="folder for trained-{open,closed}.pt and the model card")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--validation-fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=762)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--limit", type=int, default=None, help="use only this many utterances (smoke runs)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--cached-only", action="store_true",
                        help="use only utterances whose features are already cached (a partial extraction)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="networks per model, trained with different seeds and averaged (an ensemble), in "
                             "cross-validation and in the shipped checkpoints alike")
    default_target = EngineOptions().target_asr
    parser.add_argument("--target-asr-model", default=default_target.model if default_target else "",
                        help="open mode's target ASR, as the server's flag of that name (\"\": none; writes "
                             f"trained-open{SINGLE_ASR_SUFFIX}.pt, the checkpoint an engine without one loads)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes to train")
    parser.add_argument("--targets", choices=tuple(TARGET_CHOICES), default="stress-experts",
                        help="which aspects train on the mean of the five experts rather than the official "
                             "floored medians: word stress only (default), all, or none")
    parser.add_argument("--cv-only", action="store_true",
                        help="cross-validate only (e.g. with another --seed: other folds and network seeds) and "
                             "write cv-seed<SEED>.json to --out; no checkpoint is written")
    parser.add_argument("--confirm", action="store_true",
                        help="also score the confirmation speakers (dataset.confirmation_speakers), which every "
                             "fold leaves out: with the shipped models, or with --cv-only with models fitted on "
                             "every cross-validation speaker. Only to confirm a change chosen on cross-validation")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(args.data)
    held = confirmation_speakers(corpus)  # of the whole corpus, before any sample or cache filter
    if args.limit:
        corpus = random.Random(args.seed).sample(corpus, args.limit)
    engine = with_target_asr(EngineOptions(), args.target_asr_model)
    single_asr = engine.target_asr is None
    if args.cached_only:
        corpus = [u for u in corpus if (analysis_folder(engine) / f"{u.utt}.pkl").exists()]
    records, failures = extract_inputs(corpus, args.jobs, engine)
    folds = choice_folds(corpus, args.folds, args.seed, held)  # the confirmation speakers are in none
    confirmation = [u for u in corpus if u.speaker in held]
    experts = load_expert_means(args.data) if args.targets != "official" else None
    report = {"date": datetime.date.today().isoformat(), "utterances": len(corpus), "failed": len(failures),
              "targets": args.targets, "seeds": args.seeds, "asr": engine.asr.model,
              "target_asr": engine.target_asr.model if engine.target_asr else None,
              "folds": args.folds, "seed": args.seed, "validation_fold": args.validation_fold,
              "confirmation_utterances_left_out": len(confirmation), "modes": {}}
    written = []
    for mode in args.modes.split(","):
        fold_items = [training_items(fold, records, mode, experts, args.targets) for fold in folds]
        result = cross_validate(fold_items, args.epochs, args.seed, args.seeds)
        # With --cv-only the confirmation models train on every fold, so their thresholds use every fold's
        # out-of-fold predictions; the shipped models' leave out the validation fold's.
        thresholds = out_of_fold_thresholds(result, None if args.cv_only else args.validation_fold)
        if args.cv_only:
            del result["out_of_fold"], result["out_of_fold_sentences"]
            report["modes"][mode] = result
            if args.confirm:
                fitted, _ = fit_scorer([i for f in fold_items for i in f], args.epochs, args.seed, args.seeds)
                result["confirmation"] = confirmation_metrics(
                    fitted, training_items(confirmation, records, mode, experts, args.targets), thresholds)
            print(f"{mode}: {json.dumps(result['summary'])}")
            continue
        equating = out_of_fold_equating(result, args.validation_fold)
        del result["out_of_fold"], result["out_of_fold_sentences"]
        report["modes"][mode] = result
        train = [i for k, f in enumerate(fold_items) if k != args.validation_fold for i in f]
        written.append(checkpoint_name(mode, single_asr))
        meta, fitted = fit_final(train, args.epochs, args.seed, out / written[-1], mode, thresholds, args.seeds,
                                 target_asr=report["target_asr"], equating=equating)
        report["modes"][mode]["shipped"] = meta
        if args.confirm:
            result["confirmation"] = confirmation_metrics(
                fitted, training_items(confirmation, records, mode, experts, args.targets), thresholds)
        print(f"{mode}: {json.dumps(report['modes'][mode]['summary'])}")
    if args.cv_only:
        name = f"cv-seed{args.seed}{SINGLE_ASR_SUFFIX if single_asr else ''}.json"
        (out / name).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {name} to {out} (cross-validation only, {len(failures)} failed)")
        return 0
    suffix = SINGLE_ASR_SUFFIX if single_asr else ""
    written += [f"cv{suffix}.json", f"MODEL_CARD{suffix}.md"]
    (out / written[-2]).write_text(json.dumps(report, indent=1) + "\n")
    (out / written[-1]).write_text(model_card(report))
    print(f"wrote {', '.join(written)} (and the word trees) to {out} ({len(failures)} failed)")
    return 0


if __name__ == "__main__":
    from saywell.engine.offline import training  # pickles must name the real module, not __main__

    raise SystemExit(training.main())
