"""Corpora in the speechocean762 layout (`audio/<utt>.<ext>` + `labels.jsonl`) and speaker-disjoint folds."""
from __future__ import annotations

import json
import pathlib
import random
from dataclasses import dataclass

import numpy as np

from saywell.engine.types import SAMPLE_RATE

AUDIO_EXTENSIONS = (".opus", ".ogg", ".flac", ".wav")
SENTENCE_ASPECTS = ("accuracy", "fluency", "prosody", "total", "completeness")
WORD_ASPECTS = ("accuracy", "stress", "total")


@dataclass(frozen=True)
class LabeledWord:
    text: str
    accuracy: float
    stress: float
    total: float
    # The word's canonical phones as labelled (ARPAbet, vowels with their stress digit, e.g. "AO0") and each
    # phone's accuracy (0..2, the experts' mean); empty when the corpus has no phone labels.
    phones: tuple[str, ...] = ()
    phones_accuracy: tuple[float, ...] = ()


@dataclass(frozen=True)
class LabeledUtterance:
    utt: str
    speaker: str
    text: str
    scores: dict[str, float]  # SENTENCE_ASPECTS
    words: tuple[LabeledWord, ...]
    audio_path: pathlib.Path


def _audio_path(audio_dir: pathlib.Path, utt: str) -> pathlib.Path:
    for ext in AUDIO_EXTENSIONS:
        path = audio_dir / f"{utt}{ext}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no audio for utterance {utt} in {audio_dir} ({', '.join(AUDIO_EXTENSIONS)})")


def load_corpus(root: str | pathlib.Path) -> list[LabeledUtterance]:
    root = pathlib.Path(root)
    labels = root / "labels.jsonl"
    if not labels.exists():
        raise FileNotFoundError(f"{labels} not found: expected the speechocean762 layout (audio/, labels.jsonl)")
    result = []
    for line in labels.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        scores = {"accuracy": row["accuracy"], "fluency": row["fluency"], "prosody": row["prosodic"],
                  "total": row["total"], "completeness": row.get("completeness", 10)}
        words = tuple(LabeledWord(w["text"], w["accuracy"], w["stress"], w["total"], tuple(w.get("phones", ())),
                                  tuple(float(a) for a in w.get("phones_accuracy", ()))) for w in row["words"])
        result.append(LabeledUtterance(row["utt"], str(row["speaker"]), row["text"], scores, words,
                                       _audio_path(root / "audio", row["utt"])))
    return result


def load_expert_means(root: str | pathlib.Path) -> dict[str, dict]:
    """Mean of the five experts per utterance: smoother training targets than the floored median.

    Returns utt -> {"sentence": {aspect: mean}, "words": [{aspect: mean}]}; empty when experts.jsonl is absent.
    """
    path = pathlib.Path(root) / "experts.jsonl"
    if not path.exists():
        return {}
    means = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        experts = row["experts"]
        sentence = {"accuracy": experts["accuracy"], "fluency": experts["fluency"], "prosody": experts["prosodic"],
                    "total": experts["total"]}
        means[row["utt"]] = {
            "sentence": {k: float(np.mean(v)) for k, v in sentence.items()},
            "words": [{a: float(np.mean(w[a])) for a in WORD_ASPECTS} for w in experts["words"]]}
    return means


def load_audio(path: pathlib.Path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    return audio


def speaker_folds(utterances: list[LabeledUtterance], n_folds: int = 5, seed: int = 762) -> list[list[LabeledUtterance]]:
    """Speakers shuffled with a fixed seed and dealt round-robin: no speaker appears in two folds."""
    speakers = sorted({u.speaker for u in utterances})
    random.Random(seed).shuffle(speakers)
    fold_of = {s: i % n_folds for i, s in enumerate(speakers)}
    folds: list[list[LabeledUtterance]] = [[] for _ in range(n_folds)]
    for u in utterances:
        folds[fold_of[u.speaker]].append(u)
    return folds


# Confirmation speakers (#17): training speakers kept out of every choice (features, architectures, hyperparameters,
# thresholds) and looked at only to confirm a finished change. They are half of validation fold 0's speakers (5
# folds, seed 762), so the shipped models, which never train on fold 0, have not seen them either. The fold's
# speakers are ranked by their mean sentence accuracy and paired off, and one of each pair is drawn with its own
# seed: the set spreads like the fold. (A first, unstratified draw gave 12 speakers with 4.9% of words needing
# work against the corpus's 12%, too few for word-level numbers.) Designated in session 17: every speaker had been
# in earlier sessions' cross-validation, so they are untouched from then on, not from the start.
CONFIRMATION_FOLDS, CONFIRMATION_FOLD_SEED, CONFIRMATION_SEED = 5, 762, 1717


def confirmation_speakers(utterances: list[LabeledUtterance]) -> frozenset[str]:
    """One speaker of each pair of fold 0's speakers (of `speaker_folds(utterances, 5, 762)`) ranked by mean
    sentence accuracy: half of the fold, rounded down."""
    fold = speaker_folds(utterances, CONFIRMATION_FOLDS, CONFIRMATION_FOLD_SEED)[0]
    scores: dict[str, list[float]] = {}
    for u in fold:
        scores.setdefault(u.speaker, []).append(float(u.scores.get("accuracy", 0.0)))
    ranked = sorted(scores, key=lambda s: (float(np.mean(scores[s])), s))
    rng = random.Random(CONFIRMATION_SEED)
    return frozenset(rng.choice(ranked[i:i + 2]) for i in range(0, len(ranked) - 1, 2))


def without_speakers(utterances: list[LabeledUtterance], speakers: frozenset[str]) -> list[LabeledUtterance]:
    return [u for u in utterances if u.speaker not in speakers]


def choice_folds(utterances: list[LabeledUtterance], n_folds: int = 5, seed: int = 762,
                 held: frozenset[str] | None = None) -> list[list[LabeledUtterance]]:
    """`speaker_folds` with the confirmation speakers taken out afterwards: the folds keep their speakers whatever
    the confirmation set is (fold 0 of the default split loses half its speakers). `held`: the confirmation
    speakers of the whole corpus, when `utterances` is only part of it (a sample would draw others)."""
    held = confirmation_speakers(utterances) if held is None else held
    return [without_speakers(fold, held) for fold in speaker_folds(utterances, n_folds, seed)]


def load_choice_corpus(root: str | pathlib.Path) -> list[LabeledUtterance]:
    """The corpus without its confirmation speakers, for trainers that use every utterance (no folds)."""
    corpus = load_corpus(root)
    return without_speakers(corpus, confirmation_speakers(corpus))


def select(utterances: list[LabeledUtterance], limit: int | None, seed: int) -> list[LabeledUtterance]:
    if limit is None or limit >= len(utterances):
        return utterances
    return random.Random(seed).sample(utterances, limit)
