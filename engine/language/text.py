"""Text normalisation: turn what a learner was asked to read (or what Whisper wrote) into dictionary words.

The aligner can only place words it can pronounce, so digits, symbols and typography must become plain
lower-case words first ("10%" -> "ten percent"). This module does not import g2p_en: its package import
runs `nltk.download`, which must never happen offline or at import time; inflect does the number words.
"""
from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Sequence

# Typography a keyboard or an ASR writes that the dictionary spells with ASCII.
_CHAR_MAP = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "ae", "\u0153": "oe", "\u0152": "oe", "\u00f8": "o", "\u00d8": "o",
    "\u0142": "l", "\u0141": "l", "\u0111": "d", "\u0110": "d", "\u00f0": "d", "\u00fe": "th",
    "%": " percent ", "&": " and ", "+": " plus ", "@": " at ", "=": " equals ",
})

_CURRENCY = {"$": ("dollar", "dollars"), "\u00a3": ("pound", "pounds"), "\u20ac": ("euro", "euros")}
_MONEY_RE = re.compile(r"([$\u00a3\u20ac])\s?(\d[\d,]*(?:\.\d+)?)")
_COMMA_NUMBER_RE = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL_RE = re.compile(r"(\d*)\.(\d+)")
_ORDINAL_RE = re.compile(r"(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_PLURAL_NUMBER_RE = re.compile(r"'?(\d+)'?s\b")
_NUMBER_RE = re.compile(r"\d+")
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")


@functools.lru_cache(maxsize=1)
def _inflect():
    """inflect's engine is cheap but its import is not; build it on first use, once."""
    import inflect

    return inflect.engine()


def _plain(words: str) -> str:
    return words.replace("-", " ").replace(",", " ")


def number_to_words(num: int) -> str:
    """Cardinals as a reader says them: years 1001-2999 in pairs ("nineteen ninety"), others in full."""
    engine = _inflect()
    if 1000 < num < 3000 and num != 2000:
        if 2000 < num < 2010:
            return "two thousand " + engine.number_to_words(num % 100)
        if num % 100 == 0:
            return engine.number_to_words(num // 100) + " hundred"
        return _plain(engine.number_to_words(num, andword="", zero="oh", group=2))
    return _plain(engine.number_to_words(num, andword=""))


def _ordinal(match: re.Match) -> str:
    engine = _inflect()
    return " " + _plain(engine.number_to_words(engine.ordinal(int(match.group(1))), andword="")) + " "


def _money(match: re.Match) -> str:
    one, many = _CURRENCY[match.group(1)]
    amount = match.group(2).replace(",", "")
    whole, _, cents = amount.partition(".")
    words = f"{number_to_words(int(whole or 0))} {one if int(whole or 0) == 1 else many}"
    if cents and int(cents):
        cents = (cents + "0")[:2]
        words += f" {number_to_words(int(cents))} {'cent' if int(cents) == 1 else 'cents'}"
    return " " + words + " "


def _decimal(match: re.Match) -> str:
    whole = number_to_words(int(match.group(1))) if match.group(1) else ""
    digits = " ".join(number_to_words(int(d)) for d in match.group(2))
    return f" {whole} point {digits} "


def _plural_number(match: re.Match) -> str:
    """"1990s" -> "nineteen nineties": pluralise the last number word as a reader would."""
    words = number_to_words(int(match.group(1))).split()
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith(("x", "s")) else "s")
    return " " + " ".join(words) + " "


def expand_numbers(text: str) -> str:
    """Spell out money, ordinals, decimals and cardinals; the order matters ("$2.50" before "2.5")."""
    text = _MONEY_RE.sub(_money, text)
    text = _COMMA_NUMBER_RE.sub("", text)
    text = _ORDINAL_RE.sub(_ordinal, text)
    text = _DECIMAL_RE.sub(_decimal, text)
    text = _PLURAL_NUMBER_RE.sub(_plural_number, text)
    return _NUMBER_RE.sub(lambda m: " " + number_to_words(int(m.group(0))) + " ", text)


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def normalize_words(text: str) -> list[str]:
    """Lower-case dictionary words of `text`, in order; empty or wordless text gives []."""
    if not text or not text.strip():
        return []
    text = strip_accents(text.translate(_CHAR_MAP))
    text = expand_numbers(text).lower()
    # Apostrophes survive only between letters ("i'm"); quotes and possessive plurals ("dogs'") lose them.
    return _WORD_RE.findall(text)


def match_reference(reference: Sequence[str], heard: Sequence[str]) -> list[int | None]:
    """For each heard word, the index of the reference word it stands for, or None for a word said beyond the
    reference. An order-keeping alignment of the two word lists: equal stretches pair up, and a replaced
    stretch pairs word by word from its start (a misread "beard" for "bird" still points at "bird"); the
    leftover words of an uneven replacement and inserted words point at nothing."""
    matched: list[int | None] = [None] * len(heard)
    matcher = difflib.SequenceMatcher(a=list(reference), b=list(heard), autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag in ("equal", "replace"):
            for offset in range(min(a1 - a0, b1 - b0)):
                matched[b0 + offset] = a0 + offset
    return matched
