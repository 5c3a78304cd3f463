"""The assessment engine: ASR -> forced alignment + GOP -> features -> scorer, each stage micro-batched.

Knows nothing of gRPC. The server (and `saywell eval`) hold one engine; every stream submits utterances to
it, and the schedulers batch work across streams.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.metadata
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saywell.engine.aligner_process import ProcessStage
from saywell.engine.alignment import Alignment, PhoneAligner, PhoneLoopStage
from saywell.engine.asr import AsrRequest, WhisperAsr
from saywell.engine.features import utterance_features
from saywell.engine.options import EngineOptions
from saywell.engine.prosody import extract_prosody
from saywell.engine.scheduler import BACKGROUND, BatchScheduler
from saywell.engine.scoring import BaselineScorer
from saywell.engine.trained_scorer import TrainedScorer
from saywell.engine.text import normalize_words
from saywell.engine.types import (AssessmentRequest, EngineError, RecognizedWord, SentenceScores, Transcript,
                                  UtteranceResult, WordScore)

ENGINE_NAME = "saywell-cpu"
MIN_SEGMENT_SAMPLES = 1600  # 0.1 s: shorter stretches hold no word
# Shorter audio is not sent to the target ASR: a stretch this short holds a word or two, and on near-silence
# Whisper base hallucinates and retries at higher temperatures (measured: 1.5 s for 0.13 s of audio). Its
# recognised words stand in. Every training utterance is longer (1.6 s at least).
MIN_TARGET_SAMPLES = 16000
MAX_WORDS_PER_SECOND = 7.0  # faster than any speech: the rest is a Whisper repetition loop


def plausible(transcript: Transcript, duration_ms: int) -> tuple[RecognizedWord, ...]:
    """Recognised words the audio can hold: Whisper sometimes loops on a phrase past the end of the speech."""
    words = [w for w in transcript.words if w.start_ms < duration_ms]
    return tuple(words[:max(int(duration_ms / 1000 * MAX_WORDS_PER_SECOND), 1)])


def plausible_words(transcript: Transcript, duration_ms: int) -> list[str]:
    return [w.text for w in plausible(transcript, duration_ms)]


@dataclass(frozen=True)
class Segment:
    """Words, alignment and phone loop of one stretch of an utterance, analysed while the learner went on.

    Streams cut utterances at pauses into consecutive segments; the final assessment joins them and only the
    segment after the last pause is left to analyse when the utterance ends.
    """

    start: int  # first sample, from the utterance start
    samples: int
    transcript: Transcript  # word times from the segment start
    alignment: Alignment | None  # None when the segment holds no words
    target: Transcript | None = None  # the target ASR's words (open mode with a second ASR): the words aligned

    @property
    def end(self) -> int:
        return self.start + self.samples


def joined_transcript(segments: Sequence[Segment], target: bool = False) -> Transcript:
    """The segments' recognised (or, with `target`, target) transcripts as one, times from the utterance start."""
    parts = [(s.start, s.target if target else s.transcript) for s in segments]
    parts = [(start, t) for start, t in parts if t is not None]
    words = tuple(dataclasses.replace(w, start_ms=w.start_ms + start // 16, end_ms=w.end_ms + start // 16)
                  for start, t in parts for w in t.words)
    return Transcript(text=" ".join(t.text for _, t in parts if t.text), words=words)


@dataclass(frozen=True)
class ScoreItem:
    audio: np.ndarray
    transcript: Transcript
    alignment: Alignment
    request: AssessmentRequest
    partial: bool  # interim words only, scored as recognised words
    target: Transcript | None = None  # open mode with a target ASR: the words aligned and scored


class ScoringStage:
    """Prosody, features and the scorer: cheap, but CPU work that must stay off the event loop."""

    name = "score"

    def __init__(self, scorers: dict, default_scorer: str) -> None:
        self.scorers = scorers
        self.default_scorer = default_scorer

    def scorer_for(self, name: str):
        scorer = self.scorers.get(name or self.default_scorer)
        if scorer is None:
            raise EngineError(f"unknown scorer {name!r}; available: {', '.join(self.scorers)}")
        return scorer

    def run_batch(self, items: Sequence[ScoreItem]) -> list:
        results = []
        for item in items:
            try:
                results.append(self._score(item))
            except EngineError as exc:
                results.append(exc)
            except Exception as exc:  # one utterance's bad luck must not fail the batch
                results.append(EngineError(f"scoring failed: {type(exc).__name__}: {exc}"))
        return results

    def _score(self, item: ScoreItem):
        request = item.request
        closed = request.closed and not item.partial
        if closed:
            reference = normalize_words(request.reference_text)
        elif item.target is not None:
            reference = [w.text for w in item.target.words]
        else:
            reference = None
        features = utterance_features(item.alignment, item.transcript, extract_prosody(item.audio), reference,
                                      item.target)
        scorer = self.scorer_for(request.scorer)
        encoder = item.transcript.encoder
        # Open-mode features without a target ASR's words (interim decodes, or an engine without a target)
        # are scored by the model fitted on such features.
        single_asr = item.target is None
        if item.partial:
            return scorer.score_words(features, request.flag_sensitivity, encoder, single_asr)
        return scorer.score(features, closed, request.flag_sensitivity, encoder, single_asr) + (scorer.name,)


class AssessmentEngine:
    name = ENGINE_NAME

    def __init__(self, options: EngineOptions = EngineOptions(), on_batch=None) -> None:
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
            self._model_versions = versions
        return dict(self._model_versions)

    def backlog(self) -> int:
        """Urgent items waiting in the stage queues: the engine's measure of saturation. Interim decodes are
        left out: each stream has at most one in flight, and they yield to everything else."""
        return sum(scheduler.urgent_queued for scheduler in self.schedulers)

    async def warm_up(self) -> None:
        """Loads every model now, on the threads that will use them, so the first learner pays nothing."""
        self.start()
        silence = np.zeros(16000, dtype=np.float32)
        target = (self._target.submit(AsrRequest(silence)),) if self._target else ()
        await asyncio.gather(self._asr.submit(AsrRequest(silence, partial=True)), self._loop.submit(silence),
                             self._align.submit((silence, ["a"])), *target)
        for scorer in self.scoring.scorers.values():
            await asyncio.to_thread(scorer.version)  # loads calibration / checkpoints
        await asyncio.to_thread(normalize_words, "10")  # number words: inflect's import takes seconds
        if self._pocketsphinx:  # the workers' own dictionary and G2P model; this process needs none
            for stage in self._pocketsphinx:
                await asyncio.to_thread(stage.load)
        else:
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
            alignment = await self._align.submit((request.audio, words, await loop))
        finally:
            loop.cancel()
            if target_job is not None:
                target_job.cancel()
        timings["align"] = (time.perf_counter() - mark) * 1000
        mark = time.perf_counter()
        scores, word_scores, scorer_name = await self._score.submit(
            ScoreItem(request.audio, transcript, alignment, request, partial=False, target=target))
        timings["score"] = (time.perf_counter() - mark) * 1000
        return UtteranceResult(shown, request.reference_text, scores, word_scores, scorer_name, timings)

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
            alignment = await self._align.submit((audio, words, await loop)) if words else None
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
        (`encoding`: utterance_encoding's future for this request, if started early)."""
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
        parts = [(s.start // 160, s.alignment) for s in segments if s.alignment is not None]
        shown = (target or transcript).text
        if not parts:
            empty = SentenceScores(0.0, 0.0, 0.0, 0.0, None)
            return UtteranceResult(shown, "", empty, (), request.scorer or self.options.default_scorer, {})
        alignment = Alignment.joined(parts, n_frames=len(request.audio) // 160)
        scores, word_scores, scorer_name = await self._score.submit(
            ScoreItem(request.audio, transcript, alignment, request, partial=False, target=target))
        timings = {"segments": len(segments), "score": (time.perf_counter() - started) * 1000}
        return UtteranceResult(shown, "", scores, word_scores, scorer_name, timings)

    async def align(self, audio: np.ndarray, words: list[str]) -> Alignment:
        """Forced alignment alone (the evaluator times labelled words with it)."""
        return await self._align.submit((audio, words))

    async def provisional_words(self, request: AssessmentRequest) -> tuple[WordScore, ...]:
        """Recognised words of an utterance still in progress, with provisional accuracy and flags."""
        # Background priority: a final assessment (or a segment it will join) never queues behind these.
        loop = asyncio.ensure_future(self._loop.submit(request.audio, BACKGROUND))
        try:
            transcript = await self._asr.submit(AsrRequest(request.audio, partial=True,
                                                           with_encoder=self._needs_encoder(request)), BACKGROUND)
            words = plausible_words(transcript, request.duration_ms)
            if not words:
                return ()
            alignment = await self._align.submit((request.audio, words, await loop), BACKGROUND)
        finally:
            loop.cancel()
        return await self._score.submit(ScoreItem(request.audio, transcript, alignment, request, partial=True),
                                        BACKGROUND)
