"""The assessment the model writes: one JSON object, its schema, the canonical text a training target is, and
the strict parser every generation goes through.

    {"scores":{"accuracy":8,"fluency":9,"prosody":8,"total":8,"completeness":10},
     "words":[{"text":"we","accuracy":10,"stress":10,"total":10,"error":"none",
               "phones":[["W",2],["IY",1.5,"IH"]]}]}

Sentence and word scores are integers on 0..10 (speechocean762's scales), phone scores 0..2 in steps of 0.1.
A phone is `[canonical, score]` or `[canonical, score, heard]`, heard being the phone the model says was said
instead (`SIL`: nothing). `completeness` is there in closed mode only; closed mode's words are the reference
words in order, so `omission` is a closed-mode error. Keys come in this order, without spaces: constrained
decoding (constrained.py) writes exactly this text, and training targets are rendered with `render_target`.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from saywell.engine.types import EngineError, WordErrorType

SENTENCE_KEYS = ("accuracy", "fluency", "prosody", "total")  # + "completeness" in closed mode
WORD_KEYS = ("accuracy", "stress", "total")
SCORE_MAX, PHONE_MAX = 10.0, 2.0
SCORE_VALUES = tuple(str(v) for v in range(11))  # what constrained decoding lets the model write
PHONE_VALUES = tuple(f"{v / 10:g}" for v in range(21))
PHONES = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
          "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z",
          "ZH")
HEARD = PHONES + ("SIL",)
ERRORS = ("none", "mispronunciation", "omission")
OPEN_ERRORS = ("none", "mispronunciation")  # open mode assesses the words said: nothing can be omitted
WORD_RE = re.compile(r"[a-z']{1,24}")
# The schema's fixed strings: a tokenizer that has them as whole tokens writes an assessment in fewer steps.
SCHEMA_TOKENS = ('{"scores":{"accuracy":', ',"fluency":', ',"prosody":', ',"total":', ',"completeness":',
                 '},"words":[', '{"text":"', ',{"text":"', '","accuracy":', ',"stress":', ',"error":"',
                 '","phones":[', '["', '",', ',"', '"]', ']}', ',[')


def assessment_schema(closed: bool) -> dict:
    """The JSON Schema (draft 2020-12) of one mode's assessment, for documentation and external validators."""
    number = {"type": "integer", "minimum": 0, "maximum": 10}
    keys = SENTENCE_KEYS + (("completeness",) if closed else ())
    phone = {"type": "array", "prefixItems": [{"enum": list(PHONES)}, {"type": "number", "minimum": 0, "maximum": 2},
                                              {"enum": list(HEARD)}], "minItems": 2, "maxItems": 3}
    word = {"type": "object", "additionalProperties": False,
            "required": ["text", *WORD_KEYS, "error", "phones"],
            "properties": {"text": {"type": "string", "pattern": "^[a-z']{1,24}$"},
                           **{k: number for k in WORD_KEYS},
                           "error": {"enum": list(ERRORS if closed else OPEN_ERRORS)},
                           "phones": {"type": "array", "items": phone}}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "additionalProperties": False, "required": ["scores", "words"],
            "properties": {"scores": {"type": "object", "additionalProperties": False, "required": list(keys),
                                      "properties": {k: number for k in keys}},
                           "words": {"type": "array", "items": word}}}


class AssessmentFormatError(EngineError):
    """The model's output is not an assessment in the schema: the utterance fails rather than get made-up
    scores (the server answers `utterance_error`)."""


@dataclass(frozen=True)
class ParsedPhone:
    phone: str
    score: float  # 0..2
    heard: str | None  # the model's diagnosis, when it gave one


@dataclass(frozen=True)
class ParsedWord:
    text: str
    accuracy: float
    stress: float
    total: float
    error: WordErrorType
    phones: tuple[ParsedPhone, ...]


@dataclass(frozen=True)
class ParsedAssessment:
    scores: Mapping[str, float]  # SENTENCE_KEYS (+ completeness in closed mode), 0..10
    words: tuple[ParsedWord, ...]


def format_score(value: float) -> str:
    return str(int(round(min(max(float(value), 0.0), SCORE_MAX))))


def format_phone(value: float) -> str:
    return f"{round(min(max(float(value), 0.0), PHONE_MAX), 1):g}"


def render_target(scores: Mapping[str, float], words: Sequence[tuple[str, Sequence[float], str,
                                                                     Sequence[tuple[str, float, str | None]]]],
                  closed: bool) -> str:
    """The canonical text of an assessment: `words` as (text, (accuracy, stress, total), error, phones), each
    phone (canonical, score, heard or None). Training targets are this text."""
    keys = SENTENCE_KEYS + (("completeness",) if closed else ())
    head = "{\"scores\":{" + ",".join(f'"{k}":{format_score(scores[k])}' for k in keys) + "},\"words\":["
    rendered = []
    for text, (accuracy, stress, total), error, phones in words:
        cells = ",".join(f'["{p}",{format_phone(s)}' + (f',"{h}"' if h else "") + "]" for p, s, h in phones)
        rendered.append(f'{{"text":"{text}","accuracy":{format_score(accuracy)},"stress":{format_score(stress)},'
                        f'"total":{format_score(total)},"error":"{error}","phones":[{cells}]}}')
    return head + ",".join(rendered) + "]}"


def _number(value, scale: float, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AssessmentFormatError(f"{where} is {value!r}, not a number")
    return min(max(float(value), 0.0), scale)  # clamped to the documented scale


def _object(value, keys: Sequence[str], where: str) -> dict:
    if not isinstance(value, dict):
        raise AssessmentFormatError(f"{where} is not an object")
    if set(value) != set(keys):
        raise AssessmentFormatError(f"{where} has keys {sorted(value)}; the schema wants {sorted(keys)}")
    return value


def parse_assessment(text: str, reference: Sequence[str] | None) -> ParsedAssessment:
    """The assessment in `text` (closed mode: `reference` are the normalised reference words), numbers clamped
    to their scales. Anything else — not JSON, a missing or extra key, a word or phone or error type outside
    the schema, closed-mode words that are not the reference — raises AssessmentFormatError."""
    closed = reference is not None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise AssessmentFormatError(f"the model's output is not JSON ({exc.msg if hasattr(exc, 'msg') else exc}): "
                                    f"{text[:80]!r}") from None
    data = _object(data, ("scores", "words"), "the assessment")
    keys = SENTENCE_KEYS + (("completeness",) if closed else ())
    scores = {k: _number(v, SCORE_MAX, f"scores.{k}") for k, v in _object(data["scores"], keys, "scores").items()}
    if not isinstance(data["words"], list):
        raise AssessmentFormatError("words is not a list")
    words = tuple(_word(w, i, closed) for i, w in enumerate(data["words"]))
    if closed and [w.text for w in words] != list(reference):
        raise AssessmentFormatError(f"closed mode: the model assessed {len(words)} words that are not the "
                                    f"{len(reference)} reference words in order")
    return ParsedAssessment(scores, words)


def _word(value, index: int, closed: bool) -> ParsedWord:
    where = f"words[{index}]"
    word = _object(value, ("text",) + WORD_KEYS + ("error", "phones"), where)
    if not isinstance(word["text"], str) or not WORD_RE.fullmatch(word["text"]):
        raise AssessmentFormatError(f"{where}.text {word['text']!r} is not a lower-case word")
    if word["error"] not in (ERRORS if closed else OPEN_ERRORS):
        raise AssessmentFormatError(f"{where}.error {word['error']!r} is not an error type of this mode")
    if not isinstance(word["phones"], list):
        raise AssessmentFormatError(f"{where}.phones is not a list")
    phones = []
    for k, cell in enumerate(word["phones"]):
        at = f"{where}.phones[{k}]"
        if not isinstance(cell, list) or len(cell) not in (2, 3) or cell[0] not in PHONES:
            raise AssessmentFormatError(f"{at} is not [phone, score] or [phone, score, heard]")
        heard = cell[2] if len(cell) == 3 else None
        if heard is not None and heard not in HEARD:
            raise AssessmentFormatError(f"{at}: heard {heard!r} is not a phone")
        phones.append(ParsedPhone(cell[0], _number(cell[1], PHONE_MAX, at), heard))
    return ParsedWord(word["text"], *(_number(word[k], SCORE_MAX, f"{where}.{k}") for k in WORD_KEYS),
                      WordErrorType(word["error"]), tuple(phones))
