"""Validated per-stream settings: the wire config checked field by field and converted at the edge."""
from __future__ import annotations

from dataclasses import dataclass

from saywell.engine.api import normalize_words
from saywell.server.config import ServerConfig
from saywell.server.errors import InvalidArgument
from saywell.v1 import assessment_pb2 as pb

LANGUAGES = ("en-US",)
ENCODINGS = (pb.AUDIO_ENCODING_LINEAR16, pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG_OPUS, pb.AUDIO_ENCODING_WAV)
CONTAINER_ENCODINGS = (pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG_OPUS, pb.AUDIO_ENCODING_WAV)
MIN_RATE, MAX_RATE = 8000, 48000
MAX_CHANNELS = 8
MAX_REQUEST_ID_CHARS = 128


@dataclass(frozen=True)
class AudioSettings:
    encoding: int  # pb.AudioEncoding value
    sample_rate_hertz: int  # 0 for containers that bring their own header
    channels: int


@dataclass(frozen=True)
class StreamSettings:
    audio: AudioSettings
    language_code: str = "en-US"
    reference_text: str = ""
    flag_sensitivity: float = 0.5
    scorer: str = ""
    vad_aggressiveness: int = 2
    end_of_utterance_silence_ms: int = 700
    max_utterance_ms: int = 20_000
    min_speech_ms: int = 120
    interim_results: bool = False
    client_request_id: str = ""


def audio_settings(audio: pb.AudioConfig, has_audio: bool) -> AudioSettings:
    if not has_audio:
        raise InvalidArgument("config.audio is required (encoding, sample_rate_hertz, audio_channel_count)")
    if audio.encoding not in ENCODINGS:
        name = pb.AudioEncoding.Name(audio.encoding) if audio.encoding in pb.AudioEncoding.values() else audio.encoding
        raise InvalidArgument(f"config.audio.encoding {name} is not supported; use one of "
                              + ", ".join(pb.AudioEncoding.Name(e) for e in ENCODINGS))
    rate = audio.sample_rate_hertz
    if audio.encoding == pb.AUDIO_ENCODING_LINEAR16 and rate == 0:
        raise InvalidArgument("config.audio.sample_rate_hertz is required for AUDIO_ENCODING_LINEAR16")
    if rate != 0 and not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidArgument(f"config.audio.sample_rate_hertz {rate} is out of range {MIN_RATE}..{MAX_RATE}")
    channels = audio.audio_channel_count or 1
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidArgument(f"config.audio.audio_channel_count {audio.audio_channel_count} is out of range 1..{MAX_CHANNELS}")
    return AudioSettings(audio.encoding, rate, channels)


def assessment_fields(cfg: pb.AssessmentConfig, limits: ServerConfig, scorers: list[str]) -> dict:
    language = cfg.language_code or "en-US"
    if language not in LANGUAGES:
        raise InvalidArgument(f"config.assessment.language_code {language!r} is not supported; supported: "
                              + ", ".join(LANGUAGES))
    reference = cfg.reference_text
    if len(reference) > limits.max_reference_text_chars:
        raise InvalidArgument(f"config.assessment.reference_text has {len(reference)} characters; "
                              f"the limit is {limits.max_reference_text_chars}")
    if reference.strip() and not normalize_words(reference):
        raise InvalidArgument("config.assessment.reference_text has no words to assess "
                              f"(after normalisation): {reference[:80]!r}")
    sensitivity = cfg.flag_sensitivity if cfg.HasField("flag_sensitivity") else 0.5
    if not 0.0 <= sensitivity <= 1.0:  # NaN fails too
        raise InvalidArgument(f"config.assessment.flag_sensitivity {cfg.flag_sensitivity} is out of range 0..1")
    if cfg.scorer and cfg.scorer not in scorers:
        raise InvalidArgument(f"config.assessment.scorer {cfg.scorer!r} is unknown; available: {', '.join(scorers)}")
    return {"language_code": language, "reference_text": reference.strip(),
            "flag_sensitivity": float(sensitivity), "scorer": cfg.scorer}


def endpointing_fields(cfg: pb.EndpointingConfig, limits: ServerConfig) -> dict:
    aggressiveness = cfg.vad_aggressiveness if cfg.HasField("vad_aggressiveness") else 2
    if not 0 <= aggressiveness <= 3:
        raise InvalidArgument(f"config.endpointing.vad_aggressiveness {aggressiveness} is out of range 0..3")
    silence = cfg.end_of_utterance_silence_ms or 700
    if not 200 <= silence <= 5000:
        raise InvalidArgument(f"config.endpointing.end_of_utterance_silence_ms {silence} is out of range 200..5000")
    max_utterance = cfg.max_utterance_ms or limits.max_utterance_ms
    if not 1000 <= max_utterance <= limits.max_utterance_ms:
        raise InvalidArgument(f"config.endpointing.max_utterance_ms {max_utterance} is out of range "
                              f"1000..{limits.max_utterance_ms}")
    min_speech = cfg.min_speech_ms or 120
    if not 30 <= min_speech <= 1000:
        raise InvalidArgument(f"config.endpointing.min_speech_ms {min_speech} is out of range 30..1000")
    return {"vad_aggressiveness": aggressiveness, "end_of_utterance_silence_ms": silence,
            "max_utterance_ms": max_utterance, "min_speech_ms": min_speech}


def stream_settings(config: pb.StreamingAssessConfig, limits: ServerConfig, scorers: list[str]) -> StreamSettings:
    if len(config.client_request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(f"config.client_request_id is longer than {MAX_REQUEST_ID_CHARS} characters")
    return StreamSettings(
        audio=audio_settings(config.audio, config.HasField("audio")),
        **assessment_fields(config.assessment, limits, scorers),
        **endpointing_fields(config.endpointing, limits),
        interim_results=config.interim_results,
        client_request_id=config.client_request_id,
    )
