"""Open mode's early analysis: an utterance cut at its pauses into consecutive segments, each analysed (ASR,
phone loop, alignment) while the learner goes on, so the final assessment only analyses the last stretch."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field

import numpy as np

from saywell.engine.stages.alignment import Alignment
from saywell.engine.types import AssessmentRequest, EngineError, RecognizedWord, Transcript, UtteranceResult

log = logging.getLogger(__name__)
Spawn = Callable[[Coroutine], asyncio.Task]


@dataclass(frozen=True)
class Segment:
    """Words, alignment and phone loop of one stretch of an utterance, analysed while the learner went on."""

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
    # A stretch with no words may still be transcribed as punctuation ("."): joining it gave "China. ."
    spoken = [t for _, t in parts if any(ch.isalnum() for ch in t.text)]
    following = {id(t): after.text.strip() for t, after in zip(spoken, spoken[1:])}

    def cut_mid_sentence(t: Transcript) -> bool:
        """Whisper ends each segment with a full stop; a cut inside a sentence ("jumps." + "over the lazy dog.")
        gave "jumps. over": a stop before a part that goes on in lower case is the cut's, not the speaker's."""
        return t.text.strip().endswith(".") and following.get(id(t), "")[:1].islower()

    words: list[RecognizedWord] = []
    for start, t in parts:
        moved = [dataclasses.replace(w, start_ms=w.start_ms + start // 16, end_ms=w.end_ms + start // 16)
                 for w in t.words]
        if moved and cut_mid_sentence(t):
            moved[-1] = dataclasses.replace(moved[-1], ends_sentence=False)
        words += moved
    texts = [t.text.strip()[:-1] if cut_mid_sentence(t) else t.text.strip() for t in spoken]
    return Transcript(text=" ".join(texts), words=tuple(words))


def drop(job: asyncio.Future | None) -> None:
    """Cancel a job no longer needed, retrieving its failure if it already failed (it was handled elsewhere)."""
    if job is None:
        return
    if job.done() and not job.cancelled():
        job.exception()
    job.cancel()


@dataclass
class SegmentChain:
    """Consecutive segments of one open-response utterance, from its first sample, analysed at its pauses.

    `engine` is the cpu profile's engine (analyse_segment, utterance_encoding, assess_segments, assess).
    """

    engine: object
    spawn: Spawn
    scorer: str = ""
    # Called with each analysed segment and its audio: its words are final until the assessment.
    on_segment: Callable[[Segment, np.ndarray], Coroutine] | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _announced: asyncio.Task | None = None  # the last announcement: they run in chain order
    covered: int = 0  # samples analysed or being analysed

    @property
    def segments(self) -> int:
        return len(self._tasks)

    def extend(self, audio: np.ndarray) -> None:
        """Start analysing the audio after what the chain covers (`audio` is the utterance so far)."""
        if len(audio) <= self.covered:
            return
        piece = audio[self.covered:]
        task = self.spawn(self.engine.analyse_segment(piece, self.covered, self.scorer))
        self._tasks.append(task)
        self.covered = len(audio)
        if self.on_segment is not None:
            self._announced = self.spawn(self._announce(task, piece, self._announced))

    async def _announce(self, task: asyncio.Task, audio: np.ndarray, previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # a later segment's words never go out before an earlier one's
        try:
            segment = await asyncio.shield(task)
        except EngineError:
            return  # the final assessment falls back to the whole utterance; nothing to announce
        await self.on_segment(segment, audio)

    async def assess(self, request: AssessmentRequest) -> UtteranceResult:
        """The final assessment: analyse only what the chain does not cover yet, then join and score.

        A failed segment (say, alignment found no path in a stretch of noise) falls back to assessing the
        whole utterance at once.
        """
        # The rest of the audio and the utterance's encoder frames need no earlier segment: they start now,
        # beside the segments still in flight.
        rest = (asyncio.ensure_future(self.engine.analyse_segment(request.audio[self.covered:], self.covered))
                if self.covered < len(request.audio) else None)
        encoding = self.engine.utterance_encoding(request)
        try:
            # Shielded: cancelling a speculation that waits here must not cancel segments the final still needs.
            segments = [await asyncio.shield(task) for task in self._tasks]
            if rest is not None:
                segments.append(await rest)
            return await self.engine.assess_segments(request, segments, encoding)
        except EngineError as exc:
            log.info("segmented assessment failed (%s); assessing the whole utterance", exc)
        finally:
            for job in (rest, encoding):
                drop(job)  # done with, or (on failure) not to share the CPU with the fallback
        return await self.engine.assess(request)
