"""The embedded configuration's frame phone classifier: a small convolutional head over the SSL frames (Whisper
encoder states, 20 ms) that gives log posteriors over the phones and silence per frame, in place of Charsiu's
wav2vec2 classifier over audio.

Training targets come from forced alignments of a labelled corpus (the cpu profile's pocketsphinx alignments of
speechocean762, `saywell train --profile neural --embedded`): each frame takes the phone whose span covers its
centre, silence outside the words, and frames of phones the experts marked as mispronounced are left out, so
the classifier learns what a phone sounds like when said right, which is what goodness of pronunciation asks.

A padded batch gives each item what it gets alone: padded frames are zeroed after the input norm, and zeros are
also what the convolutions' own padding puts past a lone item's ends.
"""
from __future__ import annotations

import pickle
import random
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from saywell.engine.language.lexicon import VOWELS
from saywell.engine.profiles.neural.encoders import pad_items
from saywell.engine.types import EngineError

PHONE_HEAD_FORMAT = "saywell-neural-phone-head/1"
IGNORE = -100  # a frame without a target (cross-entropy's ignore_index)
CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T",
              "TH", "V", "W", "Y", "Z", "ZH")
SILENCE_CLASS = "SIL"
# The embedded classifier's classes: silence, then ARPAbet without stress (the cpu profile's aligner's phones).
EMBEDDED_PHONES = (SILENCE_CLASS,) + tuple(sorted(VOWELS)) + CONSONANTS


@dataclass(frozen=True)
class PhoneHeadConfig:
    in_dim: int
    classes: int
    frame_ms: float
    hidden: int = 192
    kernel: int = 5  # frames of context per convolution: two of them see 9 frames (180 ms at 20 ms)
    dropout: float = 0.1


class PhoneHead(nn.Module):
    def __init__(self, config: PhoneHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.frame_ms = config.frame_ms
        self.out_dim = config.classes
        h, k = config.hidden, config.kernel
        self.norm = nn.LayerNorm(config.in_dim)
        self.project = nn.Linear(config.in_dim, h)
        self.convs = nn.ModuleList([nn.Conv1d(h, h, k, padding=k // 2) for _ in range(2)])
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(h, config.classes)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frames with `lengths` valid each -> (B, T, classes) log posteriors."""
        valid = (torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths[:, None]).float()[..., None]
        hidden = self.project(self.norm(frames.float())) * valid
        for conv in self.convs:
            hidden = hidden + self.dropout(torch.nn.functional.gelu(conv(hidden.transpose(1, 2)).transpose(1, 2)))
            hidden = hidden * valid
        return self.out(hidden).log_softmax(-1)


def save_phone_head(head: PhoneHead, path: Path, phones: Sequence[str], meta: dict[str, Any]) -> None:
    """Writes the head with its class names (`phones`, in class-id order), so a config that lists them otherwise
    is refused at load rather than mislabelling frames."""
    if len(phones) != head.config.classes:
        raise ValueError(f"{len(phones)} phone names for a head of {head.config.classes} classes")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": PHONE_HEAD_FORMAT, "config": asdict(head.config), "phones": list(phones),
                "state": head.state_dict(), "meta": meta}, path)


def load_phone_head(path: Path, phones: Sequence[str]) -> PhoneHead:
    """The head at `path`, checked to classify into `phones` (neural.json's list) in that order."""
    if not path.is_file():
        raise EngineError(f"no phone classifier at {path}: train one with `saywell train --profile neural "
                          "--embedded` (engine/profiles/neural/README.md)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.get("format") != PHONE_HEAD_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {PHONE_HEAD_FORMAT!r}")
        head = PhoneHead(PhoneHeadConfig(**data["config"]))
        head.load_state_dict(data["state"])
        saved = tuple(data["phones"])
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        raise EngineError(f"cannot load the phone classifier {path}: {exc}") from exc
    if saved != tuple(phones):
        raise EngineError(f"the phone classifier {path} classifies into {len(saved)} phones "
                          f"({', '.join(saved[:4])}, ...) but neural.json lists {len(phones)} "
                          f"({', '.join(tuple(phones)[:4])}, ...): they must be the same, in the same order")
    return head.eval()


class PhoneHeadStage:
    """Stage: (frames, dim) SSL frames -> (frames, classes) float32 log posteriors, one padded forward per batch."""

    name = "phone_posteriors"

    def __init__(self, path: Path, phones: Sequence[str], device: torch.device) -> None:
        self.path = path
        self.phones = tuple(phones)
        self.device = device
        self._head: PhoneHead | None = None
        self._lock = threading.Lock()

    def load(self) -> PhoneHead:
        with self._lock:
            if self._head is None:
                self._head = load_phone_head(self.path, self.phones).to(self.device)
            return self._head

    def close(self) -> None:
        with self._lock:
            self._head = None

    def run_batch(self, items: Sequence[np.ndarray]) -> list[np.ndarray | Exception]:
        head = self.load()
        results: list[np.ndarray | Exception | None] = [None] * len(items)
        usable = []
        for index, frames in enumerate(items):
            frames = np.asarray(frames)
            if frames.ndim != 2 or frames.shape[1] != head.config.in_dim:
                results[index] = EngineError(f"{self.name}: frames of shape {frames.shape}; expected (T, "
                                             f"{head.config.in_dim})")
            elif not len(frames):
                results[index] = np.zeros((0, head.config.classes), np.float32)
            else:
                usable.append(index)
        if usable:
            batch, lengths = pad_items([np.asarray(items[i], np.float32) for i in usable])
            with torch.inference_mode():
                output = head(batch.to(self.device), lengths.to(self.device)).float().cpu().numpy()
            for row, index in enumerate(usable):
                results[index] = np.ascontiguousarray(output[row, :len(items[index])])
        return results  # type: ignore[return-value]


@dataclass(frozen=True)
class FrameTargets:
    """One utterance's SSL frames and each frame's class id (IGNORE: no target)."""

    utt: str
    frames: np.ndarray  # (T, D)
    labels: np.ndarray  # (T,) int64


def train_phone_head(examples: Sequence[FrameTargets], classes: int, frame_ms: float, epochs: int = 12,
                     batch_size: int = 16, lr: float = 2e-3, seed: int = 762, device: torch.device | str = "cpu",
                     validation: Sequence[FrameTargets] = ()) -> tuple[PhoneHead, dict[str, Any]]:
    """Cross-entropy over the frames with targets; returns the head and a report (losses, frame accuracy on the
    `validation` utterances when given: never used to choose anything, only reported)."""
    examples = [e for e in examples if len(e.frames)]
    if not examples:
        raise ValueError("no utterances to train the phone classifier on")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    head = PhoneHead(PhoneHeadConfig(in_dim=examples[0].frames.shape[1], classes=classes, frame_ms=frame_ms))
    head.to(device).train()
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * ((len(examples) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    losses = []
    for _ in range(epochs):
        order = rng.sample(range(len(examples)), len(examples))
        for start in range(0, len(order), batch_size):
            batch = [examples[i] for i in order[start:start + batch_size]]
            frames, lengths = pad_items([e.frames.astype(np.float32) for e in batch])
            labels = torch.full(frames.shape[:2], IGNORE, dtype=torch.long)
            for row, e in enumerate(batch):
                labels[row, :len(e.labels)] = torch.from_numpy(e.labels)
            log_probs = head(frames.to(device), lengths.to(device))
            loss = nn.functional.nll_loss(log_probs.reshape(-1, classes), labels.to(device).reshape(-1),
                                          ignore_index=IGNORE)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
    head.eval()
    report: dict[str, Any] = {"utterances": len(examples), "epochs": epochs, "steps": steps, "lr": lr,
                              "first_loss": losses[0], "last_loss": losses[-1],
                              "train_frame_accuracy": frame_accuracy(head, examples, device)}
    if validation:
        report["validation_utterances"] = len(validation)
        report["validation_frame_accuracy"] = frame_accuracy(head, validation, device)
    return head.cpu(), report


@torch.no_grad()
def frame_accuracy(head: PhoneHead, examples: Sequence[FrameTargets], device: torch.device | str = "cpu") -> float:
    """Share of target frames whose most probable class is the target."""
    right = total = 0
    for start in range(0, len(examples), 32):
        batch = examples[start:start + 32]
        frames, lengths = pad_items([e.frames.astype(np.float32) for e in batch])
        predicted = head(frames.to(device), lengths.to(device)).argmax(-1).cpu().numpy()
        for row, e in enumerate(batch):
            known = e.labels != IGNORE
            right += int((predicted[row, :len(e.labels)][known] == e.labels[known]).sum())
            total += int(known.sum())
    return right / total if total else float("nan")
