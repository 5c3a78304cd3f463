"""From words to the frame classifier's classes and back: the phone sequence a forced alignment places, and
the aligned words with their phones' goodness and what the classifier heard over each phone.

Silence goes at both ends and between words, so that leading, trailing and inter-word silence is not pressed
into the neighbouring phones (a stretch between two words takes at least one frame; the Viterbi path has no
skips). Without the frames for that, the words align without silences.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.language.lexicon import Lexicon, strip_stress
from saywell.engine.scorers.baseline import phone_accuracy
from saywell.engine.stages.frame_alignment import FrameAlignment
from saywell.engine.types import EngineError, InputError, PhoneScore

SILENCE = "SIL"  # how silence is named in `heard`
HEARD_TOP = 3
NOT_PHONES = frozenset({"[PAD]", "[UNK]", "<pad>", "<unk>", "<s>", "</s>", "SPN", "[SPN]"})


@dataclass(frozen=True)
class PhoneInventory:
    """The classifier's classes: names in class-id order and which one is silence."""

    names: tuple[str, ...]
    silence: int | None

    @classmethod
    def of(cls, names: Sequence[str], silence: str | None) -> PhoneInventory:
        return cls(tuple(names), names.index(silence) if silence is not None else None)

    def id_of(self, phone: str) -> int:
        try:
            return self.names.index(strip_stress(phone).upper())
        except ValueError:
            raise EngineError(f"the frame phone classifier has no class for phone {phone!r}") from None

    def heard_name(self, class_id: int) -> str | None:
        """The name `heard` reports for a class: SIL for silence, None for a class that is no phone."""
        if class_id == self.silence:
            return SILENCE
        name = self.names[class_id]
        return None if name in NOT_PHONES else name


@dataclass(frozen=True)
class PhoneSequence:
    """What one forced alignment places: class ids in order and, for each, its word (-1 for silence)."""

    ids: tuple[int, ...]
    owners: tuple[int, ...]
    phones: tuple[str, ...]  # ARPAbet without stress, SIL for silence

    @classmethod
    def of(cls, pronunciations: Sequence[Sequence[str]], inventory: PhoneInventory,
           with_silence: bool) -> PhoneSequence:
        ids: list[int] = []
        owners: list[int] = []
        phones: list[str] = []
        silent = with_silence and inventory.silence is not None
        for index, pronunciation in enumerate(pronunciations):
            if silent:
                ids.append(inventory.silence)
                owners.append(-1)
                phones.append(SILENCE)
            for phone in pronunciation:
                ids.append(inventory.id_of(phone))
                owners.append(index)
                phones.append(strip_stress(phone))
        if silent:
            ids.append(inventory.silence)
            owners.append(-1)
            phones.append(SILENCE)
        return cls(tuple(ids), tuple(owners), tuple(phones))


def phone_sequence(words: Sequence[str], lexicon: Lexicon, inventory: PhoneInventory, frames: int,
                   min_frames: int) -> PhoneSequence:
    """The words' phones with silences when `frames` can hold them, else without; InputError when the audio
    cannot hold even the phones."""
    pronunciations = [lexicon.pronounce(word) for word in words]
    sequence = PhoneSequence.of(pronunciations, inventory, with_silence=True)
    if len(sequence.ids) * min_frames > frames:
        sequence = PhoneSequence.of(pronunciations, inventory, with_silence=False)
    if len(sequence.ids) * min_frames > frames:
        raise InputError(f"the audio ({frames} frames) is too short to hold the {len(words)} words' "
                         f"{len(sequence.ids)} phones; send a reference text that matches the utterance")
    return sequence


@dataclass(frozen=True)
class AlignedWord:
    text: str
    start_frame: int
    end_frame: int  # exclusive, in the classifier's frames
    phones: tuple[PhoneScore, ...]
    gops: tuple[float, ...]  # the phones' posterior GOP (mean log P(canonical) - max log P), <= 0
    margins: tuple[float, ...]  # mean log P(canonical) - max over the other classes: < 0 when another won
    silence_share: float  # mean silence posterior over the word's frames (0 without a silence class)


def heard_over(mean_posteriors: np.ndarray, inventory: PhoneInventory) -> tuple[tuple[str, float], ...]:
    """The classes with the most mean posterior over a span, most first, with that posterior (at most 3)."""
    heard = []
    for class_id in np.argsort(-mean_posteriors):
        name = inventory.heard_name(int(class_id))
        if name is not None:
            heard.append((name, round(float(mean_posteriors[class_id]), 3)))
            if len(heard) == HEARD_TOP:
                break
    return tuple(heard)


def aligned_words(words: Sequence[str], sequence: PhoneSequence, alignment: FrameAlignment,
                  log_probs: np.ndarray, inventory: PhoneInventory, frame_ms: float) -> tuple[AlignedWord, ...]:
    """The words with their spans and phones from an alignment of `sequence` to `log_probs` (T, C)."""
    posteriors = np.exp(log_probs.astype(np.float64))
    cumulative = np.concatenate([np.zeros((1, posteriors.shape[1])), np.cumsum(posteriors, 0)])
    members: list[list[int]] = [[] for _ in words]
    for position, owner in enumerate(sequence.owners):
        if owner >= 0:
            members[owner].append(position)
    result = []
    for index, positions in enumerate(members):
        gops = [alignment.phones[p] for p in positions]
        phones = []
        for position, gop in zip(positions, gops):
            span = (cumulative[gop.end_frame] - cumulative[gop.start_frame]) / gop.n_frames
            phones.append(PhoneScore(sequence.phones[position], int(round(gop.start_frame * frame_ms)),
                                     int(round(gop.end_frame * frame_ms)), float(gop.gop), phone_accuracy(gop.gop),
                                     heard_over(span, inventory)))
        start, end = gops[0].start_frame, gops[-1].end_frame
        silence = 0.0
        if inventory.silence is not None:
            silence = float((cumulative[end, inventory.silence] - cumulative[start, inventory.silence])
                            / max(end - start, 1))
        result.append(AlignedWord(words[index], start, end, tuple(phones), tuple(g.gop for g in gops),
                                  tuple(g.margin for g in gops), silence))
    return tuple(result)


@dataclass(frozen=True)
class WordTimings:
    """Aligned words with the aligner's frame step (what an evaluation reads to time labelled words)."""

    words: tuple[AlignedWord, ...]
    frame_ms: float
