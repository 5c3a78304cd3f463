"""`saywell train --profile neural`: the heads (and, with --finetune-encoder, the SSL encoder end to end, as
MultiPA does) trained on a corpus in the speechocean762 layout, through the profile's own graph.

Every utterance runs through the engine's stages once (ASR, phone posteriors, alignment of the reference words
for closed mode and of the recognised words for open mode, SSL frames); the heads then learn from both modes'
inputs, and gradient-boosted trees over the same inputs are fitted to be averaged with them (trees.py). Writes
heads.pt, trees.npz, the updated neural.json and MODEL_CARD.md into the model folder (and the fine-tuned encoder
under ssl-finetuned/ when asked, without trees).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from saywell.engine.language.lexicon import strip_stress
from saywell.engine.language.text import match_reference, normalize_words
from saywell.engine.options import EngineOptions
from saywell.engine.profiles.neural.alignment import AlignedWord
from saywell.engine.profiles.neural.config import CONFIG_NAME, NeuralConfig, file_hash, model_ref
from saywell.engine.profiles.neural.engine import Graph, NeuralEngine
from saywell.engine.profiles.neural.encoders import SpeechEncoder, pad_items
from saywell.engine.profiles.neural.heads import (SENTENCE_ASPECTS, WORD_ASPECTS, HeadsConfig, HeadsEnsemble,
                                                  HeadsItem, PronunciationHeads, collate, save_heads)
from saywell.engine.profiles.neural.phone_head import save_phone_head, train_phone_head
from saywell.engine.profiles.neural.trees import COMPONENTS, SHARE, TREES_FILE, HeadTrees, fit_trees
from saywell.engine.stages.asr import ENCODER_FRAME_MS
from saywell.engine.scorers.flags import fit_thresholds
from saywell.engine.types import EngineError

FINETUNED = "ssl-finetuned"
CONCURRENCY = 8  # utterances in the graph at once: their stages batch together
CROSS_FIT_PARTS = 2  # speaker-disjoint parts of the training speakers (embedded configuration)
ENSEMBLE = 5  # sets of heads averaged (README: the seed alone moves one set's PCC by 0.02-0.04)


class LabeledWord(Protocol):
    text: str
    accuracy: float
    stress: float
    total: float
    phones: tuple[str, ...]  # ARPAbet, vowels with their stress digit; empty without phone labels
    phones_accuracy: tuple[float, ...]  # 0..2 per phone


class LabeledUtterance(Protocol):
    """What training reads of a corpus utterance (saywell.engine.offline.dataset.LabeledUtterance)."""

    utt: str
    text: str
    scores: dict[str, float]
    words: tuple[LabeledWord, ...]
    audio_path: Path


@dataclass(frozen=True)
class Example:
    """One utterance in one mode: the heads' inputs and their targets (NaN: a word without a label)."""

    utt: str
    closed: bool
    audio: np.ndarray = field(repr=False)
    item: HeadsItem = field(repr=False)
    word_targets: np.ndarray = field(repr=False)  # (N, 3)
    sentence_targets: np.ndarray = field(repr=False)  # (4,)
    phone_targets: np.ndarray = field(repr=False)  # (P,) the item's phones, 0..2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saywell train --profile neural",
                                description="Train the neural profile's heads (and optionally its SSL encoder).")
    p.add_argument("--data", required=True, help="corpus folder in the speechocean762 layout")
    p.add_argument("--model-dir", required=True, help="the model folder: neural.json naming the models")
    p.add_argument("--steps", type=int, default=2000, help="most optimiser steps (default %(default)s)")
    p.add_argument("--stop-share", type=float, default=0.0,
                   help="share of the training speakers held out of the heads' training to stop it early: the "
                        "heads of the step with the lowest loss on them are kept (checked every --check-every "
                        "steps; 0: train all --steps on every speaker, the default)")
    p.add_argument("--check-every", type=int, default=100, help="steps between early-stopping checks")
    p.add_argument("--ensemble", type=int, default=None,
                   help="sets of heads trained with seeds --seed, --seed+1, ...; their scores are averaged "
                        f"(default {ENSEMBLE}; 1 with --finetune-encoder, which trains one encoder with one set)")
    p.add_argument("--trees-share", type=float, default=None,
                   help="share of gradient-boosted trees over the heads' inputs in each word and sentence score "
                        f"(default {SHARE}; 0: the heads alone, and the only choice with --finetune-encoder, whose "
                        "frames change after the trees would be fitted)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="heads' learning rate")
    p.add_argument("--encoder-lr", type=float, default=2e-5, help="the SSL encoder's, with --finetune-encoder")
    p.add_argument("--finetune-encoder", action="store_true",
                   help="train the SSL encoder end to end with the heads (writes ssl-finetuned/)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu")
    p.add_argument("--allow-download", action="store_true", help="hub ids in neural.json may download")
    p.add_argument("--limit", type=int, default=None, help="use only this many utterances (smoke runs)")
    p.add_argument("--seed", type=int, default=762, help="seed of training and of the speaker folds")
    p.add_argument("--folds", type=int, default=5, help="speaker-disjoint folds (with --validation-fold)")
    p.add_argument("--validation-fold", type=int, default=None,
                   help="train on every fold but this one, so `saywell eval --profile neural --fold N` measures "
                        "speakers training never saw (default: train on every utterance)")
    embedded = p.add_argument_group("the embedded offline configuration")
    embedded.add_argument("--embedded", action="store_true",
                          help="build the embedded configuration in --model-dir: write neural.json when the folder "
                               "has none (ASR --asr, its encoder frames as the SSL frames), train the phone "
                               "classifier on the cpu profile's forced alignments of the training utterances, "
                               "then the heads")
    embedded.add_argument("--asr", default="tiny.en",
                          help="the embedded configuration's Whisper (packaged name or CTranslate2 folder)")
    embedded.add_argument("--phone-epochs", type=int, default=12, help="epochs of the phone classifier")
    embedded.add_argument("--jobs", type=int, default=2, help="processes extracting the cpu profile's analyses")
    return p


def labelled_words(words: Sequence[str], utterance: LabeledUtterance) -> list[LabeledWord | None]:
    """The corpus word each of `words` stands for (language.text.match_reference), None when it stands for none."""
    labels: list[LabeledWord] = []
    spelled: list[str] = []
    for word in utterance.words:
        for part in normalize_words(word.text):
            spelled.append(part)
            labels.append(word)
    return [labels[m] if m is not None else None for m in match_reference(spelled, list(words))]


def labelled_targets(words: Sequence[str], utterance: LabeledUtterance) -> np.ndarray:
    """(N, 3) word targets for `words` from the corpus labels: each word takes the label of the reference word it
    stands for, NaN when it stands for none."""
    targets = np.full((len(words), len(WORD_ASPECTS)), np.nan, np.float32)
    for index, label in enumerate(labelled_words(words, utterance)):
        if label is not None:
            targets[index] = (label.accuracy, label.stress, label.total)
    return targets


def labelled_phone_targets(words: Sequence[AlignedWord], utterance: LabeledUtterance) -> np.ndarray:
    """(P,) targets for the aligned words' phones, in order: the experts' accuracy (0..2) of the phones of the
    corpus word each word stands for, when those are the same phones (stress digits aside); else NaN."""
    targets: list[float] = []
    for word, label in zip(words, labelled_words([w.text for w in words], utterance)):
        said = [p.phone for p in word.phones]
        if label is not None and [strip_stress(p) for p in label.phones] == said and \
                len(label.phones_accuracy) == len(said):
            targets.extend(label.phones_accuracy)
        else:
            targets.extend([np.nan] * len(said))
    return np.array(targets, np.float32)


def examples_of(graph: Graph, utterance: LabeledUtterance, audio: np.ndarray, engine: NeuralEngine) -> list[Example]:
    sentence = np.array([utterance.scores[a] for a in SENTENCE_ASPECTS], np.float32)
    found = []
    for closed, analysis in graph.analyses.items():
        if analysis is None:
            continue
        words = [w.text for w in analysis.words]
        found.append(Example(utterance.utt, closed, audio, engine.heads_item(graph.frames, analysis.inputs),
                             labelled_targets(words, utterance), sentence,
                             labelled_phone_targets(analysis.words, utterance)))
    return found


async def analyse_corpus(engine: NeuralEngine, corpus: Sequence[LabeledUtterance],
                         load_audio: Callable[[Path], np.ndarray]) -> tuple[list[Example], list[str]]:
    """Every utterance through the graph, CONCURRENCY at a time (so the stages batch); failures are listed."""
    gate = asyncio.Semaphore(CONCURRENCY)
    engine.start()

    async def one(utterance: LabeledUtterance) -> list[Example] | str:
        async with gate:
            try:
                audio = await asyncio.to_thread(load_audio, utterance.audio_path)
                return examples_of(await engine.analyse(audio, utterance.text), utterance, audio, engine)
            except Exception as exc:  # noqa: BLE001 - counted and reported by the caller
                return f"{utterance.utt}: {type(exc).__name__}: {exc}"

    try:
        results = await asyncio.gather(*(one(u) for u in corpus))
    finally:
        await engine.close()
    return [e for r in results if not isinstance(r, str) for e in r], [r for r in results if isinstance(r, str)]


def stopping_split(examples: Sequence[Example], corpus: Sequence[LabeledUtterance], share: float,
                   seed: int) -> tuple[list[Example], list[Example]]:
    """The heads' training examples and the early-stopping ones: `share` of the training speakers (drawn with
    `seed`) go to the second list, both modes of each of their utterances."""
    if share <= 0:
        return list(examples), []
    speakers = sorted({u.speaker for u in corpus})
    held = set(random.Random(seed).sample(speakers, max(1, round(share * len(speakers)))))
    held_utts = {u.utt for u in corpus if u.speaker in held}
    fitted = [e for e in examples if e.utt not in held_utts]
    stop_on = [e for e in examples if e.utt in held_utts]
    if not fitted or not stop_on:
        raise SystemExit(f"saywell train: --stop-share {share} leaves no speakers on one side")
    return fitted, stop_on


def _targets(examples: Sequence[Example], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    longest = max(len(e.word_targets) for e in examples)
    words = np.full((len(examples), longest, len(WORD_ASPECTS)), np.nan, np.float32)
    phones = np.full((len(examples), max(max(len(e.phone_targets) for e in examples), 1)), np.nan, np.float32)
    for row, example in enumerate(examples):
        words[row, :len(example.word_targets)] = example.word_targets
        phones[row, :len(example.phone_targets)] = example.phone_targets
    sentences = np.stack([e.sentence_targets for e in examples])
    return tuple(torch.from_numpy(t).to(device) for t in (words, sentences, phones))  # type: ignore[return-value]


def forward(heads: PronunciationHeads | HeadsEnsemble, encoder: SpeechEncoder | None, examples: Sequence[Example],
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The heads' scores of a batch; with `encoder`, the SSL frames are recomputed from the audio (with grad)."""
    batch = collate([e.item for e in examples], device)
    if encoder is not None:
        audio, lengths = pad_items([e.audio for e in examples])
        batch["frames"], batch["frame_lengths"] = encoder(audio.to(device), lengths.to(device))
    return heads(**batch)


def _known_mse(predicted: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
    known = ~torch.isnan(targets)
    if not known.any():
        return predicted.sum() * 0
    return ((predicted - torch.nan_to_num(targets)) / scale)[known].pow(2).mean()


def loss_of(words: torch.Tensor, sentences: torch.Tensor, phones: torch.Tensor,
            targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean squared error on the 0..1 scale over the labelled words and phones, plus the sentence aspects'."""
    word_targets, sentence_targets, phone_targets = targets
    return (_known_mse(words, word_targets, 10) + ((sentences - sentence_targets) / 10).pow(2).mean()
            + _known_mse(phones, phone_targets, 2))


def train(heads: PronunciationHeads, encoder: SpeechEncoder | None, examples: Sequence[Example], steps: int,
          batch_size: int, lr: float, encoder_lr: float, device: torch.device, seed: int,
          stop_on: Sequence[Example] = (), check_every: int = 100) -> tuple[list[float], tuple[int, float] | None]:
    """Up to `steps` AdamW steps on shuffled mini-batches; returns the loss of each step and, with `stop_on`
    (examples of speakers not in `examples`), the step kept and its loss on them: that loss is checked every
    `check_every` steps and the heads of the best check are kept (the encoder, when fine-tuned, is not rolled
    back)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    groups = [{"params": heads.parameters(), "lr": lr}]
    if encoder is not None:
        groups.append({"params": encoder.parameters(), "lr": encoder_lr})
        encoder.train()
    heads.train()
    optimiser = torch.optim.AdamW(groups, weight_decay=1e-2)
    order: list[int] = []
    losses = []
    best: tuple[float, int, dict] | None = None
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[i] for i in order[:batch_size]]
        del order[:batch_size]
        loss = loss_of(*forward(heads, encoder, batch, device), _targets(batch, device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if stop_on and (step % check_every == 0 or step == steps):
            held = held_out_loss(heads, encoder, stop_on, device)
            if best is None or held < best[0]:
                best = (held, step, {k: v.detach().clone() for k, v in heads.state_dict().items()})
            heads.train()
    if best is not None:
        heads.load_state_dict(best[2])
    heads.eval()
    if encoder is not None:
        encoder.eval()
    return losses, (best[1], best[0]) if best is not None else None


@torch.no_grad()
def held_out_loss(heads: PronunciationHeads | HeadsEnsemble, encoder: SpeechEncoder | None, examples: Sequence[Example],
                  device: torch.device) -> float:
    """The training loss over `examples`, in batches, with the heads in eval mode."""
    heads.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), 32):
        batch = examples[start:start + 32]
        total += loss_of(*forward(heads, encoder, batch, device), _targets(batch, device)).item() * len(batch)
        count += len(batch)
    return total / count


@torch.no_grad()
def flag_thresholds(heads: PronunciationHeads | HeadsEnsemble, encoder: SpeechEncoder | None, examples: Sequence[Example],
                    device: torch.device, trees: HeadTrees | None = None) -> list[list[float]]:
    """Thresholds of word accuracy for each sensitivity (scorers/flags.py) from the trained heads' predictions
    of the closed-mode words (blended with `trees`' as served), against "the experts gave less than 10"."""
    predicted, needs_work = [], []
    closed = [e for e in examples if e.closed]
    for start in range(0, len(closed), 32):
        batch = closed[start:start + 32]
        words, sentences, phones = (t.cpu().numpy() for t in forward(heads, encoder, batch, device))
        for row, example in enumerate(batch):
            scores = (words[row, :len(example.word_targets)], sentences[row], phones[row])
            if trees is not None:
                scores = trees.blend(example.item, scores)
            known = ~np.isnan(example.word_targets[:, 0])
            predicted.extend(scores[0][known, 0])
            needs_work.extend(example.word_targets[known, 0] < 10)
    return fit_thresholds(np.array(predicted), np.array(needs_work, bool))


def model_card(report: dict[str, Any]) -> str:
    encoder = ("fine-tuned end to end with the heads (encoder lr "
               f"{report['encoder_lr']:g}, saved under {FINETUNED}/)" if report["finetuned_encoder"] else "frozen")
    return "\n".join([
        "# saywell neural profile: heads — model card", "",
        f"Date: {report['date']}. Data: `{report['data']}` ({report['utterances']} utterances, {report['failed']} "
        f"failed the graph; {report['examples']} training examples, closed and open mode). Device: "
        f"{report['device']}.", "",
        f"Models (neural.json): ASR {report['models']['asr']}; frame phone classifier {report['models']['aligner']}; "
        f"SSL encoder {report['models']['ssl']}, {encoder}.", "",
        "Heads: each phone's posterior GOP, margin, duration, what the classifier heard over it and an embedding "
        "of its identity pass through a bidirectional LSTM over the utterance's phones to a phone head (accuracy "
        "0..2, trained on the experts' phone scores); each word reads the mean of its phones' states and their "
        "lowest predicted accuracy, the SSL frames mean-pooled over its aligned span, and per-word GOP, margin, "
        "duration, silence share and ASR agreement numbers; a bidirectional LSTM over the words feeds the word "
        "heads (accuracy, stress, total), an attention pooling of the words and the pooled utterance with "
        "per-utterance rates and pauses feed the sentence heads (accuracy, fluency, prosody, total). Completeness "
        "is not learned: it is the share of reference words the alignment and the ASR found.", "",
        f"Training: {ensemble_card(report)}, each {report['steps']} AdamW steps, batch {report['batch_size']}, lr "
        f"{report['lr']:g}; MSE on the 0..1 scale. Loss (mean of the sets): first {report['first_loss']:.4f}, last "
        f"{report['last_loss']:.4f} (training data, not a validation score). Flag thresholds (sensitivity, word "
        f"accuracy of the served scores): {report['flag_thresholds']}.", "",
        trees_card(report), "",
        *stopping_card(report),
        *phone_classifier_card(report.get("phone_classifier")),
        held_out_card(report), "",
        "Tiny random encoders (engine/profiles/neural/plumbing.py) prove the plumbing only: heads trained on "
        "them, or on a handful of utterances, say nothing about pronunciation.", ""])


def trees_card(report: dict[str, Any]) -> str:
    share = report.get("trees_share") or 0
    if not share:
        return "Trees: none; the heads' scores are served alone."
    return (f"Trees ({TREES_FILE}): gradient-boosted trees over the heads' inputs, flattened (each word's numbers, "
            "its neighbours' GOP, its phones' mean and minimum numbers, the utterance's numbers and the pooled SSL "
            f"frames on {COMPONENTS} principal components), fitted on every training example (with early stopping, "
            "the held-out speakers' too); each word and sentence score is "
            f"{1 - share:g} x the heads' + {share:g} x the trees'. Phone accuracy is the phone head's alone.")


def ensemble_card(report: dict[str, Any]) -> str:
    n, seed = report["ensemble"], report["seed"]
    if n == 1:
        return f"one set of heads, seed {seed}"
    return f"{n} sets of heads whose scores are averaged, seeds {seed}..{seed + n - 1}"


def stopping_card(report: dict[str, Any]) -> list[str]:
    if not report.get("stop_share"):
        return []
    steps = ", ".join(str(step) for step in report["stopped_at"])
    losses = ", ".join(f"{loss:.4f}" for loss in report["stop_loss"])
    return [f"Early stopping: {report['stop_share']:g} of the training speakers were held out of the heads' "
            f"training; each set of heads kept is that of the check whose loss on those speakers was lowest: "
            f"step {steps} (of at most {report['steps']}), loss {losses}.", ""]


def held_out_card(report: dict[str, Any]) -> str:
    if report.get("validation_fold") is None:
        return ("Trained on every utterance given: no speakers were held out, so no validation numbers can come "
                "from this corpus.")
    return (f"Speakers held out: validation fold {report['validation_fold']} of {report['folds']} (speaker-disjoint, "
            f"seed {report['seed']}); `saywell eval --profile neural --model-dir <this folder> --fold "
            f"{report['validation_fold']} --folds {report['folds']} --seed {report['seed']}` measures them. That is cross-validation's kind "
            "of number, not a held-out test result: this corpus's folds have overstated test-split PCC before.")


def phone_classifier_card(phone: dict[str, Any] | None) -> list[str]:
    if not phone:
        return []
    held = (f", {phone['validation_frame_accuracy']:.3f} on the {phone['validation_utterances']} validation-fold "
            "utterances" if "validation_frame_accuracy" in phone else "")
    return [f"Phone classifier (embedded configuration): a convolutional head over Whisper {phone['whisper']}'s "
            f"encoder frames (20 ms), trained on {phone['utterances']} utterances for {phone['epochs']} epochs; "
            f"targets: {phone['targets']}. Frame accuracy {phone['train_frame_accuracy']:.3f} on the training "
            f"utterances{held}. The heads learnt from cross-fitted posteriors: the training speakers in "
            f"{phone['cross_fit_parts']} speaker-disjoint parts, each run through the graph with a classifier "
            "trained on the other parts (frame accuracy on the part it never saw: "
            f"{', '.join(f'{a:.3f}' for a in phone['cross_fit_frame_accuracy'] if a is not None)}).", ""]


def embedded_config(folder: Path, asr: str) -> NeuralConfig:
    """The embedded configuration's neural.json in `folder`: the one there, else a new one (not yet saved)."""
    if (folder / CONFIG_NAME).is_file():
        config = NeuralConfig.load(folder)
        if not config.embedded:
            raise SystemExit(f"saywell train: {folder / CONFIG_NAME} is not the embedded configuration (its ssl has no "
                             "'whisper'); use another --model-dir for --embedded")
        return config
    return NeuralConfig.embedded_in(folder, asr)


@dataclass
class EmbeddedAligner:
    """The embedded configuration's phone classifier, trained on every training utterance, and the heads'
    training examples, whose posteriors came from classifiers that never saw their speakers (cross-fitting)."""

    head: Any
    report: dict[str, Any]
    examples: list[Example]
    failures: list[str]


def cross_fitted(args: argparse.Namespace, config: NeuralConfig, corpus: Sequence[LabeledUtterance],
                 validation: Sequence[LabeledUtterance], split: Callable, phone_targets: Callable,
                 load_audio: Callable[[Path], np.ndarray]) -> EmbeddedAligner:
    """Trains the phone classifier, and runs the training utterances through the graph for the heads.

    A classifier fits its own training frames far better than a new speaker's (frame accuracy ~0.90 against
    ~0.77 on speechocean762), so heads trained on the served classifier's posteriors of its own training
    utterances would learn over-confident goodness. Instead the training speakers are split in CROSS_FIT_PARTS
    speaker-disjoint parts; each part goes through the graph with a classifier trained on the other parts, the
    way the served classifier meets a learner it never heard. The served classifier is trained on every part."""
    phones, silence = config.aligner.phones, config.aligner.silence
    targets = {t.utt: t for t in phone_targets(list(corpus), config.ssl_whisper, phones, silence, args.jobs)}
    held = phone_targets(list(validation), config.ssl_whisper, phones, silence, args.jobs) if validation else []
    if not targets:
        raise SystemExit("saywell train: no training utterance has an analysis to take phone targets from")
    print(f"phone classifier: {len(targets)} utterances, "
          f"{sum(int((t.labels >= 0).sum()) for t in targets.values())} target frames")

    def fit(utterances: Sequence[LabeledUtterance], check: Sequence) -> tuple[Any, dict[str, Any]]:
        return train_phone_head([targets[u.utt] for u in utterances if u.utt in targets], len(phones),
                                ENCODER_FRAME_MS, epochs=args.phone_epochs, seed=args.seed, validation=check)

    parts = [part for part in split(list(corpus), CROSS_FIT_PARTS, args.seed) if part]
    examples: list[Example] = []
    failures: list[str] = []
    out_of_part = []
    with tempfile.TemporaryDirectory(prefix="cross-fit-", dir=config.folder) as scratch:
        for k, part in enumerate(parts):
            others = [u for j, other in enumerate(parts) if j != k for u in other]
            head, report = fit(others, [targets[u.utt] for u in part if u.utt in targets])
            out_of_part.append(report.get("validation_frame_accuracy"))
            folder = Path(scratch) / f"part-{k}"
            part_config = dataclasses.replace(
                config, folder=folder, heads=folder / "heads.pt",
                aligner=dataclasses.replace(config.aligner, head=folder / "phone-head.pt"))
            save_phone_head(head, part_config.aligner.head, phones, {"cross_fit_part": k})
            part_config.save()
            engine = neural_engine(args, folder)
            found, failed = asyncio.run(analyse_corpus(engine, part, load_audio))
            examples += found
            failures += failed
            print(f"cross-fitting: part {k + 1} of {len(parts)} ({len(part)} utterances) through the graph with a "
                  f"classifier of the other parts (its frame accuracy on this part: {out_of_part[-1]:.3f})")
    head, report = fit(corpus, held)
    report |= {"date": datetime.date.today().isoformat(), "whisper": config.ssl_whisper,
               "targets": "cpu profile's pocketsphinx forced alignments of the reference; frames of phones the "
                          "experts judged under 1.5 (0..2) left out",
               "cross_fit_parts": len(parts), "cross_fit_frame_accuracy": out_of_part}
    print(f"phone classifier: frame accuracy {report['train_frame_accuracy']:.3f} on training utterances"
          + (f", {report['validation_frame_accuracy']:.3f} on the validation fold" if held else ""))
    return EmbeddedAligner(head, report, examples, failures)


def neural_engine(args: argparse.Namespace, model_dir: str | Path) -> NeuralEngine:
    try:
        return NeuralEngine(EngineOptions(profile="neural", model_dir=str(model_dir), device=args.device,
                                          allow_download=args.allow_download))
    except EngineError as exc:
        raise SystemExit(f"saywell train: {exc}") from None


def main(argv: Sequence[str], load_corpus: Callable[[str], list], load_audio: Callable[[Path], np.ndarray],
         split: Callable | None = None, phone_targets: Callable | None = None,
         held_out: Callable | None = None) -> int:
    """`load_corpus` and `load_audio` read the speechocean762 layout, `split` deals speaker-disjoint folds,
    `phone_targets` gives the embedded phone classifier's training frames and `held_out` names the corpus's
    confirmation speakers, which neither training nor the validation fold's report sees (saywell.engine.offline)."""
    args = build_parser().parse_args(list(argv))
    if args.embedded and (split is None or phone_targets is None):
        raise SystemExit("saywell train: --embedded needs the cpu profile's analyses (run it as `saywell train`)")
    if args.embedded and args.finetune_encoder:
        raise SystemExit("saywell train: --finetune-encoder trains a torch SSL encoder; the embedded configuration's "
                         "Whisper encoder runs in CTranslate2 and stays frozen")
    if args.phone_epochs < 1:
        raise SystemExit("saywell train: --phone-epochs must be >= 1")
    if args.steps < 1:
        raise SystemExit("saywell train: --steps must be >= 1")
    if not 0 <= args.stop_share < 1 or args.check_every < 1:
        raise SystemExit("saywell train: --stop-share must be in [0, 1) and --check-every >= 1")
    if args.ensemble is None:
        args.ensemble = 1 if args.finetune_encoder else ENSEMBLE
    if args.ensemble < 1 or (args.finetune_encoder and args.ensemble > 1):
        raise SystemExit("saywell train: --ensemble must be >= 1, and 1 with --finetune-encoder (the encoder is "
                         "fine-tuned with one set of heads)")
    if args.trees_share is None:
        args.trees_share = 0.0 if args.finetune_encoder else SHARE
    if not 0 <= args.trees_share <= 1 or (args.finetune_encoder and args.trees_share > 0):
        raise SystemExit("saywell train: --trees-share must be in [0, 1], and 0 with --finetune-encoder (the trees "
                         "would be fitted on the frames of the encoder before fine-tuning)")
    corpus = load_corpus(args.data)
    held = held_out(corpus) if held_out is not None else frozenset()
    validation: list = []
    if args.validation_fold is not None:
        if split is None or not 0 <= args.validation_fold < args.folds:
            raise SystemExit(f"saywell train: --validation-fold must be in 0..{args.folds - 1}")
        folds = split(corpus, args.folds, args.seed)  # dealt before the confirmation speakers leave
        validation = [u for u in folds[args.validation_fold] if u.speaker not in held]
        corpus = [u for k, fold in enumerate(folds) if k != args.validation_fold for u in fold]
    corpus = [u for u in corpus if u.speaker not in held]
    if args.limit:
        corpus = random.Random(args.seed).sample(corpus, min(args.limit, len(corpus)))
        validation = validation[:args.limit]
    aligner = None
    if args.embedded:
        Path(args.model_dir).mkdir(parents=True, exist_ok=True)
        config = embedded_config(Path(args.model_dir), args.asr)
        aligner = cross_fitted(args, config, corpus, validation, split, phone_targets, load_audio)
        examples, failures = aligner.examples, aligner.failures
        # The served classifier and the config go in place now: the heads below are trained for them.
        config.save()
        save_phone_head(aligner.head, config.aligner.head, config.aligner.phones, aligner.report)
        engine = neural_engine(args, args.model_dir)
    else:
        engine = neural_engine(args, args.model_dir)
        examples, failures = asyncio.run(analyse_corpus(engine, corpus, load_audio))
    for failure in failures:
        print(f"skipped {failure}")
    if not examples:
        raise SystemExit(f"no utterance of {args.data} went through the graph ({len(failures)} failed)")
    device = engine.device
    encoder = engine.ssl.load() if args.finetune_encoder else None
    fitted, stop_on = stopping_split(examples, corpus, args.stop_share, args.seed)
    members, runs = [], []
    words, sentences = np.concatenate([e.item.words for e in examples]), np.stack([e.item.sentence for e in examples])
    phones = np.concatenate([e.item.phones for e in examples])
    for member in range(args.ensemble):
        torch.manual_seed(args.seed + member)  # each set's starting weights follow its seed
        heads = PronunciationHeads(HeadsConfig(ssl_dim=examples[0].item.frames.shape[1])).to(device)
        heads.set_normalization(words, sentences, phones)
        runs.append(train(heads, encoder, fitted, args.steps, args.batch_size, args.lr, args.encoder_lr, device,
                          args.seed + member, stop_on, args.check_every))
        members.append(heads)
        print(f"heads {member + 1} of {args.ensemble} (seed {args.seed + member}): loss {runs[-1][0][0]:.4f} -> "
              f"{runs[-1][0][-1]:.4f}")
    heads = HeadsEnsemble(members)
    config = engine.config
    trees = None
    if args.trees_share > 0:  # on every example, the --stop-share speakers' too
        trees = fit_trees([e.item for e in examples], [e.word_targets for e in examples],
                          [e.sentence_targets for e in examples], args.trees_share)
        print(f"fitted trees on {len(examples)} examples (share {args.trees_share:g})")
    config = dataclasses.replace(config, trees=config.folder / TREES_FILE if trees is not None else None)
    thresholds = flag_thresholds(heads, encoder, examples, device, trees)
    if encoder is not None:
        encoder.model.save_pretrained(config.folder / FINETUNED)
        _copy_preprocessor(config.ssl.location, config.folder / FINETUNED, args.allow_download)
        config = dataclasses.replace(config, ssl=model_ref(config.folder, FINETUNED))
    report = {"date": datetime.date.today().isoformat(), "data": str(args.data), "utterances": len(corpus),
              "failed": len(failures), "examples": len(examples), "device": str(device), "steps": args.steps,
              "batch_size": args.batch_size, "lr": args.lr, "encoder_lr": args.encoder_lr, "seed": args.seed,
              "finetuned_encoder": encoder is not None, "ensemble": args.ensemble, "trees_share": args.trees_share,
              "first_loss": float(np.mean([losses[0] for losses, _ in runs])),
              "last_loss": float(np.mean([losses[-1] for losses, _ in runs])), "flag_thresholds": thresholds,
              "models": {"asr": config.asr, "aligner": config.aligner.version(), "ssl": config.ssl_version()},
              "validation_fold": args.validation_fold, "folds": args.folds,
              "phone_classifier": aligner.report if aligner else None, "stop_share": args.stop_share,
              "stopped_at": [stopped[0] for _, stopped in runs] if stop_on else None,
              "stop_loss": [stopped[1] for _, stopped in runs] if stop_on else None}
    # heads.pt, then the trees that name its hash, then neural.json naming both; a stale trees file goes last
    save_heads(heads.cpu(), config.heads, {**report, "untrained": False})
    if trees is not None:
        trees.save(config.folder / TREES_FILE, {"heads": file_hash(config.heads), "date": report["date"],
                                                "examples": len(examples), "validation_fold": args.validation_fold,
                                                "seed": args.seed})
    trained = {k: report[k] for k in ("date", "data", "utterances", "steps", "finetuned_encoder", "device",
                                      "validation_fold", "folds", "seed")}
    dataclasses.replace(config, trained=trained).save()
    if trees is None:
        (config.folder / TREES_FILE).unlink(missing_ok=True)  # a folder trained again without trees
    (config.folder / "MODEL_CARD.md").write_text(model_card(report))
    print(f"trained {args.ensemble} set(s) of heads on {len(examples)} examples in {args.steps} steps (mean loss {report['first_loss']:.4f} -> "
          f"{report['last_loss']:.4f}); wrote {config.heads.name}, neural.json and MODEL_CARD.md to {config.folder}")
    return 0


def _copy_preprocessor(source: str, folder: Path, allow_download: bool) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    try:
        Wav2Vec2FeatureExtractor.from_pretrained(source, local_files_only=not allow_download).save_pretrained(folder)
    except OSError:  # none there: the fine-tuned folder keeps transformers' default, as the source did
        pass
