"""The CLI's output: the one client module that writes to stdout and stderr.

It receives responses as they arrive and prints them (human mode) or collects
them and prints one JSON document at the end (JSON mode, so stdout stays parseable).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from typing import TextIO

from saywell.client import render
from saywell.client.live import LiveHypothesis
from saywell.v1 import assessment_pb2 as pb

__all__ = ["ConsoleOutput", "print_error"]


def print_error(message: str, cause: str = "", err: TextIO | None = None) -> None:
    """`error: <message>` on stderr, with an indented cause line when given."""
    stream = err or sys.stderr
    print(f"error: {message}", file=stream)
    if cause:
        print(f"  ({cause})", file=stream)


@dataclass
class ConsoleOutput:
    """Prints one assess run.

    live: also print speech events and the live hypothesis as they arrive (to
    stderr in JSON mode). On a terminal the hypothesis line is redrawn in place;
    elsewhere each update is a line of its own.
    """

    json_mode: bool = False
    events: bool = False  # NDJSON: every response on stdout as it arrives, one JSON object a line
    scale: int = 10  # 100: scores in JSON and events on 0..100 (the text view keeps the corpus's 0..10)
    phones: bool = False
    color: bool = False
    live: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    utterances: list[pb.UtteranceAssessment] = field(default_factory=list)
    errors: list[pb.UtteranceError] = field(default_factory=list)
    summary: pb.StreamSummary | None = None
    hypotheses: LiveHypothesis = field(default_factory=LiveHypothesis)
    _redrawing: int = 0  # the length of a hypothesis line on the terminal without its newline (0: none)

    @property
    def _live_stream(self) -> TextIO:
        return self.err if self.json_mode else self.out

    def _in_place(self) -> bool:
        isatty = getattr(self._live_stream, "isatty", None)
        return bool(isatty and isatty())

    def _clear(self) -> str:
        """Back to the start of the hypothesis line, blanking it (with spaces when escape codes are unwanted)."""
        if not self._redrawing:
            return "\r"
        return "\r\x1b[K" if self.color else "\r" + " " * self._redrawing + "\r"

    def _end_redraw(self) -> None:
        if self._redrawing:
            self._live_stream.write(self._clear())
            self._redrawing = 0

    def _live(self, text: str) -> None:
        if self.live:
            self._end_redraw()
            print(text, file=self._live_stream, flush=True)

    def _live_hypothesis(self, index: int, stable, provisional) -> None:
        if not self.live:
            return
        if not self._in_place():
            print(render.format_hypothesis(index, stable, provisional, color=False), file=self._live_stream,
                  flush=True)
            return
        width = shutil.get_terminal_size().columns - 1
        color = self.color and not self.json_mode
        line = render.format_hypothesis(index, stable, provisional, color=color, width=width)
        self._live_stream.write(self._clear() + line)
        self._live_stream.flush()
        self._redrawing = max(1, len(render.format_hypothesis(index, stable, provisional, width=width)))

    def _human(self, text: str) -> None:
        if not self.json_mode:
            self._end_redraw()
            print(text, file=self.out, flush=True)

    def on_response(self, response: pb.StreamAssessResponse) -> None:
        if self.events:
            if self.scale == 100:
                response = render.on_100_scale(response)
            print(json.dumps(render.message_dict(response), separators=(",", ":")), file=self.out, flush=True)
            return
        kind = response.WhichOneof("event")
        live_color = self.color and not self.json_mode
        if kind == "speech_event":
            self._live(render.format_speech_event(response.speech_event, color=live_color))
        elif kind == "interim_result":
            hypothesis = self.hypotheses.on_response(response)
            self._live_hypothesis(response.interim_result.utterance_index, hypothesis.stable, hypothesis.provisional)
        elif kind == "utterance":
            self.hypotheses.on_response(response)
            self.utterances.append(response.utterance)
            self._human(render.format_utterance(response.utterance, color=self.color, phones=self.phones) + "\n")
        elif kind == "utterance_error":
            self.hypotheses.on_response(response)
            self.errors.append(response.utterance_error)
            self._human(render.format_utterance_error(response.utterance_error, color=self.color))
        elif kind == "summary":
            self.summary = response.summary

    def on_assess(self, response: pb.AssessResponse) -> None:
        self.on_response(pb.StreamAssessResponse(utterance=response.assessment))

    def finish(self) -> None:
        self._end_redraw()
        if self.events:
            return
        if self.json_mode:
            utterances, summary = self.utterances, self.summary or render.summarize(self.utterances, len(self.errors))
            if self.scale == 100:
                utterances, summary = [render.on_100_scale(u) for u in utterances], render.on_100_scale(summary)
            print(render.json_report(utterances, summary, self.errors), file=self.out)
            return
        summary = self.summary or render.summarize(self.utterances, len(self.errors))
        print(render.format_summary(summary, color=self.color), file=self.out)

    def capabilities(self, caps: pb.Capabilities) -> None:
        if self.json_mode:
            print(json.dumps(render.message_dict(caps), indent=2), file=self.out)
        else:
            print(render.format_capabilities(caps), file=self.out)
