"""The live hypothesis of the utterance in progress: which words are stable, which are the provisional tail.

A stable (committed) word is never resent or withdrawn before the utterance's assessment. Words become stable
when two successive decodes agree on them and they end clear of the live edge, or when a segment analysed at a
cut holds them. Every update carries the whole provisional tail after the stable words (see InterimResult in
the proto for the client's rule).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from saywell.engine.types import WordScore

COMMIT_MARGIN_MS = 400  # a word this close to the live edge may still grow or change
INTERIM_CONTEXT_MS = 500  # audio before the first uncommitted word that an interim decode still hears


@dataclass
class InterimState:
    """Word results sent for the open utterance.

    Interim decodes cover only the audio after the committed words (plus INTERIM_CONTEXT_MS before them), so
    their cost stays flat however long the learner talks.
    """

    utterance_index: int
    committed: int = 0  # words sent as stable
    stable_texts: list[str] = field(default_factory=list)  # their texts (closed mode matches them to the reference)
    provisional: list[WordScore] = field(default_factory=list)  # the provisional tail as last sent
    committed_end_ms: int = 0  # where the last committed word ends, from the utterance start
    previous: list[str] = field(default_factory=list)  # uncommitted words of the last decode
    decoded_ms: int = 0
    decoded_in_pause: bool = False  # the learner's current pause has had its decode

    def window_start_ms(self) -> int:
        return max(0, self.committed_end_ms - INTERIM_CONTEXT_MS)

    def after_committed(self, words: list[WordScore]) -> list[WordScore]:
        """The words of a decode that lie after the committed ones (by their middle)."""
        return [w for w in words if (w.start_ms + w.end_ms) / 2 > self.committed_end_ms]

    def agreed(self, tail: list[WordScore], audio_ms: int) -> int:
        """How many leading words of `tail` (a decode's words after the committed ones) to commit now: those
        the previous decode also heard, ending at least COMMIT_MARGIN_MS before the live edge."""
        stable = 0
        while (stable < min(len(tail), len(self.previous)) and tail[stable].text == self.previous[stable]
               and tail[stable].end_ms < audio_ms - COMMIT_MARGIN_MS):
            stable += 1
        return stable

    def settled(self, tail: list[WordScore], audio_ms: int) -> int:
        """How many leading words of `tail` end at least COMMIT_MARGIN_MS before the live edge."""
        return sum(1 for w in tail if w.end_ms < audio_ms - COMMIT_MARGIN_MS)

    def commit_decoded(self, tail: list[WordScore], stable: int) -> None:
        """Record a decode as sent: its first `stable` words are now committed, the rest are the provisional
        tail and wait for the next decode."""
        if stable:
            self.committed += stable
            self.committed_end_ms = tail[stable - 1].end_ms
            self.stable_texts += [w.text for w in tail[:stable]]
        self.provisional = list(tail[stable:])
        self.previous = [w.text for w in self.provisional]

    def tail_after(self, end_ms: int) -> list[WordScore]:
        """The provisional words last sent that lie after `end_ms` (by their middle)."""
        return [w for w in self.provisional if (w.start_ms + w.end_ms) / 2 > end_ms]

    def commit_segment(self, words: list[WordScore], segment_end_ms: int) -> None:
        """A segment's words were sent as committed, with the provisional words after its end as the tail;
        everything before its end is settled."""
        self.committed += len(words)
        self.stable_texts += [w.text for w in words]
        self.committed_end_ms = max(self.committed_end_ms, segment_end_ms)
        self.provisional = self.tail_after(segment_end_ms)
        self.previous = []
