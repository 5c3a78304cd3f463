"""The live hypothesis through a real session: a hallucinated interim decode is withdrawn by the next one.

Seen on held-out learner speech: one interim decode heard a run of "so"; later decodes reached fewer words, and
a client that followed the old per-word contract kept "... turn upward so so" until the final. Each
InterimResult now carries the whole provisional tail, so the client's view (saywell.client.live, the rule the
proto documents) follows the latest decode.
"""
import asyncio

import numpy as np

from saywell.client.live import LiveHypothesis
from saywell.engine.types import WordErrorType, WordScore
from saywell.server.config import ServerConfig
from saywell.server.metrics import ServerMetrics
from saywell.server.session import AssessmentSession
from saywell.v1 import assessment_pb2 as pb
from tests.integration.fake_engine import FakeEngine
from tests.server.test_segment_cuts import RATE, voiced_without_pauses

SAID = ["we", "turn", "upward", "so", "we", "go", "on", "and", "on", "and", "on", "until", "the", "end"]


def timeline(texts: list[str], start_ms: int = 0, step_ms: int = 350) -> list[WordScore]:
    return [WordScore(t, start_ms + i * step_ms, start_ms + i * step_ms + 300, 8.0, 10.0, 8.0, WordErrorType.NONE,
                      False) for i, t in enumerate(texts)]


class ScriptedDecodes(FakeEngine):
    """Interim decodes hear SAID as far as the audio goes, one word per 350 ms; the second decode instead
    hears eight "so" after "upward" (a hallucination squeezed into the audio it was given)."""

    def __init__(self) -> None:
        super().__init__(delay_s=0.005)
        self.decodes = 0

    async def provisional_words(self, request):
        self.decodes += 1
        heard = [w for w in timeline(SAID) if w.end_ms <= request.duration_ms]
        if self.decodes == 2:
            heard = timeline(SAID[:3]) + timeline(["so"] * 8, start_ms=1050, step_ms=60)
        return tuple(heard)


async def stream(engine, audio: np.ndarray) -> list[pb.StreamAssessResponse]:
    session = AssessmentSession(engine, ServerConfig(warm_up=False, interim_step_ms=400), ServerMetrics(), lambda: 1)

    async def requests():
        yield pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
            audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE), interim_results=True))
        pcm = (audio * 32767).astype("<i2").tobytes()
        step = RATE // 10 * 2
        for i in range(0, len(pcm), step):
            yield pb.StreamAssessRequest(audio=pcm[i:i + step])
            await asyncio.sleep(0.01)
        yield pb.StreamAssessRequest(end_of_utterance=pb.EndOfUtterance())

    return [r async for r in session.run(requests())]


def test_a_hallucinated_interim_tail_is_withdrawn_from_the_clients_view(monkeypatch):
    # Decodes hear the utterance from its start (the scripted words are on the utterance's timeline).
    monkeypatch.setattr("saywell.server.interim.INTERIM_CONTEXT_MS", 10**6)
    engine = ScriptedDecodes()
    responses = asyncio.run(stream(engine, voiced_without_pauses(5.0)))
    assert engine.decodes >= 4
    live, views = LiveHypothesis(), []
    for response in responses:
        if live.on_response(response) is not None:
            views.append([w.word for w in live.words(0)])
    assert any(view.count("so") >= 8 for view in views), "the hallucinated decode was shown while it was the latest"
    after = views[next(i for i, v in enumerate(views) if v.count("so") >= 8) + 1:]
    assert after, "later decodes followed it"
    assert all(view.count("so") <= 2 for view in after), views
    stable = [w for r in responses if r.WhichOneof("event") == "interim_result" for w in r.interim_result.stable_words]
    assert [w.word_index for w in stable] == list(range(len(stable))), "stable words continue, never resent"
    assert [r.WhichOneof("event") for r in responses][-2:] == ["utterance", "summary"]
