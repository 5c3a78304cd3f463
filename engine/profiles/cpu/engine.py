"""The cpu profile: Whisper ASR -> pocketsphinx forced alignment + GOP -> features -> scorer, each stage
micro-batched across streams, all on CPU from packaged weights.

The phone loop runs beside the ASR (it needs no words); open mode decodes a second, larger target ASR whose
words are assessed (MultiPA's design). Utterances in progress are analysed at their pauses (`utterance.py`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.metadata
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.features.windows import plan_windows
from saywell.engine.language.text import normalize_words
from saywell.engine.options import EngineOptions
from saywell.engine.profiles.cpu.scoring import ScoreItem, ScoringStage
from saywell.engine.profiles.cpu.reading import read_span, shorter, with_unread
from saywell.engine.profiles.cpu.segments import Segment, joined_transcript
from saywell.engine.profiles.cpu.utterance import CpuUtterance
from saywell.engine.scorers.baseline import BaselineScorer
from saywell.engine.scorers.frame_words import DEFAULT_PATH as FRAME_WORDS_PATH
from saywell.engine.scorers.frame_words import FrameWordScorer, load_frame_words
from saywell.engine.scorers.trained import TrainedScorer
from saywell.engine.stages.alignment import Alignment, AlignmentError, PhoneAligner, PhoneLoopStage, TooManyWordsError
from saywell.engine.stages.asr import MIN_TARGET_SAMPLES, AsrRequest, WhisperAsr, plausible, plausible_words
from saywell.engine.stages.base import AlignItem
from saywell.engine.stages.process_stage import ProcessStage
from saywell.engine.stages.scheduler import BACKGROUND, BatchScheduler
from saywell.engine.types import (SAMPLE_RATE, AssessmentRequest, Capabilities, EngineError, EngineInfo, InputError,
                                  SentenceScores, Transcript, UtteranceResult, WordScore)

ENGINE_NAME = "saywell-cpu"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analysis:
    """Every raw output of the graph for one utterance, both modes at once: what offline training keeps."""

    recognised: Transcript  # the recogniser's words as decoded, with its encoder frames
    target: Transcript | None  # open mode's target ASR's plausible words (None without a target ASR)
    reference: tuple[str, ...]  # the normalised reference words
    closed: Alignment  # of the reference
    open: Alignment | None  # of the target's words, else the recognised plausible ones; None: no words or no path
    duration_ms: int
BACKENDS = ("local",)
MIN_SEGMENT_SAMPLES = 1600  # 0.1 s: shorter stretches hold no word


def single_threaded_math() -> None:
    """Every stage of this profile computes on one thread (the target ASR on its own two, set per model by
    CTranslate2); the parallelism is the stages running beside each other. numpy's BLAS (OpenBLAS) sizes its
    pool to the machine, and its second thread spun through every decode for no speed: a tiny.en interim decode
    took 86 ms of CPU for 43 ms of wall time, and a server alone with one stream spent 47-50% of two cores
    instead of 25% (BENCHMARKS.md, session 18). So BLAS gets one thread, for the whole process (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


class CpuEngine:
    name = ENGINE_NAME

    def __init__(self, options: EngineOptions = EngineOptions(), on_batch=None) -> None:
        if options.backend not in BACKENDS:
            raise EngineError(f"the cpu profile has no {options.backend!r} backend; it has: {', '.join(BACKENDS)}")
        single_threaded_math()
        self.options = options
        self.asr = WhisperAsr(options.asr)
        # Open mode's second, larger ASR (MultiPA's design): its words are the ones assessed, and where the
        # recognising ASR disagrees with it is a sign of unclear pronunciation.
        self.target_asr = WhisperAsr(options.target_asr, name="target_asr") if options.target_asr else None
        self.aligner = PhoneAligner()
        scorers = {"baseline": BaselineScorer()}
        trained = TrainedScorer()
        if trained.available():
            scorers["trained"] = trained
        default = options.default_scorer if options.default_scorer in scorers else "baseline"
        self.scoring = ScoringStage(scorers, default)
        self._asr = BatchScheduler(self.asr, options.asr_batching, on_batch)
        self._target = BatchScheduler(self.target_asr, options.asr_batching, on_batch) if self.target_asr else None
        if options.aligner_processes:
            self._pocketsphinx = [ProcessStage("align", workers=options.align_batching.workers),
                                  ProcessStage("loop", workers=options.loop_batching.workers)]
            align_stage, loop_stage = self._pocketsphinx
        else:
            self._pocketsphinx = []
            align_stage, loop_stage = self.aligner, PhoneLoopStage(self.aligner)
        self._align = BatchScheduler(align_stage, options.align_batching, on_batch)
        self._loop = BatchScheduler(loop_stage, options.loop_batching, on_batch)
        self._score = BatchScheduler(self.scoring, options.score_batching, on_batch)
        # Interim words scored from the decode alone (scorers/frame_words.py), when asked for and shipped.
        self.frame_words: FrameWordScorer | None = None
        self._frame_words_meta: dict = {}
        if options.interim_words == "frames" and "trained" in scorers and FRAME_WORDS_PATH.exists():
            self.frame_words, self._frame_words_meta = load_frame_words(FRAME_WORDS_PATH)
            if self._frame_words_meta.get("asr") != options.asr.model:  # another recogniser's frames and words
                log.warning("frame-word trees fitted on %s's decodes, not %s's: interim words go through the graph",
                            self._frame_words_meta.get("asr"), options.asr.model)
                self.frame_words, self._frame_words_meta = None, {}
        self._model_versions: dict[str, str] | None = None

    @property
    def schedulers(self) -> tuple[BatchScheduler, ...]:
        target = (self._target,) if self._target else ()
        return (self._asr, *target, self._loop, self._align, self._score)

    @property
    def scorer_names(self) -> list[str]:
        default = self.scoring.default_scorer
        return [default] + [n for n in self.scoring.scorers if n != default]

    def flag_threshold(self, sensitivity: float, closed: bool, scorer: str = "") -> float:
        """Word accuracy below which the given scorer flags a word at this sensitivity."""
        return self.scoring.scorer_for(scorer).flag_threshold(sensitivity, closed, self.target_asr is None)

    def _needs_encoder(self, request: AssessmentRequest) -> bool:
        return self.scoring.scorer_for(request.scorer).name == "trained"

    @functools.cached_property
    def version(self) -> str:
        return importlib.metadata.version("saywell")

    def model_versions(self) -> dict[str, str]:
        """Fixed for the life of the process: computed once (package metadata lookups touch the disk)."""
        if self._model_versions is None:
            versions = {"asr": self.asr.version,
                        **({"target_asr": self.target_asr.version} if self.target_asr else {}),
                        "aligner": "pocketsphinx en-us " + importlib.metadata.version("pocketsphinx")}
            versions.update({name: scorer.version() for name, scorer in self.scoring.scorers.items()})
            if self.frame_words is not None:
                versions["interim_words"] = f"frame-word trees {self._frame_words_meta.get('date', '?')}"
            self._model_versions = versions
        return dict(self._model_versions)

    @functools.cached_property
    def info(self) -> EngineInfo:
        return EngineInfo(profile="cpu", backend=self.options.backend, name=ENGINE_NAME, version=self.version,
                          scorers=tuple(self.scorer_names), model_versions=self.model_versions(),
                          capabilities=Capabilities(phone_diagnosis=True))

    def begin_utterance(self, template: AssessmentRequest, on_committed=None) -> CpuUtterance:
        return CpuUtterance(self, template, on_committed)

    def backlog(self) -> int:
        """Urgent items waiting in the stage queues: the engine's measure of saturation. Interim decodes are
        left out: each stream has at most one in flight, and they yield to everything else."""
        return sum(scheduler.urgent_queued for scheduler in self.schedulers)

    async def check(self) -> str | None:
        return None  # nothing outside this process to depend on

    async def warm_up(self) -> None:
        """Loads every model now, on the threads that will use them, so the first learner pays nothing."""
        self.start()
        silence = np.zeros(16000, dtype=np.float32)
        target = (self._target.submit(AsrRequest(silence)),) if self._target else ()
        await asyncio.gather(self._asr.submit(AsrRequest(silence, partial=True)), self._loop.submit(silence),
                             self._align.submit(AlignItem(silence, ["a"])), *target)
        await asyncio.to_thread(self.scoring.load)
        await asyncio.to_thread(normalize_words, "10")  # number words: inflect's import takes seconds
        if self._pocketsphinx:  # the workers' own dictionary and G2P model
            for stage in self._pocketsphinx:
                await asyncio.to_thread(stage.load)
        if not self._pocketsphinx or self.frame_words is not None:  # this process's: frame words pronounce words
            await asyncio.to_thread(self.aligner.lexicon.load)

    def start(self) -> None:
        for scheduler in self.schedulers:
            scheduler.start()

    async def close(self) -> None:
        for scheduler in self.schedulers:
            await scheduler.close()
        for stage in self._pocketsphinx:
            await asyncio.to_thread(stage.close)

    def _target_job(self, request: AssessmentRequest, audio: np.ndarray) -> asyncio.Future | None:
        """Open mode with a target ASR: its decode, started beside the recognising one."""
        if request.closed or self._target is None or len(audio) < MIN_TARGET_SAMPLES:
            return None
        return asyncio.ensure_future(self._target.submit(AsrRequest(audio)))

    async def _target_transcript(self, job: asyncio.Future | None, request: AssessmentRequest,
                                 recognised: Transcript) -> Transcript | None:
        """Open mode's assessed words with a target ASR: its plausible words, or the recognised ones for audio
        too short for it. None in closed mode or without a target ASR."""
        if request.closed or self._target is None:
            return None
        decoded = recognised if job is None else await job
        return Transcript(decoded.text, plausible(decoded, request.duration_ms))

    async def assess(self, request: AssessmentRequest) -> UtteranceResult:
        """The final assessment of one utterance."""
        self.scoring.scorer_for(request.scorer)  # fail fast on an unknown scorer
        timings: dict[str, float] = {}
        started = time.perf_counter()
        # The phone loop needs no words: it runs on the other core while Whisper recognises them.
        loop = asyncio.ensure_future(self._loop.submit(request.audio))
        target_job = self._target_job(request, request.audio)
        span = None  # closed mode, audio too short for the whole reference: the part read (see reading.py)
        try:
            transcript = await self._asr.submit(AsrRequest(request.audio, with_encoder=self._needs_encoder(request)))
            target = await self._target_transcript(target_job, request, transcript)
            timings["asr"] = (time.perf_counter() - started) * 1000
            if request.closed:
                words = normalize_words(request.reference_text)
            elif target is not None:
                words = [w.text for w in target.words]
            else:
                words = plausible_words(transcript, request.duration_ms)
            shown = (target or transcript).text
            if not words:
                empty = SentenceScores(0.0, 0.0, 0.0, 0.0, 0.0 if request.closed else None)
                return UtteranceResult(shown, request.reference_text, empty, (), request.scorer or
                                       self.options.default_scorer, timings)
            mark = time.perf_counter()
            phones = await loop
            try:
                alignment = await self._align.submit(AlignItem(request.audio, words, phones))
            except TooManyWordsError:
                if not request.closed:
                    raise
                span, alignment = await self._align_read_span(request, words, transcript, phones)
        finally:
            loop.cancel()
            if target_job is not None:
                target_job.cancel()
        timings["align"] = (time.perf_counter() - mark) * 1000
        mark = time.perf_counter()
        scored = request if span is None else dataclasses.replace(
            request, reference_text=" ".join(words[span[0]:span[1]]))
        windows = await self._windows(scored, request.audio, alignment, target or transcript)
        scores, word_scores, scorer_name = await self._score.submit(
            ScoreItem(request.audio, transcript, alignment, scored, partial=False, target=target, windows=windows))
        if span is not None:
            scores, word_scores = with_unread(scores, word_scores, words, span, request.duration_ms)
        timings["score"] = (time.perf_counter() - mark) * 1000
        return UtteranceResult(shown, request.reference_text, scores, word_scores, scorer_name, timings)

    async def _windows(self, request: AssessmentRequest, audio: np.ndarray, alignment: Alignment,
                       heard: Transcript) -> tuple:
        """A long utterance's sentence-sized windows for the scorer (features/windows.py; `heard`: the words whose
        sentence ends cut it): each window's words, first frame and the recogniser's encoder frames of its own
        stretch of audio, encoded on its own. Whisper's frames carry their position, and the scorer learnt from
        utterances that start at frame 0. () when the utterance is one window, or its scorer reads no encoder
        frames (it then scores the whole)."""
        frame_ms = alignment.frame_ms
        spans = [(w.start_frame * frame_ms, w.end_frame * frame_ms) for w in alignment.words]
        windows, bounds = plan_windows(spans, heard.words, len(audio) * 1000 / SAMPLE_RATE)
        if not windows or not self._needs_encoder(request):
            return ()
        starts = [int(start // frame_ms) for start, _ in bounds]
        per_frame = SAMPLE_RATE * frame_ms // 1000
        stretches = [audio[start * per_frame:None if end is None else end * per_frame]
                     for start, end in zip(starts, [*starts[1:], None])]
        encoded = await asyncio.gather(*(self._asr.submit(AsrRequest(s, encoder_only=True)) for s in stretches))
        if any(e.encoder is None or not len(e.encoder) for e in encoded):  # a stretch too short to encode
            return ()
        return tuple(zip(windows, starts, [e.encoder for e in encoded]))

    async def _align_read_span(self, request: AssessmentRequest, words: list[str], transcript: Transcript,
                               phones) -> tuple[tuple[int, int], Alignment]:
        """The reference span the learner read, aligned; shorter spans while even it does not fit."""
        span = read_span(words, plausible_words(transcript, request.duration_ms))
        for _ in range(4):
            try:
                return span, await self._align.submit(AlignItem(request.audio, words[span[0]:span[1]], phones))
            except TooManyWordsError:
                if span[1] - span[0] == 1:
                    break
                span = shorter(span)
        raise InputError(f"the audio ({request.duration_ms} ms) is too short to hold even the part of the "
                         "reference text it seems to read; send a reference that matches the utterance")

    async def analyse_segment(self, audio: np.ndarray, start: int, scorer: str = "") -> Segment:
        """ASR, phone loop and alignment of `audio`, which begins `start` samples into its utterance (with the
        encoder frames `scorer` needs to score the segment's words on their own, see segment_words)."""
        if len(audio) < MIN_SEGMENT_SAMPLES:
            return Segment(start, len(audio), Transcript("", ()), None)
        request = AssessmentRequest(audio=audio, scorer=scorer)
        loop = asyncio.ensure_future(self._loop.submit(audio))
        target_job = self._target_job(request, audio)
        try:
            transcript = await self._asr.submit(AsrRequest(audio, with_encoder=self._needs_encoder(request)))
            kept = plausible(transcript, request.duration_ms)
            transcript = Transcript(transcript.text, kept, transcript.encoder)
            target = await self._target_transcript(target_job, request, transcript)
            words = [w.text for w in (target or transcript).words]
            alignment = await self._align.submit(AlignItem(audio, words, await loop)) if words else None
        finally:
            loop.cancel()
            if target_job is not None:
                target_job.cancel()
        return Segment(start, len(audio), transcript, alignment, target)

    async def segment_words(self, segment: Segment, audio: np.ndarray, request: AssessmentRequest
                            ) -> tuple[WordScore, ...]:
        """Provisional scores of an analysed segment's words (`audio`: the segment's), times from its start."""
        if segment.alignment is None:
            return ()
        return await self._score.submit(ScoreItem(audio, segment.transcript, segment.alignment, request,
                                                  partial=True, target=segment.target))

    def utterance_encoding(self, request: AssessmentRequest) -> asyncio.Future | None:
        """The recogniser's encoder frames of the whole utterance, started now, if its scorer needs them (pass
        the future to assess_segments; it can run while segments are still being analysed)."""
        if not self._needs_encoder(request):
            return None
        return asyncio.ensure_future(self._asr.submit(AsrRequest(request.audio, encoder_only=True)))

    async def assess_segments(self, request: AssessmentRequest, segments: Sequence[Segment],
                              encoding: asyncio.Future | None = None) -> UtteranceResult:
        """The final assessment of an open-response utterance from segments covering all of its audio
        (`encoding`: utterance_encoding's future for this request, if started early). Used by SegmentChain."""
        if request.closed or not segments or segments[0].start != 0 or segments[-1].end != len(request.audio) or \
                any(a.end != b.start for a, b in zip(segments, segments[1:])):
            raise EngineError("segments must cover the utterance's audio end to end (open mode only)")
        self.scoring.scorer_for(request.scorer)
        started = time.perf_counter()
        transcript = joined_transcript(segments)
        target = joined_transcript(segments, target=True) if any(s.target for s in segments) else None
        if self._needs_encoder(request):
            encoded = await (encoding or self.utterance_encoding(request))
            transcript = dataclasses.replace(transcript, encoder=encoded.encoder)
        parts = [(s.alignment.frame_at(s.start), s.alignment) for s in segments if s.alignment is not None]
        shown = (target or transcript).text
        if not parts:
            empty = SentenceScores(0.0, 0.0, 0.0, 0.0, None)
            return UtteranceResult(shown, "", empty, (), request.scorer or self.options.default_scorer, {})
        alignment = Alignment.joined(parts, n_frames=parts[0][1].frame_at(len(request.audio)))
        windows = await self._windows(request, request.audio, alignment, target or transcript)
        scores, word_scores, scorer_name = await self._score.submit(
            ScoreItem(request.audio, transcript, alignment, request, partial=False, target=target, windows=windows))
        timings = {"segments": len(segments), "score": (time.perf_counter() - started) * 1000}
        return UtteranceResult(shown, "", scores, word_scores, scorer_name, timings)

    async def analyse(self, audio: np.ndarray, reference_text: str) -> Analysis:
        """The graph's raw outputs for training: the same stages and rules as `assess`, for both modes."""
        request = AssessmentRequest(audio=audio)  # open mode's rules for the target ASR
        loop = asyncio.ensure_future(self._loop.submit(audio))
        target_job = self._target_job(request, audio)
        try:
            recognised = await self._asr.submit(AsrRequest(audio, with_encoder=True))
            target = await self._target_transcript(target_job, request, recognised)
            phones = await loop
        finally:
            loop.cancel()
            if target_job is not None:
                target_job.cancel()
        reference = tuple(normalize_words(reference_text))
        scored = target.words if target is not None else plausible(recognised, request.duration_ms)
        words = [w.text for w in scored]
        opened = asyncio.ensure_future(self._align.submit(AlignItem(audio, words, phones))) if words else None
        try:
            closed = await self._align.submit(AlignItem(audio, list(reference), phones))
            try:
                scored_alignment = await opened if opened is not None else None
            except AlignmentError:  # e.g. a hallucinated transcript that cannot fit the audio
                scored_alignment = None
        finally:
            if opened is not None:
                opened.cancel()
        return Analysis(recognised, target, reference, closed, scored_alignment, request.duration_ms)

    async def align(self, audio: np.ndarray, words: list[str]) -> Alignment:
        """Forced alignment alone (the evaluator times labelled words with it)."""
        return await self._align.submit(AlignItem(audio, words))

    def frame_words_for(self, request: AssessmentRequest) -> FrameWordScorer | None:
        """The frame-word trees, for interims of requests the trained scorer scores (the baseline's interims keep
        the graph: the trees are a trained model)."""
        if self.frame_words is None or self.scoring.scorer_for(request.scorer).name != "trained":
            return None
        return self.frame_words

    async def provisional_words(self, request: AssessmentRequest) -> tuple[WordScore, ...]:
        """Recognised words of an utterance still in progress, with provisional accuracy and flags."""
        # Background priority: a final assessment (or a segment it will join) never queues behind these.
        frames = self.frame_words_for(request)
        if frames is not None:  # the decode is the whole cost: no phone loop, no alignment
            transcript = await self._asr.submit(AsrRequest(request.audio, partial=True, with_encoder=True),
                                                BACKGROUND)
            words = plausible(transcript, request.duration_ms)
            if not words or transcript.encoder is None or not len(transcript.encoder):
                return ()
            try:
                return await asyncio.to_thread(frames.score, words, transcript.encoder, request.duration_ms,
                                               self.aligner.lexicon.pronounce, request.flag_sensitivity)
            except Exception as exc:  # one decode's bad luck: the stream's next decode and its final still come
                raise EngineError(f"interim word scoring failed: {type(exc).__name__}: {exc}") from exc
        loop = asyncio.ensure_future(self._loop.submit(request.audio, BACKGROUND))
        try:
            transcript = await self._asr.submit(AsrRequest(request.audio, partial=True,
                                                           with_encoder=self._needs_encoder(request)), BACKGROUND)
            words = plausible_words(transcript, request.duration_ms)
            if not words:
                return ()
            alignment = await self._align.submit(AlignItem(request.audio, words, await loop), BACKGROUND)
        finally:
            loop.cancel()
        return await self._score.submit(ScoreItem(request.audio, transcript, alignment, request, partial=True),
                                        BACKGROUND)
