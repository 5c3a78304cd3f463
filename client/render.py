"""Turn assessment messages into text: coloured human-readable lines or JSON.

Pure formatting: functions return strings and never write; the CLI's output
module decides where text goes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import TextIO

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from saywell.v1 import assessment_pb2 as pb

__all__ = [
    "use_color",
    "score_color",
    "format_utterance",
    "format_hypothesis",
    "format_speech_event",
    "format_utterance_error",
    "format_summary",
    "format_capabilities",
    "message_dict",
    "json_report",
    "summarize",
]

GREEN, YELLOW, RED = "32", "33", "31"
BOLD, DIM, UNDERLINE, STRIKE = "1", "2", "4", "9"
FLAG = "⚑"  # marks a word that needs improvement, with or without colour


def use_color(stream: TextIO, no_color: bool = False) -> bool:
    """Colour only on a terminal, unless --no-color or NO_COLOR (https://no-color.org)."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _paint(text: str, color: bool, *codes: str) -> str:
    if not color or not codes:
        return text
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"


def score_color(score: float) -> str:
    """ANSI colour of a 0..10 score: green >= 8, yellow 5..8, red < 5."""
    if score >= 8.0:
        return GREEN
    return YELLOW if score >= 5.0 else RED


def _span(start_ms: int, end_ms: int) -> str:
    return f"{start_ms / 1000:.2f}–{end_ms / 1000:.2f}s"


def _cause(cause: int) -> str:
    name = pb.EndpointCause.Name(cause) if cause in pb.EndpointCause.values() else str(cause)
    return name.removeprefix("ENDPOINT_CAUSE_").lower().replace("_", " ")


def format_utterance(u: pb.UtteranceAssessment, *, color: bool = False, phones: bool = False) -> str:
    """A header with the sentence scores, then one line per word (and phone)."""
    lines = [
        _paint(f"Utterance {u.utterance_index + 1}", color, BOLD)
        + f"  {_span(u.start_ms, u.end_ms)}  ({_cause(u.cause)})"
    ]
    if u.reference_text:
        lines.append(f"  reference: {u.reference_text}")
    lines.append(f"  heard:     {u.transcript}")
    s = u.scores
    parts = [("accuracy", s.accuracy), ("fluency", s.fluency), ("prosody", s.prosody)]
    if s.HasField("completeness"):
        parts.append(("completeness", s.completeness))
    parts.append(("total", s.total))
    lines.append("  " + "  ".join(f"{name} " + _paint(f"{v:.1f}", color, score_color(v)) for name, v in parts))
    width = max((len(w.word) for w in u.words), default=0) + 4
    for w in u.words:
        lines.append("  " + _format_word(w, color, width))
        if phones:
            lines.extend("      " + _format_phone(p, color) for p in w.phones)
    return "\n".join(lines)


def _format_word(w: pb.WordAssessment, color: bool, width: int) -> str:
    if w.error_type == pb.WORD_ERROR_TYPE_OMISSION:
        text = f"[{w.word}]"
        return _paint(text, color, DIM, STRIKE) + " " * (width - len(text)) + "(omitted)"
    text = f"+{w.word}" if w.error_type == pb.WORD_ERROR_TYPE_INSERTION else w.word
    codes = (RED, UNDERLINE) if w.needs_improvement else (score_color(w.accuracy),)
    notes = []
    if w.error_type == pb.WORD_ERROR_TYPE_INSERTION:
        notes.append("(inserted)")
    elif w.error_type == pb.WORD_ERROR_TYPE_MISPRONUNCIATION:
        notes.append("(mispronounced)")
    if w.needs_improvement:
        notes.append(_paint(f"{FLAG} needs work", color, RED))
        said = [d for d in (diagnosis(p) for p in w.phones) if d]
        if said:
            notes.append("(" + "; ".join(said[:2]) + ")")
    return (
        _paint(text, color, *codes)
        + " " * (width - len(text))
        + f"{_span(w.start_ms, w.end_ms):>13}  acc {w.accuracy:4.1f}  stress {w.stress:4.1f}  total {w.total:4.1f}  "
        + " ".join(notes)
    ).rstrip()


def diagnosis(p: pb.PhoneAssessment) -> str:
    """What was heard instead of a phone scored below 1 (of 2): "said S, not TH", "TH left out"; else ""."""
    if p.accuracy >= 1.0 or not p.heard or p.heard[0].phone == p.phone:
        return ""
    if p.heard[0].phone == "SIL":
        return f"{p.phone} left out"
    return f"said {p.heard[0].phone}, not {p.phone}"


def _format_phone(p: pb.PhoneAssessment, color: bool) -> str:
    acc = _paint(f"{p.accuracy:.1f}", color, score_color(p.accuracy * 5.0))  # 0..2 onto 0..10
    said = diagnosis(p)
    return (f"{p.phone:<3} {_span(p.start_ms, p.end_ms):>13}  goodness {p.goodness:6.2f}  acc {acc}"
            + (f"  {_paint(said, color, RED)}" if said else ""))


def format_hypothesis(utterance_index: int, stable: Sequence[pb.InterimWord], provisional: Sequence[pb.InterimWord],
                      *, color: bool = False, width: int = 0) -> str:
    """One live line: the utterance's stable words, coloured by score and flagged, then the provisional tail
    (dim, ending in "…"). With `width`, leading words are left out so the line fits."""
    words = [(w, True) for w in stable] + [(w, False) for w in provisional]
    prefix = f"  · u{utterance_index + 1} "
    tail = " …" if provisional else ""

    def plain(w: pb.InterimWord) -> str:
        return w.word + (FLAG if w.needs_improvement else "")

    if width:
        while len(words) > 1 and len(prefix) + 2 + sum(len(plain(w)) + 1 for w, _ in words) + len(tail) > width:
            words.pop(0)
    lead = "… " if len(words) < len(stable) + len(provisional) else ""

    def paint(w: pb.InterimWord, is_stable: bool) -> str:
        if not is_stable:
            return _paint(plain(w), color, DIM)
        flag = _paint(FLAG, color, RED) if w.needs_improvement else ""
        return _paint(w.word, color, score_color(w.accuracy)) + flag

    return prefix + lead + " ".join(paint(w, is_stable) for w, is_stable in words) + _paint(tail, color, DIM)


def format_speech_event(e: pb.SpeechEvent, *, color: bool = False) -> str:
    kind = "speech started" if e.type == pb.SPEECH_EVENT_TYPE_STARTED else "speech ended"
    cause = f" ({_cause(e.cause)})" if e.type == pb.SPEECH_EVENT_TYPE_ENDED else ""
    return _paint(f"  [{kind} u{e.utterance_index + 1} at {e.offset_ms / 1000:.2f}s{cause}]", color, DIM)


def format_utterance_error(e: pb.UtteranceError, *, color: bool = False) -> str:
    return _paint(f"Utterance {e.utterance_index + 1} failed: {e.code}: {e.message}", color, RED)


def format_summary(s: pb.StreamSummary, *, color: bool = False) -> str:
    failed = f", {s.utterance_errors} failed" if s.utterance_errors else ""
    mean = _paint(f"{s.mean_total:.1f}", color, score_color(s.mean_total))
    return f"{s.utterances} utterance(s){failed}, {s.audio_ms / 1000:.2f}s of audio, mean total {mean}"


def format_capabilities(c: pb.Capabilities) -> str:
    lim = c.limits
    lines = [
        f"engine:     {c.engine.name} {c.engine.version}".rstrip(),
        f"profile:    {c.engine.profile or 'cpu'} on {c.engine.backend or 'local'}"
        + (" (placeholder scores: not an assessment)" if c.engine.features.placeholder_scores else ""),
        "features:   " + (", ".join(name for name in ("interim_words", "phones", "phone_diagnosis", "open_mode", "closed_mode")
                                   if getattr(c.engine.features, name)) or "-"),
        "encodings:  " + ", ".join(pb.AudioEncoding.Name(e).removeprefix("AUDIO_ENCODING_") for e in c.encodings),
        "languages:  " + ", ".join(c.language_codes),
        "scorers:    " + ", ".join(c.engine.scorers),
        f"limits:     {lim.min_sample_rate_hertz}..{lim.max_sample_rate_hertz} Hz, "
        f"<= {lim.max_audio_channel_count} channels, utterance <= {lim.max_utterance_ms} ms, "
        f"stream <= {lim.max_stream_ms} ms, message <= {lim.max_message_bytes} B, "
        f"reference <= {lim.max_reference_text_chars} chars, {lim.max_concurrent_streams} streams",
    ]
    lines.extend(f"model:      {name} {version}" for name, version in sorted(c.engine.model_versions.items()))
    return "\n".join(lines)


_INT64_TYPES = (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64)


# Score fields and their factor onto 0..100: sentence and word scores are 0..10, phone accuracy 0..2.
_SCORE_FIELDS = {
    "saywell.v1.SentenceScores": {"accuracy": 10, "fluency": 10, "prosody": 10, "total": 10, "completeness": 10},
    "saywell.v1.WordAssessment": {"accuracy": 10, "stress": 10, "total": 10},
    "saywell.v1.PhoneAssessment": {"accuracy": 50},
    "saywell.v1.InterimWord": {"accuracy": 10},
    "saywell.v1.StreamSummary": {"mean_total": 10},
}


def on_100_scale(message: Message) -> Message:
    """A copy of `message` with every score in it (however deep) on 0..100 instead of the corpus's scales."""
    scaled = type(message)()
    scaled.CopyFrom(message)
    _scale(scaled)
    return scaled


def _scale(message: Message) -> None:
    factors = _SCORE_FIELDS.get(message.DESCRIPTOR.full_name, {})
    for field, value in message.ListFields():
        if field.name in factors:
            setattr(message, field.name, round(value * factors[field.name], 1))
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in (value if field.is_repeated else [value]):
                _scale(item)


def message_dict(message: Message) -> dict:
    """A message as a JSON-ready dict, with proto field names and zero scores kept. 64-bit integers (times in ms,
    counts) stay numbers: proto3's JSON mapping writes them as strings, which no chatbot backend wants."""
    data = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    _int64_as_numbers(message.DESCRIPTOR, data)
    return data


def _int64_as_numbers(descriptor, data: dict) -> None:
    for field in descriptor.fields:
        value = data.get(field.name)
        if value is None:
            continue
        if field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in (value if isinstance(value, list) else [value]):
                _int64_as_numbers(field.message_type, item)
        elif field.type in _INT64_TYPES:
            data[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)


def summarize(utterances: Sequence[pb.UtteranceAssessment], errors: int = 0) -> pb.StreamSummary:
    """A StreamSummary for results that came without one (the unary Assess RPC)."""
    totals = [u.scores.total for u in utterances]
    return pb.StreamSummary(
        utterances=len(utterances),
        utterance_errors=errors,
        audio_ms=sum(u.processing.audio_ms for u in utterances),
        mean_total=sum(totals) / len(totals) if totals else 0.0,
    )


def json_report(
    utterances: Iterable[pb.UtteranceAssessment],
    summary: pb.StreamSummary | None,
    errors: Iterable[pb.UtteranceError] = (),
) -> str:
    """{"utterances": [...], "errors": [...], "summary": {...}}, pretty-printed."""
    utts, errs = list(utterances), list(errors)
    report = {
        "utterances": [message_dict(u) for u in utts],
        "errors": [message_dict(e) for e in errs],
        "summary": message_dict(summary if summary is not None else summarize(utts, len(errs))),
    }
    return json.dumps(report, indent=2, ensure_ascii=False)
