"""Server-wide turns for interim decodes (--max-interim-decodes): a limit keyed to the engine's load, taken in
the order the streams asked, with each decode hearing the audio of its turn's start."""
import asyncio
import pathlib
import sys

import pytest

from saywell.server.config import ServerConfig
from saywell.server.errors import StatusError
from saywell.server.interim_turns import InterimTurns
from saywell.server.metrics import ServerMetrics
from saywell.server.session import AssessmentSession
from saywell.v1 import assessment_pb2 as pb

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from fake_engine import FakeEngine  # noqa: E402
from test_segment_cuts import RATE, voiced_without_pauses  # noqa: E402


def _starter(log: list, key: str, result: bool = True):
    def start() -> bool:
        log.append(key)
        return result
    return start


def test_turns_beyond_the_limit_wait_and_go_in_the_order_asked():
    turns, started = InterimTurns(2), []
    for key in "abcd":
        turns.request(key, _starter(started, key))
    assert started == ["a", "b"] and turns.running == 2 and turns.waiting == 2
    turns.request("c", _starter(started, "c-again"))  # asking again keeps c's place (and its first callback)
    turns.release()
    assert started == ["a", "b", "c"]
    turns.release()
    turns.release()
    assert started == ["a", "b", "c", "d"] and turns.running == 1 and turns.waiting == 0


def test_only_the_first_turn_is_granted_while_the_engine_has_urgent_work():
    busy = [True]
    turns, started = InterimTurns(3, busy=lambda: busy[0]), []
    for key in "abc":
        turns.request(key, _starter(started, key))
    assert started == ["a"], "word results never stop, but under load they take one turn at a time"
    turns.release()
    assert started == ["a", "b"] and turns.running == 1
    busy[0] = False
    turns.request("d", _starter(started, "d"))
    assert started == ["a", "b", "c", "d"] and turns.running == 3


def test_withdrawn_and_declined_turns_pass_to_the_next_stream():
    turns, started = InterimTurns(1), []
    turns.request("a", _starter(started, "a"))
    turns.request("b", _starter(started, "b"))
    turns.request("c", _starter(started, "c", result=False))  # its utterance ended before its turn
    turns.request("d", _starter(started, "d"))
    turns.withdraw("b")
    turns.release()
    assert started == ["a", "c", "d"] and turns.running == 1 and turns.waiting == 0


def test_a_stream_whose_start_fails_does_not_hold_a_turn():
    turns, started = InterimTurns(1), []

    def broken() -> bool:
        raise RuntimeError("bug")
    turns.request("a", broken)
    turns.request("b", _starter(started, "b"))
    assert started == ["b"] and turns.running == 1


def test_no_limit_starts_every_request_at_once():
    turns, started = InterimTurns(0, busy=lambda: True), []
    for key in "abc":
        turns.request(key, _starter(started, key))
    assert started == ["a", "b", "c"] and turns.running == 3


class SlowInterimEngine(FakeEngine):
    """Interim decodes that take `decode_s`; records how many ran at once."""

    def __init__(self, decode_s: float) -> None:
        super().__init__(delay_s=0.005)
        self.decode_s = decode_s
        self.running = 0
        self.most_at_once = 0

    async def provisional_words(self, request):
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.decode_s)
            return self._words(request)
        finally:
            self.running -= 1


async def _streams(engine, config: ServerConfig, n: int, seconds: float) -> dict[int, list[int]]:
    """`n` streams of `seconds` of speech at real time through one server's turns; per stream, the new speech
    (ms) each of its interim decodes heard beyond the previous one."""
    turns = InterimTurns(config.max_interim_decodes, busy=lambda: engine.backlog() > 0)
    pcm = (voiced_without_pauses(seconds) * 32767).astype("<i2").tobytes()
    new_speech: dict[int, list[int]] = {i: [] for i in range(n)}

    async def stream(i: int) -> list:
        session = AssessmentSession(engine, config, ServerMetrics(), lambda: n, turns)
        start = session._start_interim

        def recorded_start() -> bool:
            before = session._interim.decoded_ms if session._interim else 0
            started = start()
            if started:
                new_speech[i].append(session._interim.decoded_ms - before)
            return started
        session._start_interim = recorded_start

        async def requests():
            yield pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
                audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE),
                interim_results=True))
            step = RATE // 10 * 2  # 100 ms chunks at real time
            for k in range(0, len(pcm), step):
                yield pb.StreamAssessRequest(audio=pcm[k:k + step])
                await asyncio.sleep(0.1)
            yield pb.StreamAssessRequest(end_of_utterance=pb.EndOfUtterance())
        return [r async for r in session.run(requests())]

    for responses in await asyncio.gather(*(stream(i) for i in range(n))):
        assert [r.WhichOneof("event") for r in responses].count("utterance") == 1
    await asyncio.sleep(0)  # the last decode's done callback
    assert turns.running == 0 and turns.waiting == 0, "every turn taken was given back"
    return new_speech


@pytest.mark.parametrize("limit", [1, 0])
def test_streams_take_turns_and_each_decode_hears_the_speech_up_to_its_turn(limit):
    engine = SlowInterimEngine(decode_s=0.25)
    config = ServerConfig(warm_up=False, interim_step_ms=200, interim_step_growth=0.0, max_interim_decodes=limit)
    new_speech = asyncio.run(_streams(engine, config, n=3, seconds=4.0))
    counts = [len(v) for v in new_speech.values()]
    median = sorted(ms for v in new_speech.values() for ms in v[1:])[sum(counts) // 2 - 2]
    if limit:
        assert engine.most_at_once == 1
        # one 250 ms decode at a time for three streams: each stream's turn comes every ~750 ms, and its decode
        # hears all the speech that came meanwhile, not only the 200 ms step after which it asked
        assert min(counts) >= 3 and max(counts) - min(counts) <= 2, new_speech
        assert median >= 500, new_speech
    else:
        assert engine.most_at_once == 3
        assert min(counts) >= 8 and median <= 400, new_speech


def test_a_stream_whose_input_fails_while_waiting_gives_up_its_place():
    engine = SlowInterimEngine(decode_s=0.01)
    turns = InterimTurns(1)
    turns.request("another stream", lambda: True)  # holds the only turn
    pcm = (voiced_without_pauses(1.5) * 32767).astype("<i2").tobytes()
    config = pb.StreamingAssessConfig(audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16,
                                                           sample_rate_hertz=RATE), interim_results=True)
    session = AssessmentSession(engine, ServerConfig(warm_up=False, interim_step_ms=200), ServerMetrics(),
                                lambda: 2, turns)

    async def requests():
        yield pb.StreamAssessRequest(config=config)
        for k in range(0, len(pcm), 3200):
            yield pb.StreamAssessRequest(audio=pcm[k:k + 3200])
        assert turns.waiting == 1, "speech in progress: the stream waits for the turn"
        yield pb.StreamAssessRequest(config=config)  # refused: config only once

    async def run():
        with pytest.raises(StatusError, match="config may be sent only once"):
            async for _ in session.run(requests()):
                pass
        assert turns.waiting == 0
        turns.release()  # the other stream's decode ends: nobody is left to take the turn
        await asyncio.sleep(0.05)
        return engine.most_at_once

    assert asyncio.run(run()) == 0 and turns.running == 0
