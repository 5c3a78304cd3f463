"""`saywell eval`: runs the server's engine over a labelled corpus and reports agreement with the humans.

Open mode assesses the recognised words; each labelled word takes the overlap-weighted scores of the recognised
words it overlaps in time (the reference is force-aligned to get its times). The report's `recognised_word`
section counts the other way round, as MultiPA's evaluation does: each recognised word against the mean of the
labelled words it overlaps (`items.recognised_word_labels`). Failed utterances count with the lowest scores
of the corpus in the per-labelled-word view (they have no recognised words) and are reported in `n_failed`.

Closed mode also measures phones (`phone`, `phone_detection`): a word's predicted phones are paired with its
labelled ones when the utterance has as many assessed words as labelled words and the word's phone sequences
agree once the labels' stress digits are stripped; the other words are counted by why they could not be paired.
A paired phone is flagged as mispronounced when its predicted accuracy (0..2) is below `phone_metrics.PHONE_FLAG_BELOW`, and
the flags are scored against two readings of the labels: any deviation (human accuracy < 2) and a wrong phone
(human accuracy 0). `--predictions` writes what was compared, one JSON line per utterance.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import time
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from saywell.engine.offline.conditions import CONDITIONS, degrade
from saywell.engine.offline.dataset import (SENTENCE_ASPECTS, WORD_ASPECTS, LabeledUtterance, load_audio,
                                            confirmation_speakers, load_corpus, select, speaker_folds,
                                            without_speakers)
from saywell.engine.language.lexicon import strip_stress
from saywell.engine.offline.items import recognised_word_labels
from saywell.engine.offline.phone_metrics import UNPAIRED_REASONS, phone_detection_report, phone_pairs
from saywell.engine.options import AsrOptions, EngineOptions, with_target_asr
from saywell.engine.types import AssessmentRequest, EngineError, UtteranceResult

CONCURRENCY = 4  # utterances in flight: lets the schedulers overlap ASR and alignment


def _new_pairing() -> dict:
    return {"labelled_words": 0, "paired_words": 0, "labelled_phones": 0, "paired_phones": 0,
            "unpaired_words": {reason: 0 for reason in UNPAIRED_REASONS}}


@dataclass
class Collected:
    sentence_pred: dict[str, list[float]]
    sentence_true: dict[str, list[float]]
    word_pred: dict[str, list[float]]
    word_true: dict[str, list[float]]
    flags: list[tuple[bool, bool]]  # (flagged, label needs improvement)
    recognised_pred: list[np.ndarray]  # per recognised word (accuracy, stress, total)
    recognised_true: list[np.ndarray]  # the labels it is compared with (`recognised_word_labels`)
    phone_pred: list[float] = field(default_factory=list)  # closed mode: per paired phone, accuracy 0..2
    phone_true: list[float] = field(default_factory=list)  # its label (`phones_accuracy`)
    phone_heard_other: list[bool] = field(default_factory=list)  # the phone heard most there is another one
    phone_pairing: dict = field(default_factory=_new_pairing)  # words and phones labelled / paired
    records: list[dict] = field(default_factory=list)  # one per utterance, for --predictions


def correlation_report(pred: list[float], true: list[float]) -> dict[str, float | None]:
    from scipy.stats import spearmanr

    p, t = np.asarray(pred, float), np.asarray(true, float)
    if len(p) < 2 or np.std(p) == 0 or np.std(t) == 0:
        pcc = scc = None
    else:
        pcc = float(np.corrcoef(p, t)[0, 1])
        scc = float(spearmanr(p, t).statistic)
    rmse = float(np.sqrt(np.mean((p - t) ** 2))) if len(p) else None
    return {"pcc": pcc, "scc": scc, "rmse": rmse}


def word_predictions(result: UtteranceResult, utterance: LabeledUtterance, mode: str,
                     spans: list[tuple[int, int]] | None) -> list[dict[str, float] | None]:
    words = [w for w in result.words]
    if mode == "closed" and len(words) == len(utterance.words):
        return [{"accuracy": w.accuracy, "stress": w.stress, "total": w.total, "flag": w.needs_improvement}
                for w in words]
    from saywell.engine.offline.items import matched_words

    out: list[dict[str, float] | None] = []
    word_spans = [(w.start_ms, w.end_ms) for w in result.words]
    for span in spans or []:
        hits, weights = matched_words(span, word_spans)
        if not hits:
            out.append(None)
            continue
        matched = [result.words[i] for i in hits]
        out.append({aspect: float(weights @ np.array([getattr(w, aspect) for w in matched]))
                    for aspect in WORD_ASPECTS} | {"flag": any(w.needs_improvement for w in matched)})
    return out


def phone_report(c: Collected) -> dict:
    """Closed mode: PCC/SCC/RMSE of paired phones' accuracy (0..2) and how many words and phones were paired."""
    return correlation_report(c.phone_pred, c.phone_true) | {"n_phones": len(c.phone_pred),
                                                             "pairing": c.phone_pairing}


async def _evaluate_one(engine, utterance: LabeledUtterance, mode: str, condition: str = "clean"):
    audio = load_audio(utterance.audio_path)
    heard = degrade(audio, condition, seed=zlib.crc32(utterance.utt.encode()))
    request = AssessmentRequest(audio=heard, reference_text=utterance.text if mode == "closed" else "")
    result = await engine.assess(request)
    spans = None
    if mode == "open" or len(result.words) != len(utterance.words):
        from saywell.engine.language.text import normalize_words

        # The labelled words' times come from the clean recording: a condition must not move the yardstick.
        alignment = await engine.align(audio, normalize_words(utterance.text))
        frame_ms = alignment.frame_ms  # pocketsphinx: 10 ms; the neural profile's aligner 20 ms (or 10)
        spans = [(round(w.start_frame * frame_ms), round(w.end_frame * frame_ms)) for w in alignment.words]
        if len(spans) != len(utterance.words):
            spans = spans[:len(utterance.words)] + [(0, 0)] * (len(utterance.words) - len(spans))
    return utterance, result, spans, len(audio) / 16000


def collect(outcomes, mode: str, floor: dict[str, float]) -> tuple[Collected, int]:
    c = Collected({a: [] for a in SENTENCE_ASPECTS}, {a: [] for a in SENTENCE_ASPECTS},
                  {a: [] for a in WORD_ASPECTS}, {a: [] for a in WORD_ASPECTS}, [], [], [])
    failed = 0
    for utterance, outcome in outcomes:
        result = None
        if isinstance(outcome, BaseException):
            failed += 1
            predicted = {a: floor[a] for a in SENTENCE_ASPECTS}
            words = [None] * len(utterance.words)
        else:
            _, result, spans, _ = outcome
            s = result.scores
            predicted = {"accuracy": s.accuracy, "fluency": s.fluency, "prosody": s.prosody, "total": s.total,
                         "completeness": s.completeness if s.completeness is not None else 10.0}
            words = word_predictions(result, utterance, mode, spans)
            if spans is not None:
                _collect_recognised(c, result, utterance, spans)
        for aspect in SENTENCE_ASPECTS:
            c.sentence_pred[aspect].append(predicted[aspect])
            c.sentence_true[aspect].append(utterance.scores[aspect])
        for label, word in zip(utterance.words, words):
            for aspect in WORD_ASPECTS:
                c.word_pred[aspect].append(word[aspect] if word else floor["word_" + aspect])
                c.word_true[aspect].append(getattr(label, aspect))
            c.flags.append((bool(word["flag"]) if word else True, label.accuracy < 10))
        pairs = phone_pairs(result.words if result is not None else None, utterance.words) \
            if mode == "closed" else None
        if pairs is not None:
            _count_phone_pairs(c, utterance, pairs)
        c.records.append(prediction_record(utterance, outcome, mode, words, pairs))
    return c, failed


def _count_phone_pairs(c: Collected, utterance: LabeledUtterance, pairs: list[list | str]) -> None:
    counts = c.phone_pairing
    for label, paired in zip(utterance.words, pairs):
        counts["labelled_words"] += 1
        counts["labelled_phones"] += len(label.phones)
        if isinstance(paired, str):
            counts["unpaired_words"][paired] += 1
            continue
        counts["paired_words"] += 1
        counts["paired_phones"] += len(paired)
        for phone, pred, human, heard in paired:
            c.phone_pred.append(pred)
            c.phone_true.append(human)
            c.phone_heard_other.append(bool(heard) and heard != strip_stress(phone).upper())


def prediction_record(utterance: LabeledUtterance, outcome, mode: str, words: list[dict | None],
                      pairs: list[list | str] | None) -> dict:
    """One --predictions line: the utterance's predicted and human scores, per labelled word in order and (closed
    mode) per labelled phone. A prediction the engine did not make is null (a failed utterance's, open mode's
    completeness, a labelled word no assessed word matches); the report counts those as described in collect."""
    record: dict = {"utt": utterance.utt, "speaker": utterance.speaker, "mode": mode, "text": utterance.text}
    result = None
    if isinstance(outcome, BaseException):
        record["error"] = f"{type(outcome).__name__}: {outcome}"
    else:
        result = outcome[1]
        record["transcript"] = result.transcript
    s = result.scores if result is not None else None
    record["sentence"] = {
        "pred": {"accuracy": float(s.accuracy), "fluency": float(s.fluency), "prosody": float(s.prosody),
                 "total": float(s.total),
                 "completeness": float(s.completeness) if s.completeness is not None else None}
        if s is not None else None,
        "human": {a: float(utterance.scores[a]) for a in SENTENCE_ASPECTS}}
    entries = []
    for i, (label, word) in enumerate(zip(utterance.words, words)):
        entry = {
            "text": label.text,
            "pred": {a: float(word[a]) for a in WORD_ASPECTS} | {"flag": bool(word["flag"])} if word else None,
            "human": {a: float(getattr(label, a)) for a in WORD_ASPECTS} | {"flag": bool(label.accuracy < 10)}}
        if pairs is not None:
            paired = pairs[i]
            entry["phones_paired"] = not isinstance(paired, str)
            if isinstance(paired, str):
                entry["unpaired_reason"] = paired
                entry["phones"] = [{"phone": p, "pred": None, "human": float(a)}
                                   for p, a in zip(label.phones, label.phones_accuracy)]
                if paired == "phone_mismatch":  # the engine's phones for this word, to see how they differ
                    entry["pred_phones"] = [{"phone": p.phone, "accuracy": float(p.accuracy)}
                                            for p in result.words[i].phones]
            else:
                entry["phones"] = [{"phone": p, "pred": pred, "human": human, "heard": heard}
                                   for p, pred, human, heard in paired]
        entries.append(entry)
    record["words"] = entries
    return record


def write_predictions(records: list[dict], path: str | pathlib.Path) -> None:
    """One JSON line per utterance, ordered by utterance id (completion order varies from run to run)."""
    lines = [json.dumps(r) for r in sorted(records, key=lambda r: r["utt"])]
    pathlib.Path(path).write_text("".join(line + "\n" for line in lines))


def _collect_recognised(c: Collected, result: UtteranceResult, utterance: LabeledUtterance,
                        spans: list[tuple[int, int]]) -> None:
    labels = np.array([[getattr(w, a) for a in WORD_ASPECTS] for w in utterance.words], float)
    c.recognised_true.extend(recognised_word_labels([(w.start_ms, w.end_ms) for w in result.words], spans, labels))
    c.recognised_pred.extend(np.array([getattr(w, a) for a in WORD_ASPECTS], float) for w in result.words)


def recognised_word_report(c: Collected) -> dict | None:
    if not c.recognised_pred:
        return None
    pred, true = np.array(c.recognised_pred), np.array(c.recognised_true)
    return {a: correlation_report(pred[:, k], true[:, k]) for k, a in enumerate(WORD_ASPECTS)} | {"n_words": len(pred)}


def flag_report(flags: list[tuple[bool, bool]], threshold: float) -> dict[str, float | None]:
    flagged = [truth for flag, truth in flags if flag]
    positives = sum(truth for _, truth in flags)
    return {"precision": float(np.mean(flagged)) if flagged else None,
            "recall": (sum(flagged) / positives) if positives else None, "threshold": threshold}


def build_report(c: Collected, mode: str, n_utterances: int, failed: int, seconds: float, audio_s: float,
                 threshold: float) -> dict:
    report = {
        "mode": mode, "n_utterances": n_utterances, "n_failed": failed, "seconds": round(seconds, 1),
        "rtf": round(seconds / audio_s, 4) if audio_s else None,
        "sentence": {a: correlation_report(c.sentence_pred[a], c.sentence_true[a]) for a in SENTENCE_ASPECTS},
        "word": {a: correlation_report(c.word_pred[a], c.word_true[a]) for a in WORD_ASPECTS},
        "flags": flag_report(c.flags, threshold),
    }
    if mode == "open":
        report["recognised_word"] = recognised_word_report(c)
    else:
        report["phone"] = phone_report(c)
        report["phone_detection"] = phone_detection_report(c.phone_pred, c.phone_true,
                                                           heard_other=c.phone_heard_other)
    return report


async def run_engine(utterances: list[LabeledUtterance], mode: str, options: EngineOptions,
                     condition: str = "clean"):
    from tqdm import tqdm

    from saywell.engine.api import create_engine

    engine = create_engine(options)
    if not hasattr(engine, "align"):
        raise SystemExit(f"the {options.profile} profile cannot be evaluated: it has no forced aligner to time "
                         "the labelled words")
    engine.start()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def guarded(u: LabeledUtterance):
        async with gate:
            try:
                return u, await _evaluate_one(engine, u, mode, condition)
            except (EngineError, OSError, RuntimeError) as exc:
                return u, exc

    outcomes = []
    with tqdm(total=len(utterances), desc=f"eval {mode}", unit="utt") as bar:
        for future in asyncio.as_completed([guarded(u) for u in utterances]):
            outcomes.append(await future)
            bar.update(1)
    threshold = engine.flag_threshold(0.5, closed=mode == "closed")
    await engine.close()
    return outcomes, threshold


def lowest_scores(corpus: list[LabeledUtterance]) -> dict[str, float]:
    floor = {a: min(u.scores[a] for u in corpus) for a in SENTENCE_ASPECTS}
    floor.update({"word_" + a: min(getattr(w, a) for u in corpus for w in u.words) for a in WORD_ASPECTS})
    return floor


def plot(c: Collected, path: str, mode: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("sentence", a, c.sentence_pred[a], c.sentence_true[a]) for a in SENTENCE_ASPECTS] + \
             [("word", a, c.word_pred[a], c.word_true[a]) for a in WORD_ASPECTS]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8))
    for ax, (level, aspect, pred, true) in zip(axes.flat, panels):
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(true))
        ax.scatter(np.asarray(true) + jitter, pred, s=4, alpha=0.3)
        ax.plot([0, 10], [0, 10], color="grey", linewidth=0.8)
        r = correlation_report(pred, true)["pcc"]
        ax.set_title(f"{level} {aspect}  PCC {r:.3f}" if r is not None else f"{level} {aspect}")
        ax.set_xlabel("human")
        ax.set_ylabel("saywell")
        ax.set_xlim(-0.5, 10.5)
        ax.set_ylim(-0.5, 10.5)
    fig.suptitle(f"saywell eval, {mode} mode")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saywell eval", description="Agreement of saywell's scores with "
                                     "human labels on a corpus in the speechocean762 layout.")
    parser.add_argument("--data", required=True, help="folder with audio/<utt>.<ext> and labels.jsonl")
    parser.add_argument("--mode", choices=("open", "closed"), required=True)
    parser.add_argument("--limit", type=int, default=None, help="random sample of this many utterances")
    parser.add_argument("--seed", type=int, default=762, help="seed of the sample and of the folds")
    parser.add_argument("--fold", type=int, default=None,
                        help="evaluate only this speaker-disjoint fold (of --folds); default: all utterances")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--confirmation", action="store_true",
                        help="evaluate only the confirmation speakers (half of fold 0 of the default split, "
                             "dataset.confirmation_speakers), kept out of every choice; without it they are left out")
    parser.add_argument("--profile", default="cpu", help="engine profile to evaluate (default: cpu)")
    parser.add_argument("--asr-model", default="tiny.en",
                        help="recogniser: packaged name, CTranslate2 folder or hub id")
    default_target = EngineOptions().target_asr
    parser.add_argument("--target-asr-model", default=default_target.model if default_target else "",
                        help="open mode's target ASR, whose words are assessed (\"\": none, the recogniser's "
                             "words are assessed)")
    parser.add_argument("--scorer", default="", help="scorer to use (default: the engine's default)")
    parser.add_argument("--model-dir", default="",
                        help="the profile's model folder (neural: neural.json; default: its packaged one)")
    parser.add_argument("--device", default="auto", help="torch profiles' device: auto, cuda or cpu")
    parser.add_argument("--condition", choices=CONDITIONS, default="clean",
                        help="recording condition applied to each utterance before the engine hears it "
                             "(engine/offline/conditions.py; seeded per utterance; default: clean)")
    parser.add_argument("--report", required=True, help="JSON report path")
    parser.add_argument("--plot", default=None, help="PNG of predicted vs human scores")
    parser.add_argument("--predictions", default=None,
                        help="JSON lines file: per utterance, the predicted and human scores of the sentence, "
                             "each labelled word and (closed mode) each labelled phone")
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data)
    if args.confirmation and args.fold is not None:
        parser.error("--confirmation and --fold exclude each other: the confirmation speakers are part of fold 0 of "
                     "the default split")
    held, left_out = confirmation_speakers(corpus), 0
    if args.confirmation:
        chosen = [u for u in corpus if u.speaker in held]
    else:
        chosen = speaker_folds(corpus, args.folds, args.seed)[args.fold] if args.fold is not None else corpus
        left_out = len({u.speaker for u in chosen} & held)
        chosen = without_speakers(chosen, held)
    chosen = select(chosen, args.limit, args.seed)
    started = time.perf_counter()
    options = with_target_asr(EngineOptions(profile=args.profile, asr=AsrOptions(model=args.asr_model),
                                            model_dir=args.model_dir, device=args.device), args.target_asr_model)
    if args.scorer:
        options = replace(options, default_scorer=args.scorer)
    outcomes, threshold = asyncio.run(run_engine(chosen, args.mode, options, args.condition))
    seconds = time.perf_counter() - started
    audio_s = sum(o[3] for _, o in outcomes if not isinstance(o, BaseException))
    c, failed = collect(outcomes, args.mode, lowest_scores(corpus))
    report = build_report(c, args.mode, len(chosen), failed, seconds, audio_s, threshold)
    report["condition"] = args.condition
    report["speakers"] = {"confirmation_only": args.confirmation, "count": len({u.speaker for u in chosen}),
                          "confirmation_speakers_left_out": left_out}
    pathlib.Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.predictions:
        write_predictions(c.records, args.predictions)
    if args.plot:
        plot(c, args.plot, args.mode)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
