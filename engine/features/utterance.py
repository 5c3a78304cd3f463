"""Features of one utterance for scoring: GOP, timing, pauses, ASR agreement and prosody.

The same function feeds the live server and the calibration/eval runs, so what is measured offline is what
is served. Features are plain name -> float dicts; the scorer picks the names it was fitted on.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.features.prosody import ProsodyTrack, semitones
from saywell.engine.features.word_prosody import UtteranceLevels, word_prosody_stats
from saywell.engine.language.lexicon import canonical_stress
from saywell.engine.stages.alignment import AlignedWord, Alignment
from saywell.engine.types import FRAME_MS, RecognizedWord, Transcript

PAUSE_MS = 150  # a gap between words longer than this is a pause
LOW_GOP = -3.0  # nats/frame: a phone this far below the free loop is probably wrong


@dataclass(frozen=True)
class WordFeatures:
    word: AlignedWord
    values: dict[str, float]
    recognized: bool  # the ASR heard this word (always true in open mode)


@dataclass(frozen=True)
class UtteranceFeatures:
    words: tuple[WordFeatures, ...]
    sentence: dict[str, float]


def match_reference(reference: list[str], recognized: list[str]) -> list[int | None]:
    """For each reference word, the index of the recognised word it was heard as, or None."""
    matches: list[int | None] = [None] * len(reference)
    matcher = difflib.SequenceMatcher(a=reference, b=recognized, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            matches[block.a + k] = block.b + k
    return matches


def _phone_stats(word: AlignedWord) -> dict[str, float]:
    gops = np.array([p.gop for p in word.phones]) if word.phones else np.zeros(1)
    frames = max(word.end_frame - word.start_frame, 1)
    agree = [p.phone in p.loop_phones for p in word.phones]
    return {
        "gop_mean": float(word.gop),
        "gop_min": float(gops.min()),
        "gop_low_share": float((gops < LOW_GOP).mean()),
        "n_phones": float(len(word.phones)),
        "ms_per_phone": frames * FRAME_MS / max(len(word.phones), 1),
        "loop_agreement": float(np.mean(agree)) if agree else 0.0,
    }


def _stress_stats(word: AlignedWord, prosody: ProsodyTrack) -> dict[str, float]:
    """Does the canonically stressed vowel stand out in loudness, length and pitch as it should?"""
    stresses = canonical_stress(tuple(p.canonical for p in word.phones))
    vowels = [p for p in word.phones if p.canonical[-1:].isdigit()]
    if len(vowels) < 2 or len(stresses) != len(vowels):
        return {"n_vowels": float(len(vowels)), "stress_prominence": 0.0}
    def prominence(phone) -> float:
        seg = prosody.slice(phone.start_frame, phone.end_frame)
        loud = float(seg.intensity_db.mean()) if seg.intensity_db.size else 0.0
        return loud / 10.0 + (phone.end_frame - phone.start_frame) * FRAME_MS / 100.0
    scores = [prominence(v) for v in vowels]
    primary = [i for i, s in enumerate(stresses) if s == 1] or [int(np.argmax(stresses))]
    others = [s for i, s in enumerate(scores) if i not in primary]
    if not others:  # every vowel carries primary stress (some compounds): nothing to stand out from
        return {"n_vowels": float(len(vowels)), "stress_prominence": 0.0}
    stressed = max(scores[i] for i in primary)
    return {"n_vowels": float(len(vowels)), "stress_prominence": stressed - max(others)}


def _loop_phone_stats(word: AlignedWord) -> dict[str, float]:
    """The free phone loop's phones over the word against its canonical phones: edit distance and length ratio."""
    canonical = [p.phone for p in word.phones]
    heard = [phone for p in word.phones for phone in p.loop_phones if phone != "SIL"]
    heard = [phone for i, phone in enumerate(heard) if i == 0 or phone != heard[i - 1]]
    similarity = difflib.SequenceMatcher(a=canonical, b=heard, autojunk=False).ratio() if canonical else 0.0
    return {"loop_phone_distance": 1.0 - similarity, "loop_phone_ratio": len(heard) / max(len(canonical), 1)}


def _agreement_stats(word: AlignedWord, matched: RecognizedWord | None,
                     transcript: Transcript) -> dict[str, float]:
    """How the recognised transcript heard the target word (MultiPA's word-alignment features): the matched
    word's probability, the time difference between the two, and the spelling distance to what was heard
    over the same time (all recognised words overlapping it) when nothing matched."""
    start_ms, end_ms = word.start_frame * FRAME_MS, word.end_frame * FRAME_MS
    if matched is not None:
        heard = matched.text
        offset_ms = abs(matched.start_ms - start_ms) + abs(matched.end_ms - end_ms)
    else:
        overlapping = [w for w in transcript.words if w.start_ms < end_ms and w.end_ms > start_ms]
        heard = " ".join(w.text for w in overlapping)
        offset_ms = float(end_ms - start_ms) if not overlapping else \
            abs(overlapping[0].start_ms - start_ms) + abs(overlapping[-1].end_ms - end_ms)
    similarity = difflib.SequenceMatcher(a=word.text, b=heard, autojunk=False).ratio()
    return {"asr_probability": matched.probability if matched else 0.0, "asr_match": float(matched is not None),
            "asr_char_distance": 1.0 - similarity, "asr_time_offset_ms": float(offset_ms)}


def word_features(alignment: Alignment, transcript: Transcript, prosody: ProsodyTrack,
                  reference: list[str] | None, target: Transcript | None = None) -> tuple[WordFeatures, ...]:
    """Features of the aligned words. They are the reference (closed mode), the target ASR's words (open mode
    with a second ASR), or the recognised words themselves; `transcript` is what the recognising ASR heard."""
    heard = [w.text for w in transcript.words]
    aligned = [w.text for w in alignment.words]
    if reference is not None:
        matches = match_reference(aligned, heard)
    else:
        matches = list(range(len(aligned)))
    own = list(target.words) if target is not None and len(target.words) == len(aligned) else None
    levels = UtteranceLevels.of(alignment.words, prosody)
    result = []
    for i, (word, match) in enumerate(zip(alignment.words, matches)):
        asr_word: RecognizedWord | None = transcript.words[match] if match is not None and match < len(heard) else None
        values = _phone_stats(word)
        values.update(_stress_stats(word, prosody))
        values.update(word_prosody_stats(word, prosody, levels))
        values.update(_loop_phone_stats(word))
        values.update(_agreement_stats(word, asr_word, transcript))
        if reference is None:
            values["own_probability"] = values["asr_probability"]
        else:  # the reference is certain; a target ASR's word carries its own confidence
            values["own_probability"] = own[i].probability if own is not None else 1.0
        result.append(WordFeatures(word=word, values=values, recognized=asr_word is not None))
    return tuple(result)


def _pause_stats(words: tuple[AlignedWord, ...]) -> dict[str, float]:
    gaps = [(b.start_frame - a.end_frame) * FRAME_MS for a, b in zip(words, words[1:])]
    pauses = [g for g in gaps if g > PAUSE_MS]
    span_ms = max((words[-1].end_frame - words[0].start_frame) * FRAME_MS, 1) if words else 1
    return {
        "pauses_per_word": len(pauses) / max(len(words), 1),
        "pause_ratio": sum(pauses) / span_ms,
        "mean_pause_ms": float(np.mean(pauses)) if pauses else 0.0,
        "longest_pause_ms": float(max(pauses)) if pauses else 0.0,
    }


def _rate_stats(words: tuple[AlignedWord, ...]) -> dict[str, float]:
    n_phones = sum(len(w.phones) for w in words)
    span_s = max((words[-1].end_frame - words[0].start_frame) * FRAME_MS / 1000, 0.1) if words else 0.1
    phonation_s = max(sum(w.end_frame - w.start_frame for w in words) * FRAME_MS / 1000, 0.1)
    phone_ms = [(p.end_frame - p.start_frame) * FRAME_MS for w in words for p in w.phones]
    return {
        "speech_rate": n_phones / span_s,  # phones per second, pauses included
        "articulation_rate": n_phones / phonation_s,  # phones per second of speaking
        "words_per_second": len(words) / span_s,
        "phone_duration_cv": float(np.std(phone_ms) / max(np.mean(phone_ms), 1)) if phone_ms else 0.0,
    }


def _pitch_stats(prosody: ProsodyTrack, words: tuple[AlignedWord, ...]) -> dict[str, float]:
    if words:
        prosody = prosody.slice(words[0].start_frame, words[-1].end_frame)
    tones = semitones(prosody.pitch_hz)
    loud = prosody.intensity_db[prosody.intensity_db > 0]
    return {
        "pitch_median_st": float(np.median(tones)) if tones.size else 0.0,  # children and adults apart
        "pitch_std_st": float(np.std(tones)) if tones.size > 2 else 0.0,
        "pitch_range_st": float(np.percentile(tones, 90) - np.percentile(tones, 10)) if tones.size > 2 else 0.0,
        "voiced_ratio": float((prosody.pitch_hz > 0).mean()) if prosody.pitch_hz.size else 0.0,
        "intensity_std_db": float(np.std(loud)) if loud.size > 2 else 0.0,
    }


def utterance_features(alignment: Alignment, transcript: Transcript, prosody: ProsodyTrack,
                       reference: list[str] | None, target: Transcript | None = None) -> UtteranceFeatures:
    """`reference`: the words aligned when they are not the recognised ones (the reference text, or the words
    of `target`, a second ASR's transcript, in open mode)."""
    words = word_features(alignment, transcript, prosody, reference, target)
    return UtteranceFeatures(words=words, sentence=sentence_features(words, transcript.words, prosody,
                                                                     reference is not None))


def sentence_features(words: tuple[WordFeatures, ...], heard: Sequence[RecognizedWord], prosody: ProsodyTrack,
                      has_reference: bool) -> dict[str, float]:
    """The utterance-level numbers of `words` (the aligned words' features), `heard` being what the recognising
    ASR heard over the same stretch."""
    aligned = tuple(w.word for w in words)
    sentence: dict[str, float] = {}
    sentence.update(_pause_stats(aligned))
    sentence.update(_rate_stats(aligned))
    sentence.update(_pitch_stats(prosody, aligned))
    gops = np.array([w.values["gop_mean"] for w in words]) if words else np.zeros(1)
    sentence.update({
        "gop_mean": float(gops.mean()),
        "gop_p10": float(np.percentile(gops, 10)),
        "gop_low_word_share": float((gops < LOW_GOP).mean()),
        "asr_probability": float(np.mean([w.probability for w in heard])) if heard else 0.0,
        "n_words": float(len(words)),
        "loop_agreement": float(np.mean([w.values["loop_agreement"] for w in words])) if words else 0.0,
    })
    sentence["asr_char_distance"] = float(np.mean([w.values["asr_char_distance"] for w in words])) if words else 0.0
    if has_reference:
        sentence["ref_recognized_share"] = float(np.mean([w.recognized for w in words])) if words else 0.0
        sentence["asr_extra_words"] = max(len(heard) - sum(w.recognized for w in words), 0) / max(len(words), 1)
    return sentence


def windowed_features(features: UtteranceFeatures, transcript: Transcript, prosody: ProsodyTrack,
                      has_reference: bool, windows: Sequence[tuple[int, int]],
                      starts: Sequence[int]) -> tuple[UtteranceFeatures, ...]:
    """A long utterance's sentence-sized windows (features/windows.py; `windows`: [first, last) words, `starts`:
    the frame each window's stretch of audio starts at) as utterances of their own. Each has its words' features
    and sentence numbers over its own stretch (the recognised words whose middle falls in it), and its words'
    times moved to the stretch's start: the scorer reads them against the stretch's own encoder frames."""
    parts = []
    for (first, last), start, end in zip(windows, starts, [*starts[1:], None]):
        words = features.words[first:last]
        lo, hi = start * FRAME_MS, float("inf") if end is None else end * FRAME_MS
        heard = [w for w in transcript.words if lo <= (w.start_ms + w.end_ms) / 2 < hi]
        sentence = sentence_features(words, heard, prosody, has_reference)
        moved = tuple(dataclasses.replace(w, word=w.word.moved(-start)) for w in words)
        parts.append(UtteranceFeatures(words=moved, sentence=sentence))
    return tuple(parts)
