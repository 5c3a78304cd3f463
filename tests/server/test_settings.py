"""Every field of StreamingAssessConfig is validated with a message that names it."""
import pytest

from saywell.server.config import ServerConfig
from saywell.server.errors import InvalidArgument
from saywell.server.settings import stream_settings
from saywell.v1 import assessment_pb2 as pb

LIMITS = ServerConfig(max_utterance_ms=20_000, max_reference_text_chars=100)
SCORERS = ["baseline"]


def config(**overrides) -> pb.StreamingAssessConfig:
    cfg = pb.StreamingAssessConfig(audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000))
    for path, value in overrides.items():
        target = cfg
        *parents, leaf = path.split("__")
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, leaf, value)
    return cfg


def test_defaults_are_filled_in():
    s = stream_settings(config(), LIMITS, SCORERS)
    assert (s.language_code, s.flag_sensitivity, s.vad_aggressiveness) == ("en-US", 0.5, 2)
    assert (s.end_of_utterance_silence_ms, s.max_utterance_ms, s.min_speech_ms) == (700, 20_000, 120)
    assert s.audio.channels == 1 and not s.interim_results


def test_explicit_values_are_kept():
    s = stream_settings(config(assessment__reference_text="  Hello world ", assessment__flag_sensitivity=0.8,
                               endpointing__vad_aggressiveness=0, endpointing__end_of_utterance_silence_ms=300,
                               endpointing__max_utterance_ms=5000, endpointing__min_speech_ms=60,
                               interim_results=True, client_request_id="abc", audio__audio_channel_count=2),
                        LIMITS, SCORERS)
    assert s.reference_text == "Hello world" and s.flag_sensitivity == pytest.approx(0.8)
    assert (s.vad_aggressiveness, s.end_of_utterance_silence_ms, s.max_utterance_ms, s.min_speech_ms) == (0, 300, 5000, 60)
    assert s.interim_results and s.client_request_id == "abc" and s.audio.channels == 2


def test_a_sensitivity_of_zero_is_a_value_not_the_default():
    assert stream_settings(config(assessment__flag_sensitivity=0.0), LIMITS, SCORERS).flag_sensitivity == 0.0
    with pytest.raises(InvalidArgument, match="flag_sensitivity nan is out of range"):
        stream_settings(config(assessment__flag_sensitivity=float("nan")), LIMITS, SCORERS)


def test_containers_need_no_sample_rate():
    for encoding in (pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG_OPUS, pb.AUDIO_ENCODING_WAV):
        cfg = pb.StreamingAssessConfig(audio=pb.AudioConfig(encoding=encoding))
        assert stream_settings(cfg, LIMITS, SCORERS).audio.sample_rate_hertz == 0


@pytest.mark.parametrize("overrides, message", [
    ({"audio__encoding": pb.AUDIO_ENCODING_UNSPECIFIED}, "encoding AUDIO_ENCODING_UNSPECIFIED is not supported"),
    ({"audio__encoding": 42}, "encoding 42 is not supported"),
    ({"audio__sample_rate_hertz": 0}, "sample_rate_hertz is required for AUDIO_ENCODING_LINEAR16"),
    ({"audio__sample_rate_hertz": -16000}, "sample_rate_hertz -16000 is out of range"),
    ({"audio__sample_rate_hertz": 4000}, "sample_rate_hertz 4000 is out of range"),
    ({"audio__sample_rate_hertz": 10_000_000}, "out of range 8000..48000"),
    ({"audio__audio_channel_count": 9}, "audio_channel_count 9 is out of range"),
    ({"audio__audio_channel_count": -1}, "audio_channel_count -1 is out of range"),
    ({"assessment__language_code": "fr-FR"}, "language_code 'fr-FR' is not supported"),
    ({"assessment__reference_text": "x" * 101}, "101 characters; the limit is 100"),
    ({"assessment__reference_text": "?!... --"}, "no words to assess"),
    ({"assessment__flag_sensitivity": 1.5}, "flag_sensitivity 1.5 is out of range"),
    ({"assessment__flag_sensitivity": -0.1}, "flag_sensitivity"),
    ({"assessment__scorer": "magic"}, "scorer 'magic' is unknown"),
    ({"endpointing__vad_aggressiveness": 4}, "vad_aggressiveness 4 is out of range"),
    ({"endpointing__vad_aggressiveness": -1}, "vad_aggressiveness -1"),
    ({"endpointing__end_of_utterance_silence_ms": 100}, "end_of_utterance_silence_ms 100 is out of range"),
    ({"endpointing__end_of_utterance_silence_ms": 6000}, "end_of_utterance_silence_ms 6000"),
    ({"endpointing__max_utterance_ms": 500}, "max_utterance_ms 500 is out of range"),
    ({"endpointing__max_utterance_ms": 60_000}, "max_utterance_ms 60000 is out of range 1000..20000"),
    ({"endpointing__min_speech_ms": 10}, "min_speech_ms 10 is out of range"),
    ({"endpointing__min_speech_ms": 2000}, "min_speech_ms 2000"),
    ({"client_request_id": "r" * 129}, "client_request_id is longer than 128"),
])
def test_each_bad_field_is_rejected_by_name(overrides, message):
    with pytest.raises(InvalidArgument, match=message):
        stream_settings(config(**overrides), LIMITS, SCORERS)


def test_missing_audio_config_is_rejected():
    with pytest.raises(InvalidArgument, match="config.audio is required"):
        stream_settings(pb.StreamingAssessConfig(), LIMITS, SCORERS)


def test_vad_aggressiveness_zero_is_a_real_value_not_the_default():
    cfg = config()
    cfg.endpointing.vad_aggressiveness = 0
    assert stream_settings(cfg, LIMITS, SCORERS).vad_aggressiveness == 0
