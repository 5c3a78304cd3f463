"""Engine results to wire messages: the only place engine types meet the contract."""
from __future__ import annotations

from saywell.engine.types import EngineInfo, UtteranceResult, WordErrorType, WordScore
from saywell.server.segmenter import EndCause
from saywell.v1 import assessment_pb2 as pb

END_CAUSES = {
    EndCause.SILENCE: pb.ENDPOINT_CAUSE_SILENCE,
    EndCause.MAX_LENGTH: pb.ENDPOINT_CAUSE_MAX_LENGTH,
    EndCause.CLIENT: pb.ENDPOINT_CAUSE_CLIENT_END_OF_UTTERANCE,
    EndCause.END_OF_STREAM: pb.ENDPOINT_CAUSE_END_OF_STREAM,
}
ERROR_TYPES = {
    WordErrorType.NONE: pb.WORD_ERROR_TYPE_NONE,
    WordErrorType.MISPRONUNCIATION: pb.WORD_ERROR_TYPE_MISPRONUNCIATION,
    WordErrorType.OMISSION: pb.WORD_ERROR_TYPE_OMISSION,
    WordErrorType.INSERTION: pb.WORD_ERROR_TYPE_INSERTION,
}


def _round(value: float) -> float:
    return round(float(value), 2)


def word_assessment(word: WordScore, offset_ms: int) -> pb.WordAssessment:
    shift = 0 if word.error_type is WordErrorType.OMISSION else offset_ms
    return pb.WordAssessment(
        word=word.text, start_ms=word.start_ms + shift, end_ms=word.end_ms + shift,
        accuracy=_round(word.accuracy), stress=_round(word.stress), total=_round(word.total),
        error_type=ERROR_TYPES[word.error_type], needs_improvement=word.needs_improvement,
        phones=[pb.PhoneAssessment(phone=p.phone, start_ms=p.start_ms + shift, end_ms=p.end_ms + shift,
                                   goodness=_round(p.goodness), accuracy=_round(p.accuracy),
                                   heard=[pb.HeardPhone(phone=h, share=_round(share)) for h, share in p.heard])
                for p in word.phones])


def utterance_assessment(result: UtteranceResult, *, index: int, start_ms: int, end_ms: int, cause: EndCause,
                         latency_ms: float, engine: str, model_versions: dict[str, str]) -> pb.UtteranceAssessment:
    scores = result.scores
    sentence = pb.SentenceScores(accuracy=_round(scores.accuracy), fluency=_round(scores.fluency),
                                 prosody=_round(scores.prosody), total=_round(scores.total))
    if scores.completeness is not None:
        sentence.completeness = _round(scores.completeness)
    return pb.UtteranceAssessment(
        utterance_index=index, start_ms=start_ms, end_ms=end_ms, cause=END_CAUSES[cause],
        transcript=result.transcript, reference_text=result.reference_text, scores=sentence,
        words=[word_assessment(w, start_ms) for w in result.words],
        processing=pb.ProcessingInfo(latency_ms=round(latency_ms, 1), audio_ms=end_ms - start_ms, engine=engine,
                                     model_versions=model_versions, scorer=result.scorer))


def interim_word(word: WordScore, *, word_index: int, offset_ms: int,
                 reference_index: int | None) -> pb.InterimWord:
    return pb.InterimWord(word_index=word_index, word=word.text, start_ms=word.start_ms + offset_ms,
                          end_ms=word.end_ms + offset_ms, accuracy=_round(word.accuracy),
                          needs_improvement=word.needs_improvement, reference_index=reference_index)


def engine_info(info: EngineInfo) -> pb.EngineInfo:
    c = info.capabilities
    return pb.EngineInfo(name=info.name, version=info.version, model_versions=dict(info.model_versions),
                         scorers=list(info.scorers), profile=info.profile, backend=info.backend,
                         features=pb.EngineFeatures(interim_words=c.interim_words, phones=c.phones,
                                                    open_mode=c.open_mode, closed_mode=c.closed_mode,
                                                    placeholder_scores=not c.assessment,
                                                    phone_diagnosis=c.phone_diagnosis))
