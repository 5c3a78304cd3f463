"""The CLI's output: the one client module that writes to stdout and stderr.

It receives responses as they arrive and prints them (human mode) or collects
them and prints one JSON document at the end (JSON mode, so stdout stays parseable).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TextIO

from saywell.client import render
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

    live: also print speech events and interim word results as they arrive (to
    stderr in JSON mode).
    """

    json_mode: bool = False
    phones: bool = False
    color: bool = False
    live: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    utterances: list[pb.UtteranceAssessment] = field(default_factory=list)
    errors: list[pb.UtteranceError] = field(default_factory=list)
    summary: pb.StreamSummary | None = None

    def _live(self, text: str) -> None:
        if self.live:
            print(text, file=self.err if self.json_mode else self.out, flush=True)

    def _human(self, text: str) -> None:
        if not self.json_mode:
            print(text, file=self.out, flush=True)

    def on_response(self, response: pb.StreamAssessResponse) -> None:
        kind = response.WhichOneof("event")
        live_color = self.color and not self.json_mode
        if kind == "speech_event":
            self._live(render.format_speech_event(response.speech_event, color=live_color))
        elif kind == "word_result":
            self._live(render.format_word_result(response.word_result, color=live_color))
        elif kind == "utterance":
            self.utterances.append(response.utterance)
            self._human(render.format_utterance(response.utterance, color=self.color, phones=self.phones) + "\n")
        elif kind == "utterance_error":
            self.errors.append(response.utterance_error)
            self._human(render.format_utterance_error(response.utterance_error, color=self.color))
        elif kind == "summary":
            self.summary = response.summary

    def on_assess(self, response: pb.AssessResponse) -> None:
        self.on_response(pb.StreamAssessResponse(utterance=response.assessment))

    def finish(self) -> None:
        if self.json_mode:
            print(render.json_report(self.utterances, self.summary, self.errors), file=self.out)
            return
        summary = self.summary or render.summarize(self.utterances, len(self.errors))
        print(render.format_summary(summary, color=self.color), file=self.out)

    def capabilities(self, caps: pb.Capabilities) -> None:
        if self.json_mode:
            print(json.dumps(render.message_dict(caps), indent=2), file=self.out)
        else:
            print(render.format_capabilities(caps), file=self.out)
