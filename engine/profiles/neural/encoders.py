"""Batched forward passes of wav2vec2-family models (the HuBERT SSL encoder, the Charsiu-style frame phone
classifier) over audio of different lengths, and the stage that runs them.

transformers' own forward is not batch-invariant for the base models: the first convolution's GroupNorm (one
group per channel, statistics over time) counts the padding, so a padded utterance gets other features than
it gets alone. `encode` runs the model's own modules but takes those statistics over each item's valid samples
and masks padded frames in attention, so one padded forward serves many streams and every item gets what it
would get alone (within float tolerance). Training fine-tunes through the same function.
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from saywell.engine.profiles.neural.config import ModelRef
from saywell.engine.types import SAMPLE_RATE, EngineError

NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's zero-mean unit-variance epsilon
# Stages load on their own threads at once; transformers' lazy first import is not safe from two threads.
_LOADING = threading.Lock()


def conv_lengths(lengths: torch.Tensor, config) -> torch.Tensor:
    """Frames the convolutional feature encoder makes of `lengths` samples (no padding, so it floors)."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


def receptive_field(config) -> int:
    """The fewest samples that make one frame."""
    samples = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
        samples = (samples - 1) * stride + kernel
    return samples


def frame_ms(config) -> float:
    return math.prod(config.conv_stride) * 1000 / SAMPLE_RATE


def _valid(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def normalize_audio(audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over each item's valid samples (the feature extractor's `do_normalize`);
    padding stays 0."""
    mask = _valid(lengths, audio.shape[1]).float()
    count = lengths.clamp(min=1)[:, None].float()
    mean = (audio * mask).sum(1, keepdim=True) / count
    var = (((audio - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (audio - mean) / torch.sqrt(var + NORM_EPS) * mask


def masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """`norm` over (B, C, T) with each item's statistics taken over its first `lengths` frames only."""
    batch, channels, frames = x.shape
    groups = norm.num_groups
    x32 = x.float().reshape(batch, groups, channels // groups, frames)
    mask = _valid(lengths, frames)[:, None, None, :].float()
    count = (lengths.clamp(min=1).float() * (channels // groups))[:, None, None, None]
    mean = (x32 * mask).sum((2, 3), keepdim=True) / count
    var = (((x32 - mean) * mask) ** 2).sum((2, 3), keepdim=True) / count
    y = ((x32 - mean) / torch.sqrt(var + norm.eps)).reshape(batch, channels, frames)
    if norm.affine:
        y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
    return y.to(x.dtype)


def encode(model: nn.Module, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states (B, T, D) of a wav2vec2-family base model (HubertModel, Wav2Vec2Model) and each item's
    valid frames (B,), for padded audio (B, S) with `lengths` valid samples each."""
    config = model.config
    hidden = audio[:, None]
    samples = lengths
    for kernel, stride, layer in zip(config.conv_kernel, config.conv_stride, model.feature_extractor.conv_layers):
        samples = torch.div(samples - kernel, stride, rounding_mode="floor") + 1
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, nn.GroupNorm):  # the one place padding would leak in
            hidden = layer.activation(masked_group_norm(layer.conv(hidden), samples.clamp(min=0), norm))
        else:
            hidden = layer(hidden)
    frames = conv_lengths(lengths, config)
    projected = model.feature_projection(hidden.transpose(1, 2))
    hidden = projected[0] if isinstance(projected, tuple) else projected  # wav2vec2 also returns its input
    output = model.encoder(hidden, attention_mask=_valid(frames, hidden.shape[1]))
    return output[0], frames


class SpeechEncoder(nn.Module):
    """A wav2vec2-family model as the profile uses it: raw 16 kHz audio in, per-frame outputs out; with a
    classifier, log posteriors over its classes."""

    def __init__(self, model: nn.Module, classifier: nn.Module | None = None, normalize: bool = True) -> None:
        super().__init__()
        self.model = model
        self.classifier = classifier
        self.normalize = normalize
        self.frame_ms = frame_ms(model.config)
        self.min_samples = receptive_field(model.config)
        self.out_dim = classifier.out_features if classifier is not None else model.config.hidden_size

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.normalize:
            audio = normalize_audio(audio.float(), lengths)
        hidden, frames = encode(self.model, audio, lengths)
        if self.classifier is not None:
            return self.classifier(hidden).float().log_softmax(-1), frames
        return hidden, frames


def _wants_normalized(ref: ModelRef, allow_download: bool) -> bool:
    """The folder's feature extractor setting; transformers' default (True) when it has none."""
    from transformers import Wav2Vec2FeatureExtractor

    try:
        return bool(Wav2Vec2FeatureExtractor.from_pretrained(ref.location, local_files_only=not allow_download)
                    .do_normalize)
    except OSError:
        return True


def _check_family(model: nn.Module, ref: ModelRef) -> None:
    if not all(hasattr(model, name) for name in ("feature_extractor", "feature_projection", "encoder")):
        raise EngineError(f"{ref.source!r} is a {type(model).__name__}, not a wav2vec2-family speech encoder "
                          "(HuBERT, wav2vec2, WavLM)")


def load_ssl_encoder(ref: ModelRef, allow_download: bool) -> SpeechEncoder:
    """The SSL encoder (MultiPA: facebook/hubert-base-ls960), any wav2vec2-family AutoModel."""
    with _LOADING:
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(ref.location, local_files_only=not allow_download)
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load the SSL encoder {ref.source!r}: {exc}") from exc
        _check_family(model, ref)
        return SpeechEncoder(model, None, _wants_normalized(ref, allow_download)).eval()


def load_frame_classifier(ref: ModelRef, classes: int, allow_download: bool) -> SpeechEncoder:
    """The frame phone classifier: Charsiu's Wav2Vec2ForFrameClassification (wav2vec2 + a linear layer per
    frame), which transformers names Wav2Vec2ForAudioFrameClassification; the weights have the same layout."""
    with _LOADING:
        from transformers import Wav2Vec2ForAudioFrameClassification

        try:
            model = Wav2Vec2ForAudioFrameClassification.from_pretrained(ref.location,
                                                                         local_files_only=not allow_download)
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load the frame phone classifier {ref.source!r}: {exc}") from exc
        if model.config.num_labels != classes:
            raise EngineError(f"the frame phone classifier {ref.source!r} has {model.config.num_labels} classes "
                              f"but neural.json lists {classes} phones")
        if model.config.use_weighted_layer_sum:
            raise EngineError(f"{ref.source!r} uses a weighted layer sum, which the neural profile does not support")
        _check_family(model.wav2vec2, ref)
        return SpeechEncoder(model.wav2vec2, model.classifier, _wants_normalized(ref, allow_download)).eval()


def pad_items(items: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays of different lengths (first axis) and the same trailing shape -> a zero-padded float32 batch and
    each item's length: audio (S,) items give (B, S), frames (T, D) give (B, T, D)."""
    longest = max(len(a) for a in items)
    batch = np.zeros((len(items), longest, *np.shape(items[0])[1:]), np.float32)
    for row, item in enumerate(items):
        batch[row, :len(item)] = item
    return torch.from_numpy(batch), torch.tensor([len(a) for a in items], dtype=torch.long)



class EncoderStage:
    """Stage: 16 kHz mono audio -> (frames, dim) float32 per item, one padded forward per batch on `device`
    (float16 autocast on CUDA when `half`: GroupNorm, LayerNorm and softmax stay in float32)."""

    def __init__(self, name: str, loader, device: torch.device, half: bool = True) -> None:
        self.name = name
        self._loader = loader  # () -> SpeechEncoder, on the CPU
        self.device = device
        self.half = half and device.type == "cuda"
        self._encoder: SpeechEncoder | None = None
        self._lock = threading.Lock()

    def load(self) -> SpeechEncoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._loader().to(self.device).eval()
            return self._encoder

    def close(self) -> None:
        with self._lock:
            self._encoder = None

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.half else contextlib.nullcontext()

    def run_batch(self, items: Sequence[np.ndarray]) -> list[np.ndarray | Exception]:
        encoder = self.load()
        results: list[np.ndarray | Exception | None] = [None] * len(items)
        usable: list[int] = []
        for index, audio in enumerate(items):
            audio = np.asarray(audio)
            if audio.ndim != 1:
                results[index] = EngineError(f"{self.name}: expected mono audio, got shape {audio.shape}")
            elif len(audio) < encoder.min_samples:  # too short for one frame
                results[index] = np.zeros((0, encoder.out_dim), np.float32)
            else:
                usable.append(index)
        if usable:
            audio, lengths = pad_items([np.asarray(items[i], np.float32) for i in usable])
            with torch.inference_mode(), self._autocast():
                output, frames = encoder(audio.to(self.device), lengths.to(self.device))
            output = output.float().cpu().numpy()
            for row, (index, n) in enumerate(zip(usable, frames.tolist())):
                results[index] = np.ascontiguousarray(output[row, :n])
        return results  # type: ignore[return-value]
