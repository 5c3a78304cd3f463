"""Text normalisation: what a reader would say, spelled as dictionary words."""
import subprocess
import sys

import pytest

from saywell.engine.language.text import normalize_words


@pytest.mark.parametrize("text, words", [
    ("10", ["ten"]),
    ("1990", ["nineteen", "ninety"]),
    ("2000", ["two", "thousand"]),
    ("2005", ["two", "thousand", "five"]),
    ("1900", ["nineteen", "hundred"]),
    ("123", ["one", "hundred", "twenty", "three"]),
    ("1,000,000 people", ["one", "million", "people"]),
    ("3rd", ["third"]),
    ("the 21st century", ["the", "twenty", "first", "century"]),
    ("2.5", ["two", "point", "five"]),
    ("$2.50", ["two", "dollars", "fifty", "cents"]),
    ("the 1990s", ["the", "nineteen", "nineties"]),
    ("It's 10:30", ["it's", "ten", "thirty"]),
    ("50% & more", ["fifty", "percent", "and", "more"]),
])
def test_numbers_and_symbols_become_words(text, words):
    assert normalize_words(text) == words


@pytest.mark.parametrize("text, words", [
    ("I'm here", ["i'm", "here"]),
    ("the dogs' bowls", ["the", "dogs", "bowls"]),
    ("'quoted'", ["quoted"]),
    ("well-known", ["well", "known"]),
    ("Hello, World! How are you?", ["hello", "world", "how", "are", "you"]),
    ("\u201cHello,\u201d she said \u2014 \u2018yes\u2019", ["hello", "she", "said", "yes"]),
    ("I\u2019m fine", ["i'm", "fine"]),
    ("caf\u00e9 na\u00efve r\u00e9sum\u00e9", ["cafe", "naive", "resume"]),
    ("Stra\u00dfe", ["strasse"]),
    ("long\u2013term", ["long", "term"]),
])
def test_punctuation_quotes_hyphens_and_accents(text, words):
    assert normalize_words(text) == words


@pytest.mark.parametrize("text", ["", "   ", "?!...", "\u2014"])
def test_empty_or_wordless_text_gives_no_words(text):
    assert normalize_words(text) == []


def test_import_does_not_touch_nltk_or_g2p_en():
    code = ("import sys; from saywell.engine.language.text import normalize_words; normalize_words('10 dogs'); "
            "print('nltk' in sys.modules, 'g2p_en' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
