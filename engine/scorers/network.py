"""The multi-task scoring network: a small transformer over an utterance's words (GOPT-style context), word
heads on every token and sentence heads on an attention-pooled summary plus utterance features.

Outputs are squashed into 0..10. Inputs are z-scored with statistics stored in the checkpoint.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

WORD_TARGETS = ("accuracy", "stress", "total")
SENTENCE_TARGETS = ("accuracy", "fluency", "prosody", "total")


@dataclass(frozen=True)
class NetworkConfig:
    word_scalar_dim: int
    encoder_dim: int
    sentence_dim: int
    d_model: int = 96
    heads: int = 4
    layers: int = 2
    dropout: float = 0.3


class MultiTaskScorer(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.scalar_proj = nn.Linear(config.word_scalar_dim, d // 2)
        self.encoder_proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.encoder_dim, d - d // 2))
        self.token_norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(d, config.heads, 2 * d, config.dropout, batch_first=True,
                                           activation="gelu")
        self.context = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.word_head = nn.Linear(d, len(WORD_TARGETS))
        self.pool_score = nn.Linear(d, 1)
        self.sentence_proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.sentence_dim, d), nn.GELU())
        self.sentence_head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(config.dropout),
                                           nn.Linear(d, len(SENTENCE_TARGETS)))
        self.register_buffer("norm_word_scalars", torch.zeros(2, config.word_scalar_dim))
        self.register_buffer("norm_word_encoder", torch.zeros(2, config.encoder_dim))
        self.register_buffer("norm_sentence", torch.zeros(2, config.sentence_dim))

    def set_normalization(self, word_scalars: np.ndarray, word_encoder: np.ndarray, sentence: np.ndarray) -> None:
        for name, rows in (("norm_word_scalars", word_scalars), ("norm_word_encoder", word_encoder),
                           ("norm_sentence", sentence)):
            std = rows.std(axis=0)
            std[std < 1e-6] = 1.0
            getattr(self, name).copy_(torch.tensor(np.stack([rows.mean(axis=0), std]), dtype=torch.float32))

    @staticmethod
    def _z(x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        return (x - stats[0]) / stats[1]

    def forward(self, word_scalars: torch.Tensor, word_encoder: torch.Tensor, pad_mask: torch.Tensor,
                sentence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, S), (B, T, E), (B, T) true where padded, (B, D) -> word (B, T, 3) and sentence (B, 4) scores."""
        tokens = torch.cat([self.scalar_proj(self._z(word_scalars, self.norm_word_scalars)),
                            self.encoder_proj(self._z(word_encoder, self.norm_word_encoder))], dim=-1)
        hidden = self.context(self.token_norm(tokens), src_key_padding_mask=pad_mask)
        words = torch.sigmoid(self.word_head(hidden)) * 10
        attention = self.pool_score(hidden).squeeze(-1).masked_fill(pad_mask, float("-inf"))
        pooled = (torch.softmax(attention, dim=1).unsqueeze(-1) * hidden).sum(dim=1)
        summary = torch.cat([pooled, self.sentence_proj(self._z(sentence, self.norm_sentence))], dim=-1)
        return words, torch.sigmoid(self.sentence_head(summary)) * 10


class Ensemble(nn.Module):
    """Networks of the same shape trained with different seeds; their predictions are averaged."""

    def __init__(self, members: list[MultiTaskScorer]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [member(*inputs) for member in self.members]
        return (torch.stack([w for w, _ in outputs]).mean(dim=0), torch.stack([s for _, s in outputs]).mean(dim=0))


def save_network(models: MultiTaskScorer | list[MultiTaskScorer], path, meta: dict) -> None:
    members = models if isinstance(models, list) else [models]
    torch.save({"config": asdict(members[0].config), "states": [m.state_dict() for m in members], "meta": meta},
               path)


def load_network(path) -> tuple[nn.Module, dict]:
    """A single network, or the ensemble a checkpoint with several members' states holds."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = NetworkConfig(**checkpoint["config"])
    members = []
    for state in checkpoint.get("states") or [checkpoint["state"]]:
        member = MultiTaskScorer(config)
        member.load_state_dict(state)
        members.append(member)
    model = members[0] if len(members) == 1 else Ensemble(members)
    model.eval()
    return model, checkpoint["meta"]


def pad_batch(items: list, dims: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ModelInputs list -> padded tensors and the padding mask."""
    longest = max(max(len(i.word_scalars) for i in items), 1)
    scalars = torch.zeros(len(items), longest, dims[0])
    encoder = torch.zeros(len(items), longest, dims[1])
    mask = torch.ones(len(items), longest, dtype=torch.bool)
    for row, item in enumerate(items):
        n = len(item.word_scalars)
        scalars[row, :n] = torch.from_numpy(item.word_scalars)
        encoder[row, :n] = torch.from_numpy(item.word_encoder)
        mask[row, :n] = False
    sentence = torch.from_numpy(np.stack([i.sentence for i in items]))
    return scalars, encoder, mask, sentence
