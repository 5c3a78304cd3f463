"""Segmented finals: an utterance analysed in stretches at its pauses scores like the whole of it."""
import asyncio
import pathlib

import numpy as np
import pytest
import soundfile as sf

from saywell.engine.profiles.cpu.engine import CpuEngine
from saywell.engine.types import AssessmentRequest, EngineError

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


def run(coro):
    return asyncio.run(coro)


def test_segments_joined_at_a_pause_score_like_the_whole_utterance():
    audio = sf.read(FIXTURES / "two_utterances.wav", dtype="float32")[0]
    cut = 16000 * 3 // 160 * 160  # inside the 1.2 s of silence between the two sentences

    async def both():
        engine = CpuEngine()
        try:
            request = AssessmentRequest(audio=audio)
            whole = await engine.assess(request)
            segments = [await engine.analyse_segment(audio[:cut], 0),
                        await engine.analyse_segment(audio[cut:], cut)]
            joined = await engine.assess_segments(request, segments)
            # the encoder frames started before the segments were analysed give the same assessment
            early = engine.utterance_encoding(request)
            assert early is not None  # the default (trained) scorer reads them
            return whole, segments, joined, await engine.assess_segments(request, segments, early)
        finally:
            await engine.close()

    whole, segments, joined, early_joined = run(both())
    assert early_joined.scores == joined.scores and early_joined.words == joined.words
    assert [w.text for w in joined.words] == [w.text for w in whole.words]
    assert "coffee" in [w.text for w in joined.words] and "brother" in [w.text for w in joined.words]
    # the second segment's words are placed in utterance time, after the cut
    assert segments[1].transcript.words[0].start_ms < 2000  # "my" starts ~1.1 s after the cut
    assert joined.words[[w.text for w in joined.words].index("brother")].start_ms > cut // 16
    for name in ("accuracy", "fluency", "prosody", "total"):
        assert abs(getattr(joined.scores, name) - getattr(whole.scores, name)) < 0.3, name
    starts = [w.start_ms for w in joined.words]
    assert starts == sorted(starts)
    assert np.allclose([w.accuracy for w in joined.words], [w.accuracy for w in whole.words], atol=0.5)


def test_segments_must_cover_the_utterance_in_open_mode():
    audio = sf.read(FIXTURES / "coffee.wav", dtype="float32")[0]

    async def check():
        engine = CpuEngine()
        try:
            first = await engine.analyse_segment(audio[:16000], 0)
            with pytest.raises(EngineError, match="cover"):
                await engine.assess_segments(AssessmentRequest(audio=audio), [first])  # the rest is missing
            with pytest.raises(EngineError, match="open mode"):
                await engine.assess_segments(AssessmentRequest(audio=audio[:16000], reference_text="coffee"), [first])
            tiny = await engine.analyse_segment(audio[:800], 0)  # 50 ms: no word fits
            assert tiny.alignment is None and tiny.samples == 800
        finally:
            await engine.close()

    run(check())


def test_a_target_asr_supplies_the_assessed_words_whole_and_in_segments():
    from saywell.engine.options import AsrOptions, EngineOptions

    audio = sf.read(FIXTURES / "two_utterances.wav", dtype="float32")[0]
    cut = 16000 * 3 // 160 * 160

    async def both():
        engine = CpuEngine(EngineOptions(target_asr=AsrOptions(model="base")))
        try:
            request = AssessmentRequest(audio=audio)
            whole = await engine.assess(request)
            segments = [await engine.analyse_segment(audio[:cut], 0),
                        await engine.analyse_segment(audio[cut:], cut)]
            closed = await engine.assess(AssessmentRequest(audio=audio, reference_text="Coffee please."))
            return whole, segments, await engine.assess_segments(request, segments), closed, engine.model_versions()
        finally:
            await engine.close()

    whole, segments, joined, closed, versions = run(both())
    assert versions["target_asr"].startswith("whisper-base")
    assert all(s.target is not None for s in segments)
    assert [w.text for w in segments[0].alignment.words] == [w.text for w in segments[0].target.words]
    from saywell.engine.language.text import normalize_words

    for result in (whole, joined):
        words = [w.text for w in result.words]
        assert {"coffee", "brother"} <= set(words)
        assert words == normalize_words(result.transcript)  # the transcript shown is the target's
    assert [w.text for w in joined.words] == [w.text for w in whole.words]
    assert [w.text for w in closed.words] == ["coffee", "please"]  # closed mode ignores the target


def test_audio_too_short_for_the_target_asr_keeps_the_recognised_words():
    from saywell.engine.options import AsrOptions, EngineOptions
    from saywell.engine.profiles.cpu.engine import MIN_TARGET_SAMPLES

    audio = sf.read(FIXTURES / "fox.wav", dtype="float32")[0]

    async def check():
        engine = CpuEngine(EngineOptions(target_asr=AsrOptions(model="base")))
        calls = []
        submit = engine._target.submit
        engine._target.submit = lambda item, *rest: calls.append(len(item.audio)) or submit(item, *rest)
        try:
            short = await engine.analyse_segment(audio[:MIN_TARGET_SAMPLES - 160], 0)
            long = await engine.analyse_segment(audio, 0)
            return short, long, calls
        finally:
            await engine.close()

    short, long, calls = run(check())
    assert calls == [len(audio)], "only the long segment went to the target ASR"
    assert short.target.words == short.transcript.words  # the recognised words stand in
    assert long.target is not None and long.target.words != ()
