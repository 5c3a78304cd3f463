"""The heads' numbers as an assessment: phone accuracy, word error types and flags at the request's
sensitivity, closed mode's omissions and completeness, sentence scores."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from saywell.engine.profiles.neural.alignment import AlignedWord
from saywell.engine.profiles.neural.inputs import HeadInputs, phones_of_words
from saywell.engine.scorers.baseline import MISPRONOUNCED_BELOW
from saywell.engine.scorers.flags import threshold_at
from saywell.engine.types import AssessmentRequest, SentenceScores, UtteranceResult, WordErrorType, WordScore


def empty_result(transcript: str, request: AssessmentRequest, scorer: str,
                 timings_ms: dict[str, float]) -> UtteranceResult:
    """No words to assess (open mode heard none; closed mode's reference had none)."""
    scores = SentenceScores(0.0, 0.0, 0.0, 0.0, 0.0 if request.closed else None)
    return UtteranceResult(transcript, request.reference_text, scores, (), scorer, timings_ms)


def word_score(word: AlignedWord, omitted: bool, scores: np.ndarray, phone_accuracy: np.ndarray, threshold: float,
               frame_ms: float) -> WordScore:
    """The word with the heads' scores, its phones with the phone head's accuracy (0..2). An omitted word's phones
    keep theirs too: zeroing them cost 0.04 phone PCC on validation fold 0 (2026-12-05; a third of those phones
    had the experts' 2)."""
    start_ms, end_ms = int(round(word.start_frame * frame_ms)), int(round(word.end_frame * frame_ms))
    phones = tuple(dataclasses.replace(p, accuracy=float(a)) for p, a in zip(word.phones, phone_accuracy))
    accuracy, stress, total = (float(v) for v in scores)
    if omitted:  # stress keeps its score, as the cpu profile's: the experts rate an unsaid word's stress 10
        return WordScore(word.text, start_ms, end_ms, 0.0, stress, 0.0, WordErrorType.OMISSION, True, phones)
    error = WordErrorType.MISPRONUNCIATION if accuracy < MISPRONOUNCED_BELOW else WordErrorType.NONE
    return WordScore(word.text, start_ms, end_ms, accuracy, stress, total, error, accuracy < threshold, phones)


def scored_result(request: AssessmentRequest, transcript: str, words: Sequence[AlignedWord], inputs: HeadInputs,
                  scores: tuple[np.ndarray, np.ndarray, np.ndarray], flag_thresholds, frame_ms: float, scorer: str,
                  timings_ms: dict[str, float]) -> UtteranceResult:
    """`scores`: the word scores (N, 3) and sentence scores (4,) as served (the heads', blended with the trees'
    when the folder has them) and the phone head's accuracy (P,) of `words`' phones.

    A word is reported omitted when the alignment's rule says so (`inputs.omitted`: the ASR did not hear it and the
    alignment squeezed it or placed it over silence) and its scores agree (accuracy under MISPRONOUNCED_BELOW).
    The rule alone fires on short words said well: at 20 ms frames a word aligned at one frame per phone is
    "squeezed". On validation folds 0 and 4 it marked 80 and 71 words, half of which the experts gave 10, and
    zeroing them all cost 0.10-0.14 closed word accuracy PCC (engine/profiles/neural/README.md, session 15)."""
    word_scores, sentence, phone_scores = scores
    threshold = threshold_at(flag_thresholds, request.flag_sensitivity)
    omitted = [rule and float(s[0]) < MISPRONOUNCED_BELOW for rule, s in zip(inputs.omitted, word_scores)]
    per_word = phones_of_words(phone_scores, inputs.phone_owner, len(words))
    scored = tuple(word_score(w, gone, s, phones, threshold, frame_ms)
                   for w, gone, s, phones in zip(words, omitted, word_scores, per_word))
    completeness = None
    if request.closed:  # the share of reference words said, as the cpu profile reports it
        completeness = 10.0 * (1 - sum(omitted) / len(scored))
    accuracy, fluency, prosody, total = (float(v) for v in sentence)
    return UtteranceResult(transcript, request.reference_text,
                           SentenceScores(accuracy, fluency, prosody, total, completeness), scored, scorer, timings_ms)
