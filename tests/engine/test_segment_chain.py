"""The segment chain's final assessment: what it can start at once does not wait for segments still in flight."""
import asyncio

import numpy as np

from saywell.engine.profiles.cpu.segments import SegmentChain
from saywell.engine.types import AssessmentRequest, EngineError


class GatedEngine:
    """Segments of the chain finish only when the test opens the gate; everything started is recorded."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.assessed_with = None

    async def analyse_segment(self, audio, start: int, scorer: str = ""):
        self.started.append(f"segment@{start}")
        if start == 0:
            await self.gate.wait()
        return ("segment", start, len(audio))

    def utterance_encoding(self, request):
        self.started.append("encoding")
        return asyncio.ensure_future(asyncio.sleep(0, result="frames"))

    async def assess_segments(self, request, segments, encoding=None):
        self.assessed_with = (list(segments), await encoding)
        return "result"

    async def assess(self, request):
        return "whole"


def test_the_rest_and_the_encoder_frames_start_before_earlier_segments_finish():
    async def run():
        engine = GatedEngine()
        chain = SegmentChain(engine, asyncio.ensure_future)
        audio = np.zeros(48_000, dtype=np.float32)
        chain.extend(audio[:32_000])  # a segment in flight, held at the gate
        final = asyncio.ensure_future(chain.assess(AssessmentRequest(audio=audio)))
        for _ in range(5):
            await asyncio.sleep(0)
        started_while_gated = list(engine.started)
        engine.gate.set()
        return started_while_gated, await final, engine.assessed_with

    started, result, (segments, frames) = asyncio.run(run())
    assert sorted(started) == ["encoding", "segment@0", "segment@32000"]
    assert result == "result" and frames == "frames"
    assert segments == [("segment", 0, 32_000), ("segment", 32_000, 16_000)]  # still in utterance order


class FailingSegmentEngine(GatedEngine):
    async def analyse_segment(self, audio, start: int, scorer: str = ""):
        self.started.append(f"segment@{start}")
        if start == 0:
            raise EngineError("no alignment path")
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.cancelled.append(f"segment@{start}")
            raise
        return ("segment", start, len(audio))


def test_a_failed_segment_falls_back_to_the_whole_utterance_and_drops_the_rest():
    async def run():
        engine = FailingSegmentEngine()
        chain = SegmentChain(engine, asyncio.ensure_future)
        audio = np.zeros(48_000, dtype=np.float32)
        chain.extend(audio[:32_000])
        result = await chain.assess(AssessmentRequest(audio=audio))
        await asyncio.sleep(0.1)
        return result, engine

    result, engine = asyncio.run(run())
    assert result == "whole" and engine.assessed_with is None
    assert engine.cancelled == ["segment@32000"], "the rest's analysis is not left running for nothing"


def test_joined_transcripts_leave_out_stretches_transcribed_as_punctuation_alone():
    from saywell.engine.profiles.cpu.segments import Segment, joined_transcript
    from saywell.engine.types import RecognizedWord, Transcript

    first = Segment(0, 32_000, Transcript(" Kate loves China.", (RecognizedWord("kate", 0, 300),)), None)
    noise = Segment(32_000, 8_000, Transcript(" .", ()), None)
    last = Segment(40_000, 16_000, Transcript(" Yes", (RecognizedWord("yes", 100, 400),)), None)
    joined = joined_transcript([first, noise, last])
    assert joined.text == "Kate loves China. Yes"
    assert [(w.text, w.start_ms) for w in joined.words] == [("kate", 0), ("yes", 2600)]
    cut = Segment(0, 32_000, Transcript(" The quick brown fox jumps.", ()), None)
    rest = Segment(32_000, 16_000, Transcript(" over the lazy dog.", ()), None)
    assert joined_transcript([cut, rest]).text == "The quick brown fox jumps over the lazy dog."
    assert joined_transcript([first, last]).text == "Kate loves China. Yes", "a new sentence keeps its stop"
