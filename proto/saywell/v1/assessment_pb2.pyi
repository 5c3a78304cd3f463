from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_LINEAR16: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_FLAC: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_OGG_OPUS: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_WAV: _ClassVar[AudioEncoding]

class EndpointCause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENDPOINT_CAUSE_UNSPECIFIED: _ClassVar[EndpointCause]
    ENDPOINT_CAUSE_SILENCE: _ClassVar[EndpointCause]
    ENDPOINT_CAUSE_MAX_LENGTH: _ClassVar[EndpointCause]
    ENDPOINT_CAUSE_CLIENT_END_OF_UTTERANCE: _ClassVar[EndpointCause]
    ENDPOINT_CAUSE_END_OF_STREAM: _ClassVar[EndpointCause]

class SpeechEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPEECH_EVENT_TYPE_UNSPECIFIED: _ClassVar[SpeechEventType]
    SPEECH_EVENT_TYPE_STARTED: _ClassVar[SpeechEventType]
    SPEECH_EVENT_TYPE_ENDED: _ClassVar[SpeechEventType]

class WordErrorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORD_ERROR_TYPE_UNSPECIFIED: _ClassVar[WordErrorType]
    WORD_ERROR_TYPE_NONE: _ClassVar[WordErrorType]
    WORD_ERROR_TYPE_MISPRONUNCIATION: _ClassVar[WordErrorType]
    WORD_ERROR_TYPE_OMISSION: _ClassVar[WordErrorType]
    WORD_ERROR_TYPE_INSERTION: _ClassVar[WordErrorType]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_LINEAR16: AudioEncoding
AUDIO_ENCODING_FLAC: AudioEncoding
AUDIO_ENCODING_OGG_OPUS: AudioEncoding
AUDIO_ENCODING_WAV: AudioEncoding
ENDPOINT_CAUSE_UNSPECIFIED: EndpointCause
ENDPOINT_CAUSE_SILENCE: EndpointCause
ENDPOINT_CAUSE_MAX_LENGTH: EndpointCause
ENDPOINT_CAUSE_CLIENT_END_OF_UTTERANCE: EndpointCause
ENDPOINT_CAUSE_END_OF_STREAM: EndpointCause
SPEECH_EVENT_TYPE_UNSPECIFIED: SpeechEventType
SPEECH_EVENT_TYPE_STARTED: SpeechEventType
SPEECH_EVENT_TYPE_ENDED: SpeechEventType
WORD_ERROR_TYPE_UNSPECIFIED: WordErrorType
WORD_ERROR_TYPE_NONE: WordErrorType
WORD_ERROR_TYPE_MISPRONUNCIATION: WordErrorType
WORD_ERROR_TYPE_OMISSION: WordErrorType
WORD_ERROR_TYPE_INSERTION: WordErrorType

class AudioConfig(_message.Message):
    __slots__ = ("encoding", "sample_rate_hertz", "audio_channel_count")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CHANNEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate_hertz: int
    audio_channel_count: int
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hertz: _Optional[int] = ..., audio_channel_count: _Optional[int] = ...) -> None: ...

class AssessmentConfig(_message.Message):
    __slots__ = ("language_code", "reference_text", "flag_sensitivity", "scorer")
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TEXT_FIELD_NUMBER: _ClassVar[int]
    FLAG_SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    language_code: str
    reference_text: str
    flag_sensitivity: float
    scorer: str
    def __init__(self, language_code: _Optional[str] = ..., reference_text: _Optional[str] = ..., flag_sensitivity: _Optional[float] = ..., scorer: _Optional[str] = ...) -> None: ...

class EndpointingConfig(_message.Message):
    __slots__ = ("vad_aggressiveness", "end_of_utterance_silence_ms", "max_utterance_ms", "min_speech_ms")
    VAD_AGGRESSIVENESS_FIELD_NUMBER: _ClassVar[int]
    END_OF_UTTERANCE_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_UTTERANCE_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEECH_MS_FIELD_NUMBER: _ClassVar[int]
    vad_aggressiveness: int
    end_of_utterance_silence_ms: int
    max_utterance_ms: int
    min_speech_ms: int
    def __init__(self, vad_aggressiveness: _Optional[int] = ..., end_of_utterance_silence_ms: _Optional[int] = ..., max_utterance_ms: _Optional[int] = ..., min_speech_ms: _Optional[int] = ...) -> None: ...

class StreamingAssessConfig(_message.Message):
    __slots__ = ("audio", "assessment", "endpointing", "interim_results", "client_request_id")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    ASSESSMENT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    audio: AudioConfig
    assessment: AssessmentConfig
    endpointing: EndpointingConfig
    interim_results: bool
    client_request_id: str
    def __init__(self, audio: _Optional[_Union[AudioConfig, _Mapping]] = ..., assessment: _Optional[_Union[AssessmentConfig, _Mapping]] = ..., endpointing: _Optional[_Union[EndpointingConfig, _Mapping]] = ..., interim_results: _Optional[bool] = ..., client_request_id: _Optional[str] = ...) -> None: ...

class EndOfUtterance(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamAssessRequest(_message.Message):
    __slots__ = ("config", "audio", "end_of_utterance")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    END_OF_UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    config: StreamingAssessConfig
    audio: bytes
    end_of_utterance: EndOfUtterance
    def __init__(self, config: _Optional[_Union[StreamingAssessConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., end_of_utterance: _Optional[_Union[EndOfUtterance, _Mapping]] = ...) -> None: ...

class SpeechEvent(_message.Message):
    __slots__ = ("type", "utterance_index", "offset_ms", "cause")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    type: SpeechEventType
    utterance_index: int
    offset_ms: int
    cause: EndpointCause
    def __init__(self, type: _Optional[_Union[SpeechEventType, str]] = ..., utterance_index: _Optional[int] = ..., offset_ms: _Optional[int] = ..., cause: _Optional[_Union[EndpointCause, str]] = ...) -> None: ...

class InterimResult(_message.Message):
    __slots__ = ("utterance_index", "stable_words", "provisional_words")
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    STABLE_WORDS_FIELD_NUMBER: _ClassVar[int]
    PROVISIONAL_WORDS_FIELD_NUMBER: _ClassVar[int]
    utterance_index: int
    stable_words: _containers.RepeatedCompositeFieldContainer[InterimWord]
    provisional_words: _containers.RepeatedCompositeFieldContainer[InterimWord]
    def __init__(self, utterance_index: _Optional[int] = ..., stable_words: _Optional[_Iterable[_Union[InterimWord, _Mapping]]] = ..., provisional_words: _Optional[_Iterable[_Union[InterimWord, _Mapping]]] = ...) -> None: ...

class InterimWord(_message.Message):
    __slots__ = ("word_index", "word", "start_ms", "end_ms", "accuracy", "needs_improvement", "reference_index")
    WORD_INDEX_FIELD_NUMBER: _ClassVar[int]
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    NEEDS_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    word_index: int
    word: str
    start_ms: int
    end_ms: int
    accuracy: float
    needs_improvement: bool
    reference_index: int
    def __init__(self, word_index: _Optional[int] = ..., word: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., accuracy: _Optional[float] = ..., needs_improvement: _Optional[bool] = ..., reference_index: _Optional[int] = ...) -> None: ...

class SentenceScores(_message.Message):
    __slots__ = ("accuracy", "fluency", "prosody", "total", "completeness")
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    FLUENCY_FIELD_NUMBER: _ClassVar[int]
    PROSODY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    fluency: float
    prosody: float
    total: float
    completeness: float
    def __init__(self, accuracy: _Optional[float] = ..., fluency: _Optional[float] = ..., prosody: _Optional[float] = ..., total: _Optional[float] = ..., completeness: _Optional[float] = ...) -> None: ...

class PhoneAssessment(_message.Message):
    __slots__ = ("phone", "start_ms", "end_ms", "goodness", "accuracy", "heard")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    GOODNESS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    HEARD_FIELD_NUMBER: _ClassVar[int]
    phone: str
    start_ms: int
    end_ms: int
    goodness: float
    accuracy: float
    heard: _containers.RepeatedCompositeFieldContainer[HeardPhone]
    def __init__(self, phone: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., goodness: _Optional[float] = ..., accuracy: _Optional[float] = ..., heard: _Optional[_Iterable[_Union[HeardPhone, _Mapping]]] = ...) -> None: ...

class HeardPhone(_message.Message):
    __slots__ = ("phone", "share")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    phone: str
    share: float
    def __init__(self, phone: _Optional[str] = ..., share: _Optional[float] = ...) -> None: ...

class WordAssessment(_message.Message):
    __slots__ = ("word", "start_ms", "end_ms", "accuracy", "stress", "total", "error_type", "needs_improvement", "phones")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    STRESS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    PHONES_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_ms: int
    end_ms: int
    accuracy: float
    stress: float
    total: float
    error_type: WordErrorType
    needs_improvement: bool
    phones: _containers.RepeatedCompositeFieldContainer[PhoneAssessment]
    def __init__(self, word: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., accuracy: _Optional[float] = ..., stress: _Optional[float] = ..., total: _Optional[float] = ..., error_type: _Optional[_Union[WordErrorType, str]] = ..., needs_improvement: _Optional[bool] = ..., phones: _Optional[_Iterable[_Union[PhoneAssessment, _Mapping]]] = ...) -> None: ...

class ProcessingInfo(_message.Message):
    __slots__ = ("latency_ms", "audio_ms", "engine", "model_versions", "scorer")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    latency_ms: float
    audio_ms: int
    engine: str
    model_versions: _containers.ScalarMap[str, str]
    scorer: str
    def __init__(self, latency_ms: _Optional[float] = ..., audio_ms: _Optional[int] = ..., engine: _Optional[str] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., scorer: _Optional[str] = ...) -> None: ...

class UtteranceAssessment(_message.Message):
    __slots__ = ("utterance_index", "start_ms", "end_ms", "cause", "transcript", "reference_text", "scores", "words", "processing")
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_FIELD_NUMBER: _ClassVar[int]
    utterance_index: int
    start_ms: int
    end_ms: int
    cause: EndpointCause
    transcript: str
    reference_text: str
    scores: SentenceScores
    words: _containers.RepeatedCompositeFieldContainer[WordAssessment]
    processing: ProcessingInfo
    def __init__(self, utterance_index: _Optional[int] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., cause: _Optional[_Union[EndpointCause, str]] = ..., transcript: _Optional[str] = ..., reference_text: _Optional[str] = ..., scores: _Optional[_Union[SentenceScores, _Mapping]] = ..., words: _Optional[_Iterable[_Union[WordAssessment, _Mapping]]] = ..., processing: _Optional[_Union[ProcessingInfo, _Mapping]] = ...) -> None: ...

class UtteranceError(_message.Message):
    __slots__ = ("utterance_index", "code", "message")
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    utterance_index: int
    code: str
    message: str
    def __init__(self, utterance_index: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StreamSummary(_message.Message):
    __slots__ = ("utterances", "utterance_errors", "audio_ms", "mean_total")
    UTTERANCES_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_TOTAL_FIELD_NUMBER: _ClassVar[int]
    utterances: int
    utterance_errors: int
    audio_ms: int
    mean_total: float
    def __init__(self, utterances: _Optional[int] = ..., utterance_errors: _Optional[int] = ..., audio_ms: _Optional[int] = ..., mean_total: _Optional[float] = ...) -> None: ...

class StreamAssessResponse(_message.Message):
    __slots__ = ("client_request_id", "speech_event", "interim_result", "utterance", "utterance_error", "summary")
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPEECH_EVENT_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULT_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_ERROR_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    client_request_id: str
    speech_event: SpeechEvent
    interim_result: InterimResult
    utterance: UtteranceAssessment
    utterance_error: UtteranceError
    summary: StreamSummary
    def __init__(self, client_request_id: _Optional[str] = ..., speech_event: _Optional[_Union[SpeechEvent, _Mapping]] = ..., interim_result: _Optional[_Union[InterimResult, _Mapping]] = ..., utterance: _Optional[_Union[UtteranceAssessment, _Mapping]] = ..., utterance_error: _Optional[_Union[UtteranceError, _Mapping]] = ..., summary: _Optional[_Union[StreamSummary, _Mapping]] = ...) -> None: ...

class AssessRequest(_message.Message):
    __slots__ = ("audio", "assessment", "audio_content", "client_request_id")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    ASSESSMENT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    audio: AudioConfig
    assessment: AssessmentConfig
    audio_content: bytes
    client_request_id: str
    def __init__(self, audio: _Optional[_Union[AudioConfig, _Mapping]] = ..., assessment: _Optional[_Union[AssessmentConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ..., client_request_id: _Optional[str] = ...) -> None: ...

class AssessResponse(_message.Message):
    __slots__ = ("client_request_id", "assessment")
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ASSESSMENT_FIELD_NUMBER: _ClassVar[int]
    client_request_id: str
    assessment: UtteranceAssessment
    def __init__(self, client_request_id: _Optional[str] = ..., assessment: _Optional[_Union[UtteranceAssessment, _Mapping]] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_stream_ms", "max_utterance_ms", "max_reference_text_chars", "min_sample_rate_hertz", "max_sample_rate_hertz", "max_audio_channel_count", "max_concurrent_streams")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAM_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_UTTERANCE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_REFERENCE_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    MAX_AUDIO_CHANNEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_stream_ms: int
    max_utterance_ms: int
    max_reference_text_chars: int
    min_sample_rate_hertz: int
    max_sample_rate_hertz: int
    max_audio_channel_count: int
    max_concurrent_streams: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_stream_ms: _Optional[int] = ..., max_utterance_ms: _Optional[int] = ..., max_reference_text_chars: _Optional[int] = ..., min_sample_rate_hertz: _Optional[int] = ..., max_sample_rate_hertz: _Optional[int] = ..., max_audio_channel_count: _Optional[int] = ..., max_concurrent_streams: _Optional[int] = ...) -> None: ...

class EngineInfo(_message.Message):
    __slots__ = ("name", "version", "model_versions", "scorers", "profile", "backend", "features")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SCORERS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    model_versions: _containers.ScalarMap[str, str]
    scorers: _containers.RepeatedScalarFieldContainer[str]
    profile: str
    backend: str
    features: EngineFeatures
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., scorers: _Optional[_Iterable[str]] = ..., profile: _Optional[str] = ..., backend: _Optional[str] = ..., features: _Optional[_Union[EngineFeatures, _Mapping]] = ...) -> None: ...

class EngineFeatures(_message.Message):
    __slots__ = ("interim_words", "phones", "open_mode", "closed_mode", "placeholder_scores", "phone_diagnosis")
    INTERIM_WORDS_FIELD_NUMBER: _ClassVar[int]
    PHONES_FIELD_NUMBER: _ClassVar[int]
    OPEN_MODE_FIELD_NUMBER: _ClassVar[int]
    CLOSED_MODE_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDER_SCORES_FIELD_NUMBER: _ClassVar[int]
    PHONE_DIAGNOSIS_FIELD_NUMBER: _ClassVar[int]
    interim_words: bool
    phones: bool
    open_mode: bool
    closed_mode: bool
    placeholder_scores: bool
    phone_diagnosis: bool
    def __init__(self, interim_words: _Optional[bool] = ..., phones: _Optional[bool] = ..., open_mode: _Optional[bool] = ..., closed_mode: _Optional[bool] = ..., placeholder_scores: _Optional[bool] = ..., phone_diagnosis: _Optional[bool] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("encodings", "language_codes", "limits", "engine")
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    encodings: _containers.RepeatedScalarFieldContainer[AudioEncoding]
    language_codes: _containers.RepeatedScalarFieldContainer[str]
    limits: Limits
    engine: EngineInfo
    def __init__(self, encodings: _Optional[_Iterable[_Union[AudioEncoding, str]]] = ..., language_codes: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., engine: _Optional[_Union[EngineInfo, _Mapping]] = ...) -> None: ...
