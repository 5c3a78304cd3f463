"""What the heads read besides the SSL frames: a few numbers per phone and per word from the alignment and the
ASR, and a few per utterance. The live engine and `saywell train` build them with these same functions."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from saywell.engine.features.utterance import match_reference
from saywell.engine.language.lexicon import VOWELS
from saywell.engine.profiles.neural.alignment import SILENCE, AlignedWord
from saywell.engine.profiles.neural.phone_head import CONSONANTS
from saywell.engine.scorers.baseline import OMISSION_MS_PER_PHONE
from saywell.engine.types import RecognizedWord

# Names in the order of the columns; a heads checkpoint records them and is refused if they differ. Values are
# roughly unit-scaled (ms_per_phone in 100 ms, n_phones in tens) before the heads' own z-scoring.
WORD_FEATURES = ("gop_mean", "gop_min", "margin_mean", "ms_per_phone", "n_phones", "silence_share", "asr_heard",
                 "asr_probability", "gop_std", "share_gop_below_1", "share_gop_below_3", "share_outranked",
                 "margin_min", "accuracy_mean", "accuracy_min", "share_heard_as_said")
# Per phone: its posterior GOP and margin, log duration, whether the classifier heard it (its most probable phone
# over the span) or silence there, the canonical phone's mean posterior over the span when it is among the three
# most probable (`heard`, else 0), and the GOP mapped to 0..2 (scorers/baseline).
PHONE_FEATURES = ("gop", "margin", "log_ms", "heard_as_said", "said_share", "heard_silence", "accuracy")
# Phones the heads embed, by index; 0 stands for any other (a classifier's class outside ARPAbet).
PHONE_CLASSES = ("?",) + tuple(sorted(VOWELS)) + CONSONANTS
PHONE_CLASS_IDS = {phone: index for index, phone in enumerate(PHONE_CLASSES)}
SENTENCE_FEATURES = ("closed", "duration_s", "speech_share", "words_per_s", "pauses_per_word", "gop_mean",
                     "heard_share", "asr_probability")
PAUSE_MS = 150  # a gap between words longer than this is a pause
SILENT_WORD = 0.5  # a word whose frames are mostly silence was not said


@dataclass(frozen=True)
class HeadInputs:
    spans_ms: np.ndarray = field(repr=False)  # (N, 2) each word's [start, end) in ms
    words: np.ndarray = field(repr=False)  # (N, len(WORD_FEATURES)) float32
    sentence: np.ndarray = field(repr=False)  # (len(SENTENCE_FEATURES),) float32
    omitted: tuple[bool, ...]  # closed mode: a candidate omission (is_omitted; scoring.scored_result decides)
    phones: np.ndarray = field(repr=False)  # (P, len(PHONE_FEATURES)) float32, every word's phones in order
    phone_ids: np.ndarray = field(repr=False)  # (P,) int64 index in PHONE_CLASSES
    phone_owner: np.ndarray = field(repr=False)  # (P,) int64 the word each phone belongs to


def phones_of_words(values: np.ndarray, owner: np.ndarray, n_words: int) -> list[np.ndarray]:
    """`values` (per phone, in word order as head_inputs lays them out) cut into each word's phones."""
    return np.split(values, np.cumsum(np.bincount(owner, minlength=n_words))[:-1])


def heard_words(words: Sequence[str], recognised: Sequence[RecognizedWord], closed: bool
                ) -> tuple[RecognizedWord | None, ...]:
    """Closed mode: the recognised word each reference word was heard as (None: not heard). Open mode: the
    assessed words are the recognised ones."""
    if not closed:
        return tuple(recognised)
    matches = match_reference(list(words), [w.text for w in recognised])
    return tuple(recognised[m] if m is not None else None for m in matches)


def is_omitted(word: AlignedWord, heard: RecognizedWord | None, frame_ms: float) -> bool:
    """A reference word the ASR did not hear and the alignment squeezed or placed over silence (the cpu
    profile's duration rule, with the classifier's silence posterior as a second witness): a candidate omission,
    reported only when the word's scores agree (scoring.scored_result)."""
    ms_per_phone = (word.end_frame - word.start_frame) * frame_ms / max(len(word.phones), 1)
    return heard is None and (ms_per_phone < OMISSION_MS_PER_PHONE or word.silence_share > SILENT_WORD)


def head_inputs(words: Sequence[AlignedWord], heard: Sequence[RecognizedWord | None], closed: bool,
                duration_ms: int, frame_ms: float) -> HeadInputs:
    """The heads' inputs for aligned `words`, each heard as `heard` (see heard_words), in `frame_ms` frames."""
    spans = np.array([[round(w.start_frame * frame_ms), round(w.end_frame * frame_ms)] for w in words],
                     dtype=np.int64).reshape(-1, 2)
    rows, phone_rows, phone_ids, phone_owner = [], [], [], []
    for index, (word, match) in enumerate(zip(words, heard)):
        gops, margins = np.array(word.gops), np.array(word.margins)
        accuracies = np.array([p.accuracy for p in word.phones])
        said = [float(bool(p.heard) and p.heard[0][0] == p.phone) for p in word.phones]
        ms = (word.end_frame - word.start_frame) * frame_ms
        rows.append([gops.mean(), gops.min(), float(margins.mean()), ms / len(gops) / 100, len(gops) / 10,
                     word.silence_share, float(match is not None), match.probability if match else 0.0,
                     gops.std(), (gops < -1).mean(), (gops < -3).mean(), (margins < 0).mean(), margins.min(),
                     accuracies.mean(), accuracies.min(), float(np.mean(said))])
        for phone, gop, margin, heard_it in zip(word.phones, gops, margins, said):
            top = phone.heard[0][0] if phone.heard else ""
            phone_rows.append([gop, margin, np.log(max(phone.end_ms - phone.start_ms, 1)), heard_it,
                               dict(phone.heard).get(phone.phone, 0.0), float(top == SILENCE), phone.accuracy])
            phone_ids.append(PHONE_CLASS_IDS.get(phone.phone, 0))
            phone_owner.append(index)
    word_values = np.array(rows, np.float32).reshape(-1, len(WORD_FEATURES))
    omitted = tuple(closed and is_omitted(w, h, frame_ms) for w, h in zip(words, heard))
    return HeadInputs(spans, word_values, sentence_numbers(word_values, spans, closed, duration_ms), omitted,
                      np.array(phone_rows, np.float32).reshape(-1, len(PHONE_FEATURES)),
                      np.array(phone_ids, np.int64), np.array(phone_owner, np.int64))


def sentence_numbers(word_values: np.ndarray, spans: np.ndarray, closed: bool, duration_ms: float) -> np.ndarray:
    """SENTENCE_FEATURES of words with these WORD_FEATURES rows and spans (ms), in `duration_ms` of audio."""
    def mean_of(feature: str) -> float:
        return float(word_values[:, WORD_FEATURES.index(feature)].mean()) if len(word_values) else 0.0

    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    duration_s = max(duration_ms, 1) / 1000
    n = len(word_values)
    return np.array([float(closed), duration_s, float((spans[:, 1] - spans[:, 0]).sum()) / max(duration_ms, 1),
                     n / duration_s, sum(g > PAUSE_MS for g in gaps) / max(n, 1),
                     mean_of("gop_mean"), mean_of("asr_heard"), mean_of("asr_probability")], np.float32)


def window_inputs(inputs: HeadInputs, first: int, last: int, start_ms: float, end_ms: float) -> HeadInputs:
    """Words first..last-1 of `inputs` as an utterance of their own spanning [start_ms, end_ms) of the audio
    (features/windows.py): spans from start_ms, their phones, and sentence numbers over the window alone."""
    spans = inputs.spans_ms[first:last] - int(start_ms)
    words = inputs.words[first:last]
    keep = (inputs.phone_owner >= first) & (inputs.phone_owner < last)
    closed = bool(inputs.sentence[SENTENCE_FEATURES.index("closed")])
    return HeadInputs(spans, words, sentence_numbers(words, spans, closed, end_ms - start_ms),
                      inputs.omitted[first:last], inputs.phones[keep], inputs.phone_ids[keep],
                      inputs.phone_owner[keep] - first)
