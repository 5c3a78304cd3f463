"""Constrained decoding: the model writes the assessment's numbers, error types, diagnoses and (open mode) words;
the schema's punctuation, keys and canonical phones are forced. So every generation that runs to its end is an
assessment in the schema, whatever the weights (a tiny random model included), and a fine-tuned model that
learned the format loses nothing: the forced tokens are the ones it would have written.

The schema is a program (`assessment_program`) that yields slots: a `Choice` among whole strings (compiled to
a trie of their token ids; the model picks greedily token by token among the trie's branches) or a `FreeWord`
(any tokens spelling a lower-case word, then a fixed suffix). One `SchemaWalker` per row follows its program
through the tokens generated; `SchemaLogitsProcessor` masks each row's logits to what its walker allows, so one
`generate` call serves a whole batch.
"""
from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import torch

from saywell.engine.profiles.lmm.schema import (ERRORS, HEARD, OPEN_ERRORS, PHONE_VALUES, SCORE_VALUES,
                                                SENTENCE_KEYS, WORD_KEYS, WORD_RE)

WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz'")
MAX_WORD_CHARS = 24
# Tokens one more open-mode word may take at most: its letters, keys and scores, and ~24 phones of ~10 tokens
# (a tokenizer that spells the schema character by character needs more: raise max_new_tokens for it).
WORD_RESERVE = 320


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]  # no option's token ids may be a prefix of another's


@dataclass(frozen=True)
class FreeWord:
    suffix: str  # the fixed text after the word; its first character is no word character


Program = Generator["Choice | FreeWord", "int | str", None]


def _literal(text: str) -> Program:
    yield Choice((text,))


def _choose(values: Sequence[str], suffixes: Sequence[str]) -> Program:
    """One of `values` followed by one of `suffixes` (which start with characters no value has, so options are
    prefix-free); returns (value, suffix)."""
    index = yield Choice(tuple(v + s for s in suffixes for v in values))
    return values[index % len(values)], suffixes[index // len(values)]


def _word_body(errors: Sequence[str], phones: Sequence[str]) -> Program:
    """A word object after its text: scores, error type, phones (their canonical names forced)."""
    for suffix in [f',"{key}":' for key in WORD_KEYS[1:]] + [',"error":"']:
        yield from _choose(SCORE_VALUES, (suffix,))
    yield from _choose(errors, ('","phones":[',))
    for k, phone in enumerate(phones):
        yield from _literal(("," if k else "") + f'["{phone}",')
        _score, suffix = yield from _choose(PHONE_VALUES, ("]", ',"'))
        if suffix == ',"':
            yield from _choose(HEARD, ('"]',))
    yield from _literal("]}")


def assessment_program(reference: Sequence[str] | None, phones_of: Callable[[str], Sequence[str]],
                       max_words: int, remaining: Callable[[], int] = lambda: 1 << 30) -> Program:
    """The schema (schema.py) as slots. Closed mode (`reference`: the normalised reference words) forces each
    reference word; open mode lets the model write up to `max_words` words, and no new word once fewer than
    WORD_RESERVE tokens are `remaining()` of the generation budget, so an open assessment always ends in time.
    `phones_of(word)`: its canonical phones (ARPAbet without stress)."""
    closed = reference is not None
    keys = SENTENCE_KEYS + (("completeness",) if closed else ())
    yield from _literal('{"scores":{"accuracy":')
    for i in range(len(keys)):
        yield from _choose(SCORE_VALUES, (f',"{keys[i + 1]}":' if i + 1 < len(keys) else '},"words":[',))
    if closed:
        for j, word in enumerate(reference):
            yield from _literal(("," if j else "") + f'{{"text":"{word}","accuracy":')
            yield from _word_body(ERRORS, phones_of(word))
        yield from _literal("]}")
        return
    for j in range(max_words):
        if remaining() < WORD_RESERVE:
            break
        index = yield Choice((("," if j else "") + '{"text":"', "]}"))
        if index == 1:
            return
        word = yield FreeWord('","accuracy":')
        yield from _word_body(OPEN_ERRORS, phones_of(word))
    yield from _literal("]}")


class Vocabulary:
    """What the walkers need of a tokenizer: the token ids of a string (cached) and the tokens that spell only
    word characters (computed once: a decode of every id)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._ids: dict[str, tuple[int, ...]] = {}
        self._tries: dict[tuple[str, ...], dict] = {}
        special = set(tokenizer.all_special_ids)
        pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.word_tokens = {i: len(p) for i, p in enumerate(pieces)
                            if p and i not in special and set(p) <= WORD_CHARS}

    def ids(self, text: str) -> tuple[int, ...]:
        if text not in self._ids:
            self._ids[text] = tuple(self.tokenizer.encode(text, add_special_tokens=False))
        return self._ids[text]

    def trie(self, options: tuple[str, ...]) -> dict:
        """Nested {token: node}; a leaf is {None: option index}."""
        if options not in self._tries:
            root: dict = {}
            for index, option in enumerate(options):
                node = root
                for token in self.ids(option):
                    if None in node:
                        raise ValueError(f"option {option!r} extends another option: not prefix-free")
                    node = node.setdefault(token, {})
                if node:
                    raise ValueError(f"option {option!r} is a prefix of another: not prefix-free")
                node[None] = index
            self._tries[options] = root
        return self._tries[options]


class SchemaWalker:
    """One row's position in its program, advanced token by token."""

    def __init__(self, program: Program, vocabulary: Vocabulary) -> None:
        self._program = program
        self._vocabulary = vocabulary
        self.done = False
        self.consumed = 0  # tokens advanced through
        self._enter(next(program))

    def _enter(self, slot) -> None:
        self._slot = slot
        if isinstance(slot, Choice):
            self._node = self._vocabulary.trie(slot.options)
        else:
            self._word: list[int] = []
            self._chars = 0
            self._node = None  # the suffix's trie once the word has ended
            self._suffix = self._vocabulary.trie((slot.suffix,))

    def _complete(self, value) -> None:
        try:
            self._enter(self._program.send(value))
        except StopIteration:
            self.done = True

    def allowed(self) -> list[int]:
        if self.done:
            return []
        if self._node is not None:
            return [t for t in self._node if t is not None]
        allowed = list(self._suffix) if self._word else []
        room = MAX_WORD_CHARS - self._chars
        return allowed + [t for t, n in self._vocabulary.word_tokens.items() if n <= room]

    def advance(self, token: int) -> None:
        if self.done:
            raise ValueError("the assessment is complete")
        self.consumed += 1
        if self._node is None:
            if token in self._vocabulary.word_tokens and self._chars + self._vocabulary.word_tokens[token] <= \
                    MAX_WORD_CHARS:
                self._word.append(token)
                self._chars += self._vocabulary.word_tokens[token]
                return
            if not self._word or token not in self._suffix:
                raise ValueError(f"token {token} is not allowed here")
            self._node = self._suffix
        if token not in self._node or token is None:
            raise ValueError(f"token {token} is not allowed here")
        self._node = self._node[token]
        if None not in self._node:
            return
        if isinstance(self._slot, Choice):
            self._complete(self._node[None])
        else:
            word = self._vocabulary.tokenizer.decode(self._word)
            if not WORD_RE.fullmatch(word):  # the tokens decode to word characters only; this guards a tokenizer
                raise ValueError(f"{word!r} is not a word")
            self._complete(word)


class SchemaLogitsProcessor:
    """A transformers logits processor: each row of the batch may only take what its walker allows (None: that
    row is not constrained); a finished row may only end."""

    def __init__(self, walkers: Sequence[SchemaWalker | None], prompt_length: int, eos_token_id: int) -> None:
        self._walkers = list(walkers)
        self._prompt_length = prompt_length
        self._eos = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] > self._prompt_length
        mask = torch.zeros_like(scores)
        for row, walker in enumerate(self._walkers):
            if walker is None:
                continue
            if generated and not walker.done:
                walker.advance(int(input_ids[row, -1]))
            mask[row] = float("-inf")
            mask[row, walker.allowed() or [self._eos]] = 0.0
        return scores + mask
