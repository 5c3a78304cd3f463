"""Forced alignment, a free phone loop and goodness of pronunciation (GOP) with pocketsphinx.

GOP compares how well the audio fits the phones the learner should have said (forced alignment) with how
well it fits the best phones anyone could have said there (a phone loop over the same frames). The phone-level
alignment and the loop use `compallsen=True` so their acoustic scores are normalised the same way and can be
subtracted. pocketsphinx decoders are not thread-safe, so each thread gets its own, built on first use.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.language.lexicon import Lexicon, is_vowel, strip_stress
from saywell.engine.stages.base import AlignItem, run_each
from saywell.engine.types import FRAME_MS, SAMPLE_RATE, EngineError

_SILENCES = frozenset({"<s>", "</s>", "<sil>", "SIL"})
_MIN_FRAMES_PER_PHONE = 3  # one per emitting HMM state
_SCORE_SCALE = 1024  # pocketsphinx keeps acoustic scores right-shifted by 10 bits


class AlignmentError(EngineError):
    """Forced alignment could not place the words in the audio."""


class TooManyWordsError(AlignmentError):
    """The audio is too short to hold the words' phones (a learner who read part of a long reference)."""


@dataclass(frozen=True)
class AlignerOptions:
    """pocketsphinx settings; the defaults are the ones measured in shared/notes/offline-models.md."""

    model_dir: str | None = None  # acoustic model + dictionary folder; None: pocketsphinx's bundled en-us
    # Forced alignment searches one word sequence, so pruning saves little time but can lose the only path
    # when the audio is tight for the text: pocketsphinx's default 1e-48, and even 1e-200, found none for a
    # long word squeezed into 0.4 s. 0 turns pruning off (measured: same RTF). Used as beam, pbeam and wbeam.
    align_beam: float = 0.0
    loop_lw: float = 2.0  # phone-bigram weight of the free phone loop
    loop_beam: float = 1e-20
    loop_pbeam: float = 1e-20
    min_audio_ms: int = 100  # shorter audio is refused before decoding


@dataclass(frozen=True)
class AlignedPhone:
    phone: str  # ARPAbet, no stress
    canonical: str  # the lexicon's phone with its stress digit (vowels), e.g. "AH0"
    start_frame: int  # 10 ms frames from the start of the audio
    end_frame: int  # exclusive
    aligned_loglik: float  # natural-log acoustic likelihood under forced alignment
    loop_loglik: float  # best free phone loop log-likelihood over the same frames, pro-rated by overlap
    gop: float  # (aligned - loop) / frames: nats per frame, ~0 for a good phone, negative for a bad one
    loop_phones: tuple[str, ...]  # phones the loop recognised overlapping this phone, in order
    # The loop's phones over this phone's frames, each with the share of the frames it covers, most first.
    heard: tuple[tuple[str, float], ...] = ()

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass(frozen=True)
class AlignedWord:
    text: str
    start_frame: int
    end_frame: int  # exclusive
    phones: tuple[AlignedPhone, ...]

    @property
    def gop(self) -> float:
        """Frame-weighted mean GOP of the word's phones: long phones count more."""
        frames = sum(p.n_frames for p in self.phones)
        return sum(p.gop * p.n_frames for p in self.phones) / frames if frames else 0.0

    def moved(self, frames: int) -> "AlignedWord":
        """The word and its phones `frames` later (earlier when negative)."""
        phones = tuple(dataclasses.replace(p, start_frame=p.start_frame + frames, end_frame=p.end_frame + frames)
                       for p in self.phones)
        return dataclasses.replace(self, start_frame=self.start_frame + frames, end_frame=self.end_frame + frames,
                                   phones=phones)


@dataclass(frozen=True)
class Alignment:
    words: tuple[AlignedWord, ...]  # silences and fillers left out
    n_frames: int
    loop_phones: tuple[tuple[str, int, int], ...]  # (phone, start, end exclusive) of the whole loop decode
    frame_ms: int = FRAME_MS  # the aligner's frame: pocketsphinx 10 ms; wav2vec2-style aligners 10 or 20 ms

    def frame_at(self, sample: int, sample_rate: int = SAMPLE_RATE) -> int:
        """The frame that starts at audio sample `sample` (whole frames from the start of the audio)."""
        return sample * 1000 // (sample_rate * self.frame_ms)

    @property
    def gop(self) -> float:
        frames = sum(p.n_frames for w in self.words for p in w.phones)
        return sum(p.gop * p.n_frames for w in self.words for p in w.phones) / frames if frames else 0.0

    @staticmethod
    def joined(parts: Sequence[tuple[int, "Alignment"]], n_frames: int) -> "Alignment":
        """One alignment from alignments of consecutive stretches of audio, each with its start frame (all
        parts share one frame length)."""
        words = tuple(w.moved(start) for start, part in parts for w in part.words)
        loop = tuple((phone, a + start, b + start) for start, part in parts for phone, a, b in part.loop_phones)
        frame_ms = parts[0][1].frame_ms if parts else FRAME_MS
        if any(part.frame_ms != frame_ms for _, part in parts):
            raise ValueError("joined alignments must share one frame length")
        return Alignment(words=words, n_frames=n_frames, loop_phones=loop, frame_ms=frame_ms)


@dataclass(frozen=True)
class LoopSegment:
    phone: str
    start: int
    end: int  # exclusive
    loglik: float


class _Decoders:
    """One thread's decoders (each loads its own acoustic model, ~40 MB resident), each built on first use:
    word-level alignment, phone-level alignment and the phone loop."""

    def __init__(self, options: AlignerOptions) -> None:
        from pocketsphinx import get_model_path  # deferred: loads a native library

        root = options.model_dir or get_model_path()
        self._options = options
        self._root = root
        self._common = dict(hmm=os.path.join(root, "en-us", "en-us"),
                            dict=os.path.join(root, "en-us", "cmudict-en-us.dict"), loglevel="FATAL")
        self._words = self._align = self._loop = None

    def _aligner(self, all_senones: bool):
        from pocketsphinx import Decoder  # deferred: loads a native library

        beam = self._options.align_beam
        return Decoder(lm=None, bestpath=False, beam=beam, pbeam=beam, wbeam=beam, compallsen=all_senones,
                       **self._common)

    @property
    def words(self):
        """Word boundaries: the Viterbi path does not change when each frame's scores are normalised by the
        best active senone instead of the best of all, so this pass scores only the senones it needs (measured:
        78 -> 25 ms for 1.75 s, the same boundaries)."""
        if self._words is None:
            self._words = self._aligner(all_senones=False)
        return self._words

    @property
    def align(self):
        """Phone and state alignment within the word boundaries, its scores normalised like the loop's."""
        if self._align is None:
            self._align = self._aligner(all_senones=True)
        return self._align

    @property
    def loop(self):
        if self._loop is None:
            from pocketsphinx import Decoder

            o = self._options
            self._loop = Decoder(allphone=os.path.join(self._root, "en-us", "en-us-phone.lm.bin"), lw=o.loop_lw,
                                 beam=o.loop_beam, pbeam=o.loop_pbeam, compallsen=True, **self._common)
        return self._loop


def _decode(decoder, pcm: bytes) -> None:
    # The front end carries state (noise estimate) from one utterance into the next, which would make a
    # result depend on what the thread aligned before; resetting it costs ~0.1 ms.
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _to_pcm(audio: np.ndarray, min_samples: int) -> bytes:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise AlignmentError(f"audio must be mono (1-D), got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise AlignmentError(f"audio must be float samples in [-1, 1], got dtype {audio.dtype}")
    if len(audio) < min_samples:
        raise AlignmentError(
            f"audio too short: {len(audio) * 1000 // SAMPLE_RATE} ms < {min_samples * 1000 // SAMPLE_RATE} ms")
    if not np.all(np.isfinite(audio)):
        raise AlignmentError("audio contains NaN or infinite samples")
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _stress_map(aligned: list[str], variants: tuple[tuple[str, ...], ...]) -> list[str]:
    """Give the phones pocketsphinx aligned the lexicon's stress digits, matching the closest variant."""
    def matched(variant: tuple[str, ...]) -> list[str | None]:
        out: list[str | None] = [None] * len(aligned)
        sm = difflib.SequenceMatcher(a=aligned, b=[strip_stress(p) for p in variant], autojunk=False)
        for block in sm.get_matching_blocks():
            for k in range(block.size):
                out[block.a + k] = variant[block.b + k]
        return out

    best = max((matched(v) for v in variants), key=lambda m: sum(x is not None for x in m))
    return [c if c is not None else (p + "0" if is_vowel(p) else p) for p, c in zip(aligned, best)]


class PhoneAligner:
    """Stage `run_batch(items) -> alignments`; thread-safe, with one decoder pair per calling thread."""

    name = "align"

    def __init__(self, lexicon: Lexicon | None = None, options: AlignerOptions = AlignerOptions()) -> None:
        self.lexicon = lexicon or Lexicon()
        self.options = options
        self._local = threading.local()

    def load(self, stage: str = "") -> "PhoneAligner":
        """Warm up the calling thread's decoders for `stage` ("align", "loop"; "": both) and the lexicon, so
        the first request pays nothing."""
        decoders = self._decoders()
        if stage in ("", "align"):
            self.lexicon.load()  # pronunciations of words the dictionary lacks
            self._loaded(lambda: decoders.words)
            self._loaded(lambda: decoders.align)
        if stage in ("", "loop"):
            self._loaded(lambda: decoders.loop)
        return self

    def _decoders(self) -> _Decoders:
        decoders = getattr(self._local, "decoders", None)
        if decoders is None:
            decoders = self._loaded(lambda: _Decoders(self.options))
            self._local.decoders = decoders
        return decoders

    @staticmethod
    def _loaded(build):
        try:
            return build()
        except (RuntimeError, OSError, ValueError) as exc:
            raise AlignmentError(f"could not load the pocketsphinx model: {exc}") from exc

    def run_batch(self, items: Sequence[AlignItem]) -> list[Alignment | Exception]:
        """Align each item on its own; a failed item yields its exception, not a raise."""
        return run_each(items, lambda item: self.align(item.audio, item.words, item.loop))

    def close(self) -> None:
        self._local = threading.local()

    def phone_loop(self, audio: np.ndarray) -> list[LoopSegment]:
        """The free phone loop alone: it needs no words, so it can run while the words are recognised."""
        pcm = _to_pcm(audio, self.options.min_audio_ms * SAMPLE_RATE // 1000)
        return self._phone_loop(self._loaded(lambda: self._decoders().loop), pcm)

    def align(self, audio: np.ndarray, words: Sequence[str], loop: list[LoopSegment] | None = None) -> Alignment:
        """Align normalised `words` to 16 kHz mono float32 `audio`; raises AlignmentError saying why not."""
        words = [w.lower() if isinstance(w, str) else w for w in words]
        if not words:
            raise AlignmentError("no words to align (empty reference after normalisation)")
        if any(not isinstance(w, str) or not w.strip() or any(ch.isspace() for ch in w) for w in words):
            raise AlignmentError(f"words must be single non-empty tokens, got {words!r}")
        pcm = _to_pcm(audio, self.options.min_audio_ms * SAMPLE_RATE // 1000)
        words_decoder = self._loaded(lambda: self._decoders().words)
        decoder = self._loaded(lambda: self._decoders().align)
        n_phones = sum(self._ensure_word(words_decoder, w) for w in words)
        frames = len(audio) * 100 // SAMPLE_RATE
        if frames < n_phones * _MIN_FRAMES_PER_PHONE:
            raise TooManyWordsError(f"audio too short: {frames * 10} ms for {n_phones} phones "
                                 f"(needs >= {_MIN_FRAMES_PER_PHONE * 10} ms per phone)")
        segments = self._align_segments(words_decoder, decoder, pcm, words)
        if loop is None:
            loop = self._phone_loop(self._loaded(lambda: self._decoders().loop), pcm)
        aligned = tuple(self._word(text, phones, loop) for text, phones in zip(words, segments))
        n_frames = max(decoder.n_frames(), loop[-1].end if loop else 0)
        return Alignment(words=aligned, n_frames=n_frames,
                         loop_phones=tuple((s.phone, s.start, s.end) for s in loop))

    def _ensure_word(self, decoder, word: str) -> int:
        """Add an out-of-dictionary word with the lexicon's pronunciation; return its phone count."""
        known = decoder.lookup_word(word)
        if known:
            return len(known.split())
        try:
            phones = [strip_stress(p) for p in self.lexicon.pronounce(word)]
        except EngineError as exc:
            raise AlignmentError(f"no pronunciation for {word!r}: {exc}") from exc
        try:
            decoder.add_word(word, " ".join(phones), True)
        except RuntimeError as exc:
            raise AlignmentError(f"pocketsphinx refused word {word!r} /{' '.join(phones)}/: {exc}") from exc
        return len(phones)

    def _align_segments(self, words_decoder, decoder, pcm: bytes, words: list[str]
                        ) -> list[list[tuple[str, int, int, float]]]:
        """Two passes: word-level alignment (`words_decoder`), then state-level within its word boundaries
        (`decoder`); returns each word's (phone, start, end, ln)."""
        try:
            words_decoder.set_align_text(" ".join(words))
            _decode(words_decoder, pcm)
            found = words_decoder.hyp() is not None
        except RuntimeError as exc:
            raise AlignmentError(f"forced alignment failed: {exc}") from exc
        if not found:
            raise AlignmentError(f"forced alignment found no path for {len(words)} words "
                                 "(speech missing, too fast, or the wrong text?)")
        try:
            words_decoder.set_alignment()  # the phone sequence and word boundaries of that path; no decoding
            decoder.set_alignment(words_decoder.get_alignment())
            _decode(decoder, pcm)
            alignment = decoder.get_alignment()
        except RuntimeError as exc:
            raise AlignmentError(f"forced alignment failed: {exc}") from exc
        if alignment is None:
            raise AlignmentError("forced alignment produced no state alignment")
        to_ln = decoder.logmath.log_to_ln
        result = []
        for word in alignment:
            if word.name.split("(")[0] in _SILENCES or word.name.startswith(("[", "+")):
                continue
            result.append([(p.name, p.start, p.start + p.duration, to_ln(p.score) * _SCORE_SCALE) for p in word])
        if len(result) != len(words):
            raise AlignmentError(f"alignment returned {len(result)} words for {len(words)} in the text")
        return result

    def _phone_loop(self, decoder, pcm: bytes) -> list[LoopSegment]:
        try:
            _decode(decoder, pcm)
            segs = list(decoder.seg())
        except RuntimeError as exc:
            raise AlignmentError(f"phone loop decoding failed: {exc}") from exc
        # The binding hands back exp(score): take the log again (floored so an underflow stays finite).
        return [LoopSegment(s.word, s.start_frame, s.end_frame + 1, math.log(max(s.ascore, 1e-300)) * _SCORE_SCALE)
                for s in segs if s.end_frame >= s.start_frame]

    def _word(self, text: str, segments: list[tuple[str, int, int, float]], loop: list[LoopSegment]) -> AlignedWord:
        names = [name for name, *_ in segments]
        canonical = _stress_map(names, self.lexicon.variants(text))
        phones = []
        for (name, start, end, loglik), canon in zip(segments, canonical):
            loop_ll, heard, shares = 0.0, [], {}
            frames = max(end - start, 1)
            for seg in loop:
                overlap = min(end, seg.end) - max(start, seg.start)
                if overlap > 0:
                    loop_ll += seg.loglik * overlap / (seg.end - seg.start)
                    heard.append(seg.phone)
                    shares[seg.phone] = shares.get(seg.phone, 0) + overlap / frames
            ranked = sorted(shares.items(), key=lambda item: -item[1])  # stable: ties keep the loop's order
            phones.append(AlignedPhone(phone=name, canonical=canon, start_frame=start, end_frame=end,
                                       aligned_loglik=loglik, loop_loglik=loop_ll, gop=(loglik - loop_ll) / frames,
                                       loop_phones=tuple(heard), heard=tuple(ranked)))
        return AlignedWord(text=text, start_frame=segments[0][1], end_frame=segments[-1][2], phones=tuple(phones))


class PhoneLoopStage:
    """Stage `run_batch(audios) -> phone loops` over a PhoneAligner's decoders (one loop decoder per thread)."""

    name = "loop"

    def __init__(self, aligner: PhoneAligner) -> None:
        self.aligner = aligner

    def load(self) -> PhoneAligner:
        return self.aligner.load("loop")

    def run_batch(self, items: Sequence[np.ndarray]) -> list[list[LoopSegment] | Exception]:
        return run_each(items, self.aligner.phone_loop)

    def close(self) -> None:
        pass
