"""MultiPA-style multi-task heads: SSL frames pooled over each word's aligned span and over the utterance, with
the alignment's numbers, give phone accuracy, word accuracy / stress / total and sentence accuracy / fluency /
prosody / total.

GOPT-style, the phones come first: each phone's numbers (posterior GOP, margin, duration, what the classifier
heard) and an embedding of its identity pass through a bidirectional LSTM over the utterance's phones; a phone
head reads it (accuracy 0..2, trained on the experts' phone scores where they exist), and each word gets the
mean of its phones' states and their lowest predicted accuracy. Words then pass through a bidirectional LSTM
before the word heads; the sentence heads read an attention pooling of the words (padding masked) and the
pooled utterance. Every sequence is packed or masked, so padding never reaches a score. Outputs are squashed
into their ranges. One forward scores a whole batch of utterances.

A checkpoint holds one or more sets of heads of the same shape, trained with different seeds (`saywell train
--profile neural --ensemble N`); their scores are averaged. On validation fold 0 one set's closed-mode word
accuracy PCC moved from 0.545 to 0.585 with the seed alone, and the average of five gave 0.598
(engine/profiles/neural/README.md, session 14).
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from saywell.engine.profiles.neural.inputs import PHONE_CLASSES, PHONE_FEATURES, SENTENCE_FEATURES, WORD_FEATURES
from saywell.engine.types import EngineError

WORD_ASPECTS = ("accuracy", "stress", "total")
SENTENCE_ASPECTS = ("accuracy", "fluency", "prosody", "total")
HEADS_FORMAT = "saywell-neural-heads/3"
# (sensitivity, word accuracy threshold) until training fits them on labelled words (scorers/flags.py)
DEFAULT_FLAG_THRESHOLDS = ((0.0, 4.0), (0.5, 5.0), (1.0, 6.0))


@dataclass(frozen=True)
class HeadsConfig:
    ssl_dim: int
    word_dim: int = len(WORD_FEATURES)
    sentence_dim: int = len(SENTENCE_FEATURES)
    phone_dim: int = len(PHONE_FEATURES)
    phone_classes: int = len(PHONE_CLASSES)
    hidden: int = 64
    phone_hidden: int = 32
    phone_embedding: int = 16
    dropout: float = 0.1


def span_frames(spans_ms: np.ndarray, frame_ms: float, n_frames: int) -> np.ndarray:
    """Word spans in ms -> [start, end) frames of the SSL encoder, each at least one frame, inside the frames."""
    start = np.clip(np.floor(spans_ms[:, 0] / frame_ms), 0, max(n_frames - 1, 0))
    end = np.clip(np.ceil(spans_ms[:, 1] / frame_ms), start + 1, max(n_frames, 1))
    return np.stack([start, end], 1).astype(np.int64).reshape(-1, 2)


def pool(frames: torch.Tensor, frame_lengths: torch.Tensor, spans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean frames over each word's span (B, N, D) and over each utterance's valid frames (B, D)."""
    t = torch.arange(frames.shape[1], device=frames.device)
    inside = ((t >= spans[..., :1]) & (t < spans[..., 1:])).to(frames.dtype)  # (B, N, T)
    words = inside @ frames / inside.sum(-1, keepdim=True).clamp(min=1)
    valid = (t[None, :] < frame_lengths[:, None]).to(frames.dtype)
    utterance = (valid[..., None] * frames).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
    return words, utterance


class PronunciationHeads(nn.Module):
    def __init__(self, config: HeadsConfig) -> None:
        super().__init__()
        self.config = config
        h, ph = config.hidden, config.phone_hidden
        self.ssl_norm = nn.LayerNorm(config.ssl_dim)
        self.phone_embedding = nn.Embedding(config.phone_classes, config.phone_embedding)
        self.phone_in = nn.Sequential(nn.Linear(config.phone_dim + config.phone_embedding, ph), nn.GELU(),
                                      nn.Dropout(config.dropout))
        self.phone_context = nn.LSTM(ph, ph // 2, batch_first=True, bidirectional=True)
        self.phone_out = nn.Linear(ph, 1)
        self.word_in = nn.Sequential(nn.Linear(config.ssl_dim + config.word_dim + ph + 1, h), nn.GELU(),
                                     nn.Dropout(config.dropout))
        self.context = nn.LSTM(h, h // 2, batch_first=True, bidirectional=True)
        self.word_out = nn.Linear(h, len(WORD_ASPECTS))
        self.attention = nn.Linear(h, 1)
        self.sentence_in = nn.Sequential(nn.Linear(config.ssl_dim + config.sentence_dim, h), nn.GELU())
        self.sentence_out = nn.Sequential(nn.Linear(2 * h, h), nn.GELU(), nn.Dropout(config.dropout),
                                          nn.Linear(h, len(SENTENCE_ASPECTS)))
        # z-scoring of the alignment numbers: (mean, std) rows, fitted on the training data
        for name, dim in (("word_stats", config.word_dim), ("sentence_stats", config.sentence_dim),
                          ("phone_stats", config.phone_dim)):
            self.register_buffer(name, torch.stack([torch.zeros(dim), torch.ones(dim)]))

    def set_normalization(self, words: np.ndarray, sentences: np.ndarray, phones: np.ndarray) -> None:
        for buffer, rows in ((self.word_stats, words), (self.sentence_stats, sentences), (self.phone_stats, phones)):
            std = rows.std(axis=0)
            std[std < 1e-6] = 1.0
            buffer.copy_(torch.tensor(np.stack([rows.mean(axis=0), std]), dtype=torch.float32))

    def forward(self, frames: torch.Tensor, frame_lengths: torch.Tensor, spans: torch.Tensor,
                word_values: torch.Tensor, word_lengths: torch.Tensor, sentence_values: torch.Tensor,
                phone_values: torch.Tensor, phone_ids: torch.Tensor, phone_owner: torch.Tensor,
                phone_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """frames (B, T, D) SSL frames with (B,) valid; spans (B, N, 2) in frames; word_values (B, N, W) with (B,)
        valid words (>= 1 each); sentence_values (B, S); phone_values (B, P, F), phone_ids (B, P) and phone_owner
        (B, P) (the word of each phone) with (B,) valid phones (>= 1 each) -> word scores (B, N, 3), sentence
        scores (B, 4), phone accuracy (B, P)."""
        z_phones = (phone_values - self.phone_stats[0]) / self.phone_stats[1]
        phone_tokens = self.phone_in(torch.cat([z_phones, self.phone_embedding(phone_ids)], -1))
        packed = pack_padded_sequence(phone_tokens, phone_lengths.cpu(), batch_first=True, enforce_sorted=False)
        phone_states, _ = pad_packed_sequence(self.phone_context(packed)[0], batch_first=True,
                                              total_length=phone_tokens.shape[1])
        phones = torch.sigmoid(self.phone_out(phone_states)).squeeze(-1) * 2
        # (B, N, P): phone p belongs to word n; padded phones belong to no word
        real = torch.arange(phone_tokens.shape[1], device=phones.device)[None, :] < phone_lengths[:, None]
        member = ((phone_owner[:, None, :] == torch.arange(spans.shape[1], device=phones.device)[None, :, None])
                  & real[:, None, :]).to(phone_states.dtype)
        word_phones = member @ phone_states / member.sum(-1, keepdim=True).clamp(min=1)
        lowest = (phones[:, None, :] * member + 2 * (1 - member)).min(-1).values[..., None]

        word_ssl, utterance_ssl = pool(frames.float(), frame_lengths, spans)
        z_words = (word_values - self.word_stats[0]) / self.word_stats[1]
        tokens = self.word_in(torch.cat([self.ssl_norm(word_ssl), z_words, word_phones, lowest], -1))
        packed = pack_padded_sequence(tokens, word_lengths.cpu(), batch_first=True, enforce_sorted=False)
        hidden, _ = pad_packed_sequence(self.context(packed)[0], batch_first=True, total_length=tokens.shape[1])
        words = torch.sigmoid(self.word_out(hidden)) * 10
        valid = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < word_lengths[:, None]
        weights = torch.softmax(self.attention(hidden).squeeze(-1).masked_fill(~valid, float("-inf")), dim=1)
        pooled = (weights[..., None] * hidden).sum(1)
        z_sentence = (sentence_values - self.sentence_stats[0]) / self.sentence_stats[1]
        summary = torch.cat([pooled, self.sentence_in(torch.cat([self.ssl_norm(utterance_ssl), z_sentence], -1))], -1)
        return words, torch.sigmoid(self.sentence_out(summary)) * 10, phones


class HeadsEnsemble(nn.Module):
    """Sets of heads of one shape whose scores are averaged: each scores the same batch, the mean is returned."""

    def __init__(self, members: Sequence[PronunciationHeads]) -> None:
        super().__init__()
        if not members or any(m.config != members[0].config for m in members):
            raise ValueError("an ensemble needs at least one set of heads, all of one config")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = [member(**batch) for member in self.members]
        return tuple(torch.stack([s[part] for s in scores]).mean(0) for part in range(3))  # type: ignore[return-value]


@dataclass(frozen=True)
class HeadsItem:
    """One utterance for the heads: its SSL frames (T, D), its words' spans in those frames (N, 2), the
    alignment's numbers per word (N, W) and per utterance (S,), and per phone (P, F) with each phone's class
    (P,) and word (P,)."""

    frames: np.ndarray = field(repr=False)
    spans: np.ndarray = field(repr=False)
    words: np.ndarray = field(repr=False)
    sentence: np.ndarray = field(repr=False)
    phones: np.ndarray = field(repr=False)
    phone_ids: np.ndarray = field(repr=False)
    phone_owner: np.ndarray = field(repr=False)

    def problem(self, ssl_dim: int, phone_dim: int, phone_classes: int) -> str | None:
        """What makes this item unfit for heads of these dimensions (None: nothing). The local stage and the
        Triton stage both ask, so a bad item fails alone, before it reaches a batch."""
        if not len(self.words) or np.ndim(self.frames) != 2 or self.frames.shape[1] != ssl_dim:
            return (f"heads: an item with {len(self.words)} words and frames {np.shape(self.frames)}; expected >= 1 "
                    f"word and (T, {ssl_dim})")
        phones, ids, owners = np.asarray(self.phones), np.asarray(self.phone_ids), np.asarray(self.phone_owner)
        if phones.ndim != 2 or phones.shape[1] != phone_dim or ids.shape != (len(phones),) or \
                owners.shape != (len(phones),) or not (ids.size == 0 or 0 <= ids.min() <= ids.max() < phone_classes):
            return (f"heads: phones {phones.shape} with ids {ids.shape} and words {owners.shape}; expected (P, "
                    f"{phone_dim}), (P,) ids in 0..{phone_classes - 1} and (P,)")
        if not len(owners) or owners[0] != 0 or owners[-1] != len(self.words) - 1 or \
                not np.isin(np.diff(owners), (0, 1)).all():
            return (f"heads: an item whose {len(phones)} phones do not cover its {len(self.words)} words in order "
                    "(every word needs >= 1 phone)")
        return None


def collate(items: Sequence[HeadsItem], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Padded tensors of `items`, the keyword arguments of PronunciationHeads.forward."""
    frames_max = max(max(len(i.frames) for i in items), 1)
    words_max = max(len(i.words) for i in items)
    phones_max = max(max(len(i.phones) for i in items), 1)
    dim = items[0].frames.shape[1]
    frames = np.zeros((len(items), frames_max, dim), np.float32)
    spans = np.zeros((len(items), words_max, 2), np.int64)
    words = np.zeros((len(items), words_max, items[0].words.shape[1]), np.float32)
    phones = np.zeros((len(items), phones_max, items[0].phones.shape[1]), np.float32)
    phone_ids = np.zeros((len(items), phones_max), np.int64)
    phone_owner = np.full((len(items), phones_max), -1, np.int64)
    for row, item in enumerate(items):
        frames[row, :len(item.frames)] = item.frames
        spans[row, :len(item.spans)] = item.spans
        words[row, :len(item.words)] = item.words
        phones[row, :len(item.phones)] = item.phones
        phone_ids[row, :len(item.phones)] = item.phone_ids
        phone_owner[row, :len(item.phones)] = item.phone_owner
    tensors = {"frames": frames, "spans": spans, "word_values": words,
               "frame_lengths": np.array([len(i.frames) for i in items], np.int64),
               "word_lengths": np.array([len(i.words) for i in items], np.int64),
               "sentence_values": np.stack([i.sentence for i in items]).astype(np.float32),
               "phone_values": phones, "phone_ids": phone_ids, "phone_owner": phone_owner,
               "phone_lengths": np.array([len(i.phones) for i in items], np.int64)}
    return {name: torch.from_numpy(value).to(device) for name, value in tensors.items()}


def save_heads(heads: PronunciationHeads | HeadsEnsemble, path: Path, meta: dict[str, Any]) -> None:
    members = heads.members if isinstance(heads, HeadsEnsemble) else [heads]
    torch.save({"format": HEADS_FORMAT, "config": dataclasses.asdict(heads.config),
                "word_features": list(WORD_FEATURES), "sentence_features": list(SENTENCE_FEATURES),
                "phone_features": list(PHONE_FEATURES), "phone_classes": list(PHONE_CLASSES),
                "states": [m.state_dict() for m in members], "meta": meta}, path)


def load_heads(path: Path) -> tuple[HeadsEnsemble, dict[str, Any]]:
    """The heads of a checkpoint as an ensemble, and its meta."""
    if not Path(path).is_file():
        raise EngineError(f"no heads checkpoint at {path}: train one with `saywell train --profile neural --data "
                          f"DIR --model-dir {Path(path).parent}`")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != HEADS_FORMAT or tuple(checkpoint["word_features"]) != WORD_FEATURES or \
            tuple(checkpoint["sentence_features"]) != SENTENCE_FEATURES or \
            tuple(checkpoint["phone_features"]) != PHONE_FEATURES or \
            tuple(checkpoint["phone_classes"]) != PHONE_CLASSES:
        raise EngineError(f"{path} was trained on other inputs than this saywell builds; train the heads again")
    members = []
    for state in checkpoint["states"]:
        member = PronunciationHeads(HeadsConfig(**checkpoint["config"]))
        member.load_state_dict(state)
        members.append(member)
    return HeadsEnsemble(members).eval(), dict(checkpoint["meta"])


class HeadsStage:
    """Stage: HeadsItem -> (word scores (N, 3), sentence scores (4,), phone accuracy (P,)) float32, one forward
    per batch."""

    name = "heads"

    def __init__(self, path: Path, device: torch.device) -> None:
        self.path = path
        self.device = device
        self._heads: HeadsEnsemble | None = None
        self.meta: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self) -> HeadsEnsemble:
        with self._lock:
            if self._heads is None:
                heads, self.meta = load_heads(self.path)
                self._heads = heads.to(self.device)
            return self._heads

    def close(self) -> None:
        with self._lock:
            self._heads = None

    def flag_thresholds(self) -> tuple[tuple[float, float], ...]:
        self.load()
        return tuple(tuple(row) for row in self.meta.get("flag_thresholds", DEFAULT_FLAG_THRESHOLDS))

    def run_batch(self, items: Sequence[HeadsItem]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | Exception]:
        heads = self.load()
        results: list[tuple[np.ndarray, np.ndarray, np.ndarray] | Exception | None] = [None] * len(items)
        good = []
        config = heads.config
        for index, item in enumerate(items):
            problem = item.problem(config.ssl_dim, config.phone_dim, config.phone_classes)
            if problem:
                results[index] = EngineError(problem)
            else:
                good.append(index)
        if good:
            with torch.inference_mode():
                words, sentence, phones = heads(**collate([items[i] for i in good], self.device))
            words, sentence, phones = words.cpu().numpy(), sentence.cpu().numpy(), phones.cpu().numpy()
            for row, index in enumerate(good):
                item = items[index]
                results[index] = (words[row, :len(item.words)].copy(), sentence[row].copy(),
                                  phones[row, :len(item.phones)].copy())
        return results  # type: ignore[return-value]

