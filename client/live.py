"""The live hypothesis of each utterance, kept by the rule the contract documents (InterimResult in the proto).

Per utterance: a list of stable words, to which each InterimResult appends its `stable_words`, and a provisional
tail, which each InterimResult replaces with its `provisional_words`. What to show is stable + tail, until the
utterance's final assessment (or error) replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saywell.v1 import assessment_pb2 as pb

__all__ = ["LiveHypothesis", "UtteranceHypothesis"]


@dataclass
class UtteranceHypothesis:
    stable: list[pb.InterimWord] = field(default_factory=list)
    provisional: list[pb.InterimWord] = field(default_factory=list)

    @property
    def words(self) -> list[pb.InterimWord]:
        return self.stable + self.provisional

    def text(self) -> str:
        return " ".join(w.word for w in self.words)


class LiveHypothesis:
    """Applies InterimResults; `words(index)` is what a client should show for an utterance in progress."""

    def __init__(self) -> None:
        self._open: dict[int, UtteranceHypothesis] = {}

    def apply(self, result: pb.InterimResult) -> UtteranceHypothesis:
        hypothesis = self._open.setdefault(result.utterance_index, UtteranceHypothesis())
        hypothesis.stable.extend(result.stable_words)
        hypothesis.provisional = list(result.provisional_words)
        return hypothesis

    def words(self, utterance_index: int) -> list[pb.InterimWord]:
        hypothesis = self._open.get(utterance_index)
        return hypothesis.words if hypothesis else []

    def close(self, utterance_index: int) -> UtteranceHypothesis | None:
        """The utterance's final assessment (or error) arrived: its live view is superseded."""
        return self._open.pop(utterance_index, None)

    def on_response(self, response: pb.StreamAssessResponse) -> UtteranceHypothesis | None:
        """Feed every response of a stream; returns the hypothesis an InterimResult changed, else None."""
        kind = response.WhichOneof("event")
        if kind == "interim_result":
            return self.apply(response.interim_result)
        if kind == "utterance":
            self.close(response.utterance.utterance_index)
        elif kind == "utterance_error":
            self.close(response.utterance_error.utterance_index)
        return None
