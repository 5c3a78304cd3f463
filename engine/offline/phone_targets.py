"""Frame targets for the neural profile's embedded phone classifier, from the cpu profile's analyses.

Each cached analysis (offline/analysis.py) holds the utterance's Whisper encoder frames (20 ms) and the
pocketsphinx forced alignment of its reference (10 ms frames). An encoder frame takes the class of the phone
that covers its centre, silence outside the words. Frames of a phone the experts did not judge right (mean phone
accuracy under CORRECT_PHONE, 0..2 scale) get no target, nor do the frames of a word whose labelled phones do not
match the aligned ones unless the experts scored it at least CORRECT_WORD, nor those of a word no label pairs
with: the classifier learns phones said right, which is what goodness of pronunciation compares against.

Where the centres fall: Whisper's log-mel frames are centred STFT frames (frame m at 10m ms) and its second
convolution (kernel 3, stride 2, padding 1) centres encoder frame i on mel frame 2i, at 20i ms. Pocketsphinx's
frame j is a 25.6 ms window starting at 10j ms, centred at 10j + 12.8 ms. Encoder frame i therefore takes
pocketsphinx frame round((20i - 12.8) / 10) = 2i - 1 (frame 0 for i = 0).
"""
from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from saywell.engine.language.lexicon import strip_stress
from saywell.engine.language.text import match_reference, normalize_words
from saywell.engine.offline.analysis import UtteranceAnalysis
from saywell.engine.offline.analysis import load as load_analysis
from saywell.engine.offline.dataset import LabeledUtterance, LabeledWord
from saywell.engine.profiles.neural.phone_head import IGNORE, FrameTargets
from saywell.engine.stages.asr import ENCODER_FRAME_MS

CORRECT_PHONE = 1.5
CORRECT_WORD = 8.0
POCKETSPHINX_WINDOW_CENTRE_MS = 12.8  # half of its 25.6 ms analysis window


def _word_phone_masks(analysis: UtteranceAnalysis, utterance: LabeledUtterance) -> list[list[bool] | None]:
    """Per aligned reference word, which of its phones may be a target (None: none of them)."""
    spelled: list[str] = []
    labels: list[tuple[LabeledWord, bool]] = []  # per normalised label word: its label, whether its phones are its own
    for word in utterance.words:
        parts = normalize_words(word.text)
        for part in parts:  # a label word that normalises to several words: its phones cannot be split
            spelled.append(part)
            labels.append((word, len(parts) == 1))
    words = analysis.closed.words
    masks: list[list[bool] | None] = []
    for aligned, match in zip(words, match_reference(spelled, [w.text for w in words])):
        if match is None:
            masks.append(None)
            continue
        label, own_phones = labels[match]
        if own_phones and [strip_stress(p).upper() for p in label.phones] == [p.phone.upper() for p in aligned.phones]:
            masks.append([a >= CORRECT_PHONE for a in label.phones_accuracy])
        else:
            masks.append([True] * len(aligned.phones) if label.accuracy >= CORRECT_WORD else None)
    return masks


def centre_frames(n_frames: int, frame_ms: float, aligner_frames: int, aligner_ms: float) -> np.ndarray:
    """For each of `n_frames` encoder frames, the aligner frame whose window centre is nearest its centre."""
    centres = (np.arange(n_frames) * frame_ms - POCKETSPHINX_WINDOW_CENTRE_MS) / aligner_ms
    return np.clip(np.round(centres), 0, max(aligner_frames - 1, 0)).astype(np.int64)


def frame_targets(analysis: UtteranceAnalysis, utterance: LabeledUtterance, phones: Sequence[str],
                  silence: str) -> FrameTargets:
    """The analysis's encoder frames and each frame's class id in `phones` (IGNORE: no target)."""
    frames = analysis.encoder
    alignment = analysis.closed
    ids = {p: i for i, p in enumerate(phones)}
    fine = np.full(max(alignment.n_frames, 1), ids[silence], np.int64)  # the aligner's frames
    for aligned, mask in zip(alignment.words, _word_phone_masks(analysis, utterance)):
        for k, phone in enumerate(aligned.phones):
            keep = mask is not None and mask[k] and phone.phone.upper() in ids
            fine[phone.start_frame:phone.end_frame] = ids[phone.phone.upper()] if keep else IGNORE
    return FrameTargets(utterance.utt, frames,
                        fine[centre_frames(len(frames), ENCODER_FRAME_MS, len(fine), alignment.frame_ms)])


def corpus_frame_targets(utterances: Sequence[LabeledUtterance], folders: Sequence[pathlib.Path],
                         phones: Sequence[str], silence: str) -> list[FrameTargets]:
    """Targets of every utterance with a cached analysis in one of `folders`, the first that has it (the others
    are skipped)."""
    found = []
    for utterance in utterances:
        path = next((f / f"{utterance.utt}.pkl" for f in folders if (f / f"{utterance.utt}.pkl").exists()), None)
        if path is not None:
            found.append(frame_targets(load_analysis(path), utterance, phones, silence))
    return found
