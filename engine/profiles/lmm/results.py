"""A parsed assessment as the engine's result types.

The model gives no times: words are laid out evenly over the utterance in their order, and phones evenly over
their word, so clients that draw words on a time line keep their order (the times are placeholders, README.md
says so). It gives no GOP either: `goodness` is 0. `heard` is the model's one diagnosis with the whole span
(share 1.0), or empty when it gave none.
"""
from __future__ import annotations

from saywell.engine.profiles.lmm.schema import ParsedAssessment
from saywell.engine.scorers.flags import threshold_at
from saywell.engine.types import (AssessmentRequest, PhoneScore, SentenceScores, UtteranceResult, WordErrorType,
                                  WordScore)

# Word accuracy under which a word is flagged, by flag_sensitivity: not fitted on data (the cpu and neural
# profiles fit theirs); a word with an error type is always flagged.
FLAG_THRESHOLDS = ((0.0, 3.0), (0.5, 5.0), (1.0, 7.0))


def utterance_result(request: AssessmentRequest, parsed: ParsedAssessment, scorer: str,
                     timings_ms: dict[str, float]) -> UtteranceResult:
    duration_ms = max(request.duration_ms, 1)
    count = len(parsed.words)
    threshold = threshold_at(FLAG_THRESHOLDS, request.flag_sensitivity)
    words = []
    for i, word in enumerate(parsed.words):
        start, end = i * duration_ms // count, max((i + 1) * duration_ms // count, i * duration_ms // count + 1)
        phones = []
        for k, phone in enumerate(word.phones):
            span = end - start
            p_start = start + k * span // len(word.phones)
            p_end = max(start + (k + 1) * span // len(word.phones), p_start + 1)
            phones.append(PhoneScore(phone.phone, p_start, p_end, 0.0, phone.score,
                                     ((phone.heard, 1.0),) if phone.heard else ()))
        flagged = word.error is not WordErrorType.NONE or word.accuracy < threshold
        words.append(WordScore(word.text, start, end, word.accuracy, word.stress, word.total, word.error, flagged,
                               tuple(phones)))
    s = parsed.scores
    scores = SentenceScores(s["accuracy"], s["fluency"], s["prosody"], s["total"], s.get("completeness"))
    said = " ".join(w.text for w in parsed.words if w.error is not WordErrorType.OMISSION)
    return UtteranceResult(said, request.reference_text, scores, tuple(words), scorer, timings_ms)
