"""The neural profile: Whisper ASR -> frame phone posteriors -> batched Viterbi + posterior GOP -> SSL frames
pooled over the aligned words -> multi-task heads. Every stage is a batched torch module (Whisper: CTranslate2)
behind its own BatchScheduler, so concurrent streams share one forward pass per stage, on CUDA or the CPU.

The phone posteriors and the SSL frames need no words: they run beside the ASR. Closed mode aligns the
reference words, open mode the recognised ones.
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
from saywell.engine.backends import ModelStages, model_stages
from saywell.engine.features.windows import plan_windows, weighted_sentence
from saywell.engine.language.lexicon import Lexicon
from saywell.engine.language.text import normalize_words
from saywell.engine.options import EngineOptions
from saywell.engine.profiles.neural.alignment import (
    AlignedWord,
    PhoneInventory,
    WordTimings,
    aligned_words,
    phone_sequence,
)
from saywell.engine.profiles.neural.config import NeuralConfig, file_version
from saywell.engine.profiles.neural.encoders import (
    EncoderStage,
    load_frame_classifier,
    load_ssl_encoder,
)
from saywell.engine.profiles.neural.heads import HeadsItem, HeadsStage, span_frames
from saywell.engine.profiles.neural.inputs import HeadInputs, head_inputs, heard_words, window_inputs
from saywell.engine.profiles.neural.phone_head import PhoneHeadStage
from saywell.engine.profiles.neural.scoring import empty_result, scored_result
from saywell.engine.profiles.neural.trees import TreesBlend
from saywell.engine.profiles.neural.whisper_frames import WhisperFramesStage
from saywell.engine.scorers.flags import threshold_at
from saywell.engine.stages.asr import AsrRequest, WhisperAsr, plausible, without_loops
from saywell.engine.stages.devices import resolve_device
from saywell.engine.stages.frame_alignment import FrameAlignItem, FrameAlignmentStage
from saywell.engine.stages.scheduler import BACKGROUND, URGENT, BatchScheduler
from saywell.engine.stages.whole_utterance import WholeUtterance
from saywell.engine.types import (
    SAMPLE_RATE,
    AssessmentRequest,
    Capabilities,
    EngineError,
    EngineInfo,
    RecognizedWord,
    Transcript,
    UtteranceResult,
    WordScore,
)

ENGINE_NAME = "saywell-neural"
SCORER = "heads"
MIN_WINDOW_SAMPLES = SAMPLE_RATE // 2  # a window's stretch shorter than this is not encoded on its own
# Where the model stages (phone_posteriors, ssl, heads) may run. Whisper and the Viterbi stay in this process
# whatever the backend: CTranslate2 is no Triton backend here, and the Viterbi is cheap and needs the words.
BACKENDS = ("local", "triton")
EMBEDDED_BACKENDS = ("local",)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analysis:
    """One mode's aligned words and head inputs for an utterance (what `saywell train` learns from)."""

    words: tuple[AlignedWord, ...]
    inputs: HeadInputs


@dataclass(frozen=True)
class Graph:
    """The stages' outputs for one utterance: the transcript, the SSL frames, and per mode (closed: True) its
    analysis, None when that mode had no words to align."""

    transcript: Transcript
    frames: np.ndarray
    analyses: dict[bool, Analysis | None]
    timings_ms: dict[str, float]




class NeuralEngine:
    name = ENGINE_NAME

    def __init__(self, options: EngineOptions = EngineOptions(), on_batch=None) -> None:
        self.options = options
        self.config = config = NeuralConfig.load(options.model_dir)
        config.check_sources(options.allow_download)
        self.device = resolve_device(options.device)
        download = options.allow_download
        # Whisper (CTranslate2) runs where the torch stages run: float16 on CUDA, int8 on the CPU.
        on_cuda = self.device.type == "cuda"
        self.asr = WhisperAsr(dataclasses.replace(
            options.asr, model=config.asr, allow_download=download or options.asr.allow_download,
            device="cuda" if on_cuda else "cpu", compute_type="float16" if on_cuda else options.asr.compute_type))
        self.inventory = PhoneInventory.of(config.aligner.phones, config.aligner.silence)
        self.lexicon = Lexicon()
        # The model stages as this process would run them (nothing loads yet); the backend decides where they run.
        if config.embedded:  # Whisper encoder frames for the SSL encoder's, a phone head over them
            ssl_asr = self.asr if config.ssl_whisper == config.asr else WhisperAsr(dataclasses.replace(
                self.asr.options, model=config.ssl_whisper), name="ssl")
            ssl_stage = WhisperFramesStage(ssl_asr)
            posteriors_stage = PhoneHeadStage(config.aligner.head, config.aligner.phones, self.device)
        else:
            ssl_stage = EncoderStage("ssl", functools.partial(load_ssl_encoder, config.ssl, download), self.device)
            posteriors_stage = EncoderStage("phone_posteriors", functools.partial(
                load_frame_classifier, config.aligner.model, len(config.aligner.phones), download), self.device)
        local = ModelStages({"phone_posteriors": posteriors_stage, "ssl": ssl_stage,
                             "heads": HeadsStage(config.heads, self.device)},
                            sources={"phone_posteriors": config.aligner.version(), "ssl": config.ssl_version(),
                                     "heads": file_version(config.heads)})
        # The embedded phone head reads the SSL frames, not audio: no Triton model exports that graph (yet).
        if config.embedded and options.backend not in EMBEDDED_BACKENDS:
            raise EngineError(f"{config.folder / 'neural.json'} is the embedded configuration (Whisper frames and a "
                              f"phone head over them), which runs on the {' or '.join(EMBEDDED_BACKENDS)} backend "
                              f"only; --backend {options.backend} needs a faithful configuration's folder "
                              "(--model-dir, engine/profiles/neural/README.md)")
        self.model_stages = model_stages(options.backend, local, options, BACKENDS)
        self.posteriors, self.ssl, self.heads = (self.model_stages[n] for n in ("phone_posteriors", "ssl", "heads"))
        self.trees = TreesBlend(config.trees, config.heads)  # numpy, in this process whatever the backend
        self.aligner = FrameAlignmentStage(min_frames=config.aligner.min_frames, device=self.device, name="align")
        torch_batching = dataclasses.replace(options.asr_batching, workers=1)  # one model per stage and device
        self._asr = BatchScheduler(self.asr, options.asr_batching, on_batch)
        self._posteriors = BatchScheduler(self.posteriors, torch_batching, on_batch)
        self._ssl = BatchScheduler(self.ssl, torch_batching, on_batch)
        self._align = BatchScheduler(self.aligner, torch_batching, on_batch)
        self._heads = BatchScheduler(self.heads, torch_batching, on_batch)

    @property
    def schedulers(self) -> tuple[BatchScheduler, ...]:
        return (self._asr, self._posteriors, self._ssl, self._align, self._heads)

    @functools.cached_property
    def info(self) -> EngineInfo:
        sources = self.model_stages.sources
        versions = {"asr": self.asr.version, "aligner": sources["phone_posteriors"], "ssl": sources["ssl"],
                    "heads": sources["heads"]}
        if self.config.trees is not None:
            versions["trees"] = file_version(self.config.trees)
        return EngineInfo(profile="neural", backend=self.options.backend, name=ENGINE_NAME,
                          version=importlib.metadata.version("saywell"), scorers=(SCORER,), model_versions=versions,
                          capabilities=Capabilities(phone_diagnosis=True))

    def start(self) -> None:
        for scheduler in self.schedulers:
            scheduler.start()

    async def warm_up(self) -> None:
        """Loads every model and runs each stage once, on the threads that will run them."""
        self.start()
        silence = np.zeros(16000, np.float32)
        if self.config.embedded:  # the phone head must read what the SSL stage writes
            width, wanted = (await asyncio.to_thread(self.ssl.load)).out_dim, self.posteriors.load().config.in_dim
            if width != wanted:
                raise EngineError(f"the phone classifier {self.config.aligner.head} reads {wanted}-wide frames but "
                                  f"Whisper {self.config.ssl_whisper!r} writes {width}-wide ones: train it on that "
                                  "model's frames or name the model it was trained on in neural.json")
        frames = asyncio.ensure_future(self._ssl.submit(silence))
        try:
            _, log_probs = await asyncio.gather(self._asr.submit(AsrRequest(silence, partial=True)),
                                                self._phone_posteriors(silence, frames, URGENT))
            frames = await frames
        finally:
            if isinstance(frames, asyncio.Future):
                frames.cancel()
        await asyncio.to_thread(self.lexicon.load)
        await asyncio.to_thread(normalize_words, "10")  # number words: inflect's import takes seconds
        await self._align.submit(FrameAlignItem(log_probs, [self.inventory.id_of("AH")]))
        dims = (await asyncio.to_thread(self.heads.load)).config
        await asyncio.to_thread(self.trees.check, dims.ssl_dim)
        item = HeadsItem(frames, np.array([[0, 1]]), np.zeros((1, dims.word_dim), np.float32),
                         np.zeros(dims.sentence_dim, np.float32), np.zeros((1, dims.phone_dim), np.float32),
                         np.zeros(1, np.int64), np.zeros(1, np.int64))
        await asyncio.to_thread(self.trees, item, await self._heads.submit(item))

    async def close(self) -> None:
        for scheduler in self.schedulers:
            await scheduler.close()
        self.model_stages.close()

    def backlog(self) -> int:
        """Urgent items waiting in the stage queues (interim decodes are left out: they yield to finals)."""
        return sum(scheduler.urgent_queued for scheduler in self.schedulers)

    async def check(self) -> str | None:
        return await self.model_stages.check()  # the triton backend asks Triton; local stages are always there

    def begin_utterance(self, template: AssessmentRequest, on_committed=None) -> WholeUtterance:
        return WholeUtterance(self, template)

    async def provisional_words(self, request: AssessmentRequest) -> tuple[WordScore, ...]:
        """Recognised words of an utterance in progress, scored and flagged as a final scores them in open mode
        (greedy Whisper over the live window), at background priority: in every stage's queue a final's work goes
        first."""
        open_request = dataclasses.replace(request, reference_text="")
        return (await self._assess(open_request, BACKGROUND, partial=True)).words

    async def assess(self, request: AssessmentRequest) -> UtteranceResult:
        if request.scorer not in ("", SCORER):
            raise EngineError(f"unknown scorer {request.scorer!r}; available: {SCORER}")
        return await self._assess(request, URGENT)

    async def _assess(self, request: AssessmentRequest, priority: int, partial: bool = False) -> UtteranceResult:
        graph = await self.analyse(request.audio, request.reference_text, (request.closed,), priority, partial)
        analysis = graph.analyses[request.closed]
        if analysis is None:
            return empty_result(graph.transcript.text, request, SCORER, graph.timings_ms)
        mark = time.perf_counter()
        windows = [] if partial else await self.window_items(request.audio, analysis.inputs, graph.transcript.words,
                                                             priority)
        if windows:  # a long utterance is scored as its windows: words, phones, and sentence averaged by words
            parts = await asyncio.gather(*(self._scores(window, priority) for window in windows))
            sentence = weighted_sentence([p[1] for p in parts], [len(w.words) for w in windows])
            scores = (np.concatenate([p[0] for p in parts]), sentence.astype(np.float32),
                      np.concatenate([p[2] for p in parts]))
        else:
            scores = await self._scores(self.heads_item(graph.frames, analysis.inputs), priority)
        graph.timings_ms["heads"] = (time.perf_counter() - mark) * 1000
        return scored_result(request, graph.transcript.text, analysis.words, analysis.inputs, scores,
                             self.heads.flag_thresholds(), self.posteriors.load().frame_ms, SCORER, graph.timings_ms)

    async def _scores(self, item: HeadsItem, priority: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scores = await self._heads.submit(item, priority)
        if self.trees.enabled:
            scores = await asyncio.to_thread(self.trees, item, scores)  # numpy, 1-4 ms: off the event loop
        return scores

    async def window_items(self, audio: np.ndarray, inputs: HeadInputs, heard: Sequence[RecognizedWord],
                           priority: int) -> list[HeadsItem]:
        """A long utterance's sentence-sized windows (features/windows.py) as utterances of their own: their
        words, sentence numbers over their stretch, and SSL frames of their stretch encoded on its own. The
        embedded configuration's Whisper frames carry their position: frames cut from the middle of a long
        encoding are unlike any utterance's the heads were trained on (a window of 8 words scored 6.6 so, and
        8.8 as a recording of its own). [] when the utterance is one window, or a window's stretch is too short
        to encode. `heard`: the recognised words, whose sentence ends cut it."""
        spans = [tuple(span) for span in inputs.spans_ms.tolist()]
        windows, bounds = plan_windows(spans, heard, len(audio) * 1000 // SAMPLE_RATE)
        if not windows:
            return []
        bounds = [(int(start), int(end)) for start, end in bounds]
        stretches = [audio[start * SAMPLE_RATE // 1000:end * SAMPLE_RATE // 1000] for start, end in bounds]
        if any(len(stretch) < MIN_WINDOW_SAMPLES for stretch in stretches):
            return []
        frames = await asyncio.gather(*(self._ssl.submit(stretch, priority) for stretch in stretches))
        return [self.heads_item(f, window_inputs(inputs, first, last, start_ms, end_ms))
                for f, (first, last), (start_ms, end_ms) in zip(frames, windows, bounds)]

    def heads_item(self, frames: np.ndarray, inputs: HeadInputs) -> HeadsItem:
        spans = span_frames(inputs.spans_ms, self.ssl.load().frame_ms, len(frames))
        return HeadsItem(frames, spans, inputs.words, inputs.sentence, inputs.phones, inputs.phone_ids,
                         inputs.phone_owner)

    async def analyse(self, audio: np.ndarray, reference_text: str, modes: tuple[bool, ...] = (True, False),
                      priority: int = URGENT, partial: bool = False) -> Graph:
        """ASR, phone posteriors and SSL frames of `audio` (the last two beside the ASR), then the alignment and
        head inputs of each mode in `modes` (closed: True): the graph up to the heads, for `assess` and training.
        `partial`: an interim decode (greedy Whisper)."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        frames = asyncio.ensure_future(self._ssl.submit(audio, priority))
        posteriors = asyncio.ensure_future(self._phone_posteriors(audio, frames, priority))
        try:
            transcript = await self._asr.submit(AsrRequest(audio, partial=partial), priority)
            timings["asr"] = (time.perf_counter() - started) * 1000
            duration_ms = int(round(len(audio) * 1000 / SAMPLE_RATE))
            recognised = without_loops(plausible(transcript, duration_ms))
            wanted = {closed: normalize_words(reference_text) if closed else [w.text for w in recognised]
                      for closed in modes}
            if not any(wanted.values()):
                return Graph(transcript, np.zeros((0, 0), np.float32), {closed: None for closed in modes}, timings)
            mark = time.perf_counter()
            log_probs = await posteriors
            frame_ms = self.posteriors.load().frame_ms
            aligned = await asyncio.gather(*(self._align_words(words, log_probs, frame_ms, priority)
                                             for words in wanted.values()), return_exceptions=True)
            analyses: dict[bool, Analysis | None] = {}
            for (closed, words), result in zip(wanted.items(), aligned):
                if isinstance(result, BaseException):
                    if len(modes) == 1:
                        raise result
                    log.info("no %s-mode alignment: %s", "closed" if closed else "open", result)
                    result = None
                analyses[closed] = None if not words or result is None else Analysis(result, head_inputs(
                    result, heard_words(words, recognised, closed), closed, duration_ms, frame_ms))
            timings["align"] = (time.perf_counter() - mark) * 1000
            ssl_frames = await frames
        finally:
            posteriors.cancel()
            frames.cancel()
        return Graph(transcript, ssl_frames, analyses, timings)

    async def _phone_posteriors(self, audio: np.ndarray, frames: asyncio.Future, priority: int) -> np.ndarray:
        """Log phone posteriors per frame: from the audio (a frame classifier over audio), or in the embedded
        configuration from the SSL frames (`frames`, shared with the heads: the encoder runs once)."""
        if self.config.embedded:
            return await self._posteriors.submit(await asyncio.shield(frames), priority)
        return await self._posteriors.submit(audio, priority)

    def flag_threshold(self, sensitivity: float, closed: bool) -> float:
        """Word accuracy below which a word is flagged at this sensitivity (one table for both modes)."""
        return threshold_at(self.heads.flag_thresholds(), sensitivity)

    async def align(self, audio: np.ndarray, words: list[str]) -> WordTimings:
        """`words` force-aligned to `audio` by the profile's own classifier and Viterbi (how `saywell eval`
        times the labelled words)."""
        frames = asyncio.ensure_future(self._ssl.submit(audio)) if self.config.embedded else None
        try:
            log_probs = await self._phone_posteriors(audio, frames, URGENT)
        finally:
            if frames is not None:
                frames.cancel()
        frame_ms = self.posteriors.load().frame_ms
        aligned = await self._align_words(list(words), log_probs, frame_ms, URGENT)
        return WordTimings(aligned or (), frame_ms)

    async def _align_words(self, words: list[str], log_probs: np.ndarray, frame_ms: float,
                           priority: int) -> tuple[AlignedWord, ...] | None:
        if not words:
            return None
        sequence = phone_sequence(words, self.lexicon, self.inventory, len(log_probs), self.config.aligner.min_frames)
        try:
            alignment = await self._align.submit(FrameAlignItem(log_probs, sequence.ids), priority)
        except ValueError as exc:  # the Viterbi's own refusal (no finite path, ...)
            raise EngineError(f"the words could not be aligned to the audio: {exc}") from exc
        return aligned_words(words, sequence, alignment, log_probs, self.inventory, frame_ms)
