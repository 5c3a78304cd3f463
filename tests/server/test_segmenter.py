import pathlib

import numpy as np
import soundfile as sf

from saywell.server.segmenter import (EndCause, SegmenterOptions, SpeechGap, SpeechPaused, SpeechResumed, SpeechStarted,
                                      UtteranceEnded, VadSegmenter)

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


def run(audio, options=SegmenterOptions(), chunk=1600, flush=EndCause.END_OF_STREAM, pauses=False):
    segmenter = VadSegmenter(options)
    events = []
    for i in range(0, len(audio), chunk):
        events += segmenter.feed(audio[i:i + chunk])
    events += segmenter.end_utterance(flush)
    return events if pauses else [e for e in events if not isinstance(e, (SpeechPaused, SpeechResumed, SpeechGap))]


def two_utterances():
    return sf.read(FIXTURES / "two_utterances.wav", dtype="float32")[0]


def test_two_utterances_separated_by_silence():
    events = run(two_utterances(), SegmenterOptions(silence_ms=500))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, UtteranceEnded, SpeechStarted, UtteranceEnded]
    first, second = events[1], events[3]
    assert first.cause is EndCause.SILENCE and second.cause is EndCause.END_OF_STREAM
    assert [first.index, second.index] == [0, 1]
    # coffee.wav (2.5 s) starts after 0.3 s of silence; brother.wav after another 1.2 s
    assert 0 <= first.start_ms <= 400 and 2300 <= first.speech_end_ms <= 3000
    assert 3500 <= second.start_ms <= 4200
    assert abs(len(first.audio) / 16 - (first.speech_end_ms - first.start_ms)) <= 250  # 200 ms tail kept


def test_long_silence_setting_keeps_both_in_one_utterance():
    events = run(two_utterances(), SegmenterOptions(silence_ms=2000))
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnded]


def test_max_length_cuts_and_speech_resumes_as_a_new_utterance():
    events = run(two_utterances(), SegmenterOptions(max_utterance_ms=1000))
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert any(e.cause is EndCause.MAX_LENGTH for e in ended)
    assert all(len(e.audio) <= 16000 * 1.05 for e in ended)
    assert [e.index for e in ended] == list(range(len(ended)))


def test_silence_only_yields_nothing():
    assert run(np.zeros(16000 * 3, np.float32)) == []


def test_client_end_of_utterance_cuts_mid_speech():
    audio = two_utterances()
    segmenter = VadSegmenter()
    events = segmenter.feed(audio[:16000 * 2])
    assert segmenter.in_speech
    events += segmenter.end_utterance(EndCause.CLIENT)
    assert isinstance(events[-1], UtteranceEnded) and events[-1].cause is EndCause.CLIENT
    assert not segmenter.in_speech


def test_chunking_does_not_change_the_segmentation():
    audio = two_utterances()
    a = [(type(e).__name__, getattr(e, "start_ms", getattr(e, "offset_ms", None))) for e in run(audio, chunk=480)]
    b = [(type(e).__name__, getattr(e, "start_ms", getattr(e, "offset_ms", None))) for e in run(audio, chunk=7777)]
    assert a == b


def test_a_pause_that_becomes_the_endpoint_carries_exactly_the_utterance_audio():
    events = run(two_utterances(), SegmenterOptions(silence_ms=500), pauses=True)
    first_end = next(i for i, e in enumerate(events) if isinstance(e, UtteranceEnded))
    pauses = [e for e in events[:first_end] if isinstance(e, SpeechPaused)]
    # the pause right before the endpoint: nothing voiced came between it and the end
    assert not isinstance(events[first_end - 1], SpeechResumed) and pauses
    last_pause, ended = pauses[-1], events[first_end]
    assert last_pause.index == ended.index == 0
    np.testing.assert_array_equal(last_pause.audio, ended.audio)


def test_speech_after_a_pause_resumes_the_same_utterance():
    audio = two_utterances()
    events = run(audio, SegmenterOptions(silence_ms=2000), pauses=True)
    kinds = [type(e) for e in events]
    assert kinds.count(UtteranceEnded) == 1  # the 1.2 s gap between the sentences is only a pause
    resumed = [e for e in events if isinstance(e, SpeechResumed)]
    assert resumed and all(e.index == 0 for e in resumed)
    for i, kind in enumerate(kinds):  # every resume follows a pause of the same utterance
        if kind is SpeechResumed:
            assert SpeechPaused in kinds[:i]
    assert len(events[-1].audio) > len([e for e in events if isinstance(e, SpeechPaused)][0].audio)


def test_a_client_end_during_a_pause_cuts_where_the_pause_did():
    audio = two_utterances()[:16000 * 3]  # coffee.wav and ~0.3 s of the silence after it
    segmenter = VadSegmenter(SegmenterOptions(silence_ms=1000))
    events = segmenter.feed(audio)
    assert segmenter.paused
    pause = [e for e in events if isinstance(e, SpeechPaused)][-1]
    ended = segmenter.end_utterance(EndCause.CLIENT)[-1]
    np.testing.assert_array_equal(pause.audio, ended.audio)


def test_gaps_are_cut_points_in_silence_inside_the_utterance():
    audio = two_utterances()
    events = run(audio, SegmenterOptions(silence_ms=2000), pauses=True)
    start = events[0].offset_ms
    gaps = [e for e in events if isinstance(e, SpeechGap)]
    assert gaps and [g.cut_ms for g in gaps] == sorted(g.cut_ms for g in gaps)
    speech_rms = np.sqrt(np.mean(audio ** 2))
    for gap in gaps:
        at = (start + gap.cut_ms) * 16
        around = audio[at - 320:at + 320]  # +-20 ms
        assert np.sqrt(np.mean(around ** 2)) < speech_rms / 3, gap
    # the silence between the two sentences (stream 2.6-3.8 s) holds a gap cut before its pause fires
    kinds = [type(e) for e in events]
    between = [g for g in gaps if 2500 <= start + g.cut_ms <= 3900]
    assert between and kinds.index(SpeechPaused) > events.index(between[0])
