"""Open mode cuts fluent speech (no silence to cut at) after committed interim words, so the endpoint is left
with only the last stretch to analyse."""
import asyncio
import dataclasses
import pathlib
import sys

import numpy as np
import pytest

from saywell.engine.options import EngineOptions
from saywell.engine.profiles.cpu.utterance import CpuUtterance
from saywell.server.config import ServerConfig
from saywell.server.metrics import ServerMetrics
from saywell.server.session import AssessmentSession
from saywell.v1 import assessment_pb2 as pb

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from fake_engine import FakeEngine  # noqa: E402

RATE = 16_000
MIN_GAP_SEGMENT_MS = EngineOptions().early.min_segment_ms


class SegmentRecordingEngine(FakeEngine):
    """The fake's answers behind the cpu profile's own utterance handle, which decides where to cut; records
    each analysed segment as (start sample, samples)."""

    def __init__(self) -> None:
        super().__init__(delay_s=0.005)
        self.options = EngineOptions()
        self.segments: list[tuple[int, int]] = []

    def begin_utterance(self, template, on_committed=None) -> CpuUtterance:
        return CpuUtterance(self, template, on_committed)

    async def analyse_segment(self, audio, start: int, scorer: str = ""):
        self.segments.append((start, len(audio)))
        await asyncio.sleep(0)  # the fake's cost lives in assess / assess_segments
        return dataclasses.make_dataclass("FakeSegment", ["start", "samples", "end"])(start, len(audio),
                                                                                  start + len(audio))

    async def segment_words(self, segment, audio, request):
        return self._words(request)

    def utterance_encoding(self, request):
        return None  # the fake scores without encoder frames

    def frame_words_for(self, request):
        return None  # its interim words' times stand for aligned ones: they may cut (see test_frame_words.py)

    async def assess_segments(self, request, segments, encoding=None):
        return await self.assess(request)


def voiced_without_pauses(seconds: float) -> np.ndarray:
    """A vowel-like buzz (harmonics of a gliding 140 Hz pitch) the VAD hears as speech from end to end."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    buzz = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.2 * buzz / np.abs(buzz).max()).astype(np.float32)


async def _stream(engine, config: ServerConfig, audio: np.ndarray, open_streams: int = 1
                  ) -> list[pb.StreamAssessResponse]:
    session = AssessmentSession(engine, config, ServerMetrics(), lambda: open_streams)

    async def requests():
        yield pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
            audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE), interim_results=True))
        pcm = (audio * 32767).astype("<i2").tobytes()
        step = RATE // 10 * 2  # 100 ms chunks
        for i in range(0, len(pcm), step):
            yield pb.StreamAssessRequest(audio=pcm[i:i + step])
            await asyncio.sleep(0.01)  # interim decodes get to run between chunks
        yield pb.StreamAssessRequest(end_of_utterance=pb.EndOfUtterance())

    return [r async for r in session.run(requests())]


@pytest.mark.parametrize("cut", [True, False])
def test_fluent_speech_is_cut_after_committed_words_only_when_enabled(cut):
    engine = SegmentRecordingEngine()
    config = ServerConfig(warm_up=False, cut_at_committed_words=cut, interim_step_ms=300)
    responses = asyncio.run(_stream(engine, config, voiced_without_pauses(8.0)))
    kinds = [r.WhichOneof("event") for r in responses]
    assert kinds.count("utterance") == 1 and kinds[-1] == "summary"
    committed = [w for r in responses if r.WhichOneof("event") == "interim_result" for w in r.interim_result.stable_words]
    assert committed, "two agreeing interim decodes commit words"
    starts = [start for start, _ in engine.segments]
    assert starts[0] == 0 and starts == sorted(starts)
    assert all(a + n == b for (a, n), (b, _) in zip(engine.segments, engine.segments[1:])), "segments are contiguous"
    if cut:
        assert len(engine.segments) >= 3, "cuts after committed words while the buzz goes on"
        assert all(n >= MIN_GAP_SEGMENT_MS * 16 for _, n in engine.segments[:-1])
        ends_ms = {(start + n) // 16 for start, n in engine.segments[:-1]}
        word_edges = {w.end_ms for w in committed} | {w.start_ms for w in committed}
        # a cut lies at a committed word's end, or between it and the next word (the fake's gaps are 100 ms)
        assert all(any(0 <= end - edge <= 100 for edge in word_edges) for end in ends_ms)
    else:
        assert len(engine.segments) == 1, "no silence, no cut: the endpoint analyses everything"


class UnsettledWordsEngine(SegmentRecordingEngine):
    """Interim decodes that never agree with the previous one (each hears different words), so nothing is
    committed by agreement."""

    def __init__(self) -> None:
        super().__init__()
        self.decodes = 0

    async def provisional_words(self, request):
        self.decodes += 1
        return tuple(dataclasses.replace(w, text=f"{w.text}-{self.decodes}")
                     for w in await super().provisional_words(request))


@pytest.mark.parametrize("settled", [True, False])
def test_words_clear_of_the_live_edge_are_cut_after_without_agreement_only_when_enabled(settled):
    engine = UnsettledWordsEngine()
    config = ServerConfig(warm_up=False, cut_at_settled_words=settled, interim_step_ms=300)
    responses = asyncio.run(_stream(engine, config, voiced_without_pauses(8.0)))
    assert [r.WhichOneof("event") for r in responses].count("utterance") == 1
    assert engine.decodes >= 3
    if settled:
        assert len(engine.segments) >= 3, "cuts after the last settled word of each decode"
        assert all(n >= MIN_GAP_SEGMENT_MS * 16 for _, n in engine.segments[:-1])
        assert all(a + n == b for (a, n), (b, _) in zip(engine.segments, engine.segments[1:]))
    else:
        assert len(engine.segments) == 1, "no agreement, no commit, no cut"


def test_interim_decodes_space_out_as_more_streams_are_open():
    decodes = {}
    for streams, growth in ((1, 2.0), (3, 2.0), (3, 0.0)):
        engine = UnsettledWordsEngine()
        config = ServerConfig(warm_up=False, interim_step_ms=300, interim_step_growth=growth)
        asyncio.run(_stream(engine, config, voiced_without_pauses(6.0), open_streams=streams))
        decodes[streams, growth] = engine.decodes
    # 6 s of speech: about one decode per 300 ms alone, per 2.7 s (300 ms × 3²) with three streams open, and
    # per 300 ms again when the step does not grow
    assert decodes[1, 2.0] >= 15 and decodes[3, 2.0] <= 3 and decodes[3, 0.0] >= 15, decodes


@pytest.mark.parametrize("streams", [1, 3])
def test_each_pause_gets_one_interim_decode_at_once_unless_many_streams_are_open(streams):
    engine = UnsettledWordsEngine()
    # A step longer than the audio, so the only interim decodes are the ones pauses start: alone, a pause
    # decodes once a quarter of it (600 ms) came since the last decode; three streams (step × 3²) make it 5.4 s.
    config = ServerConfig(warm_up=False, interim_step_ms=2400, interim_step_growth=2.0)
    silence = lambda seconds: np.zeros(int(seconds * RATE), dtype=np.float32)  # noqa: E731
    # 0.45 s between the phrases: a pause (200 ms of silence), then speech resumes before the endpoint
    audio = np.concatenate([voiced_without_pauses(1.0), silence(0.45), voiced_without_pauses(1.0), silence(1.2)])
    responses = asyncio.run(_stream(engine, config, audio, open_streams=streams))
    assert [r.WhichOneof("event") for r in responses].count("utterance") == 1
    if streams == 1:
        assert engine.decodes == 2, "one decode in each of the two pauses, however many chunks arrive during it"
    else:
        assert engine.decodes == 0, "with more streams open, the step (and a pause's share of it) grows"
