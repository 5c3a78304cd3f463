"""Model folders of random models, for tests and benchmarks.

`write_random_models(folder)` writes a tiny random `Wav2Vec2ForAudioFrameClassification` (10 ms frames, one
class per phone of PHONES), a tiny random `HubertModel` (20 ms frames) and `neural.json` pointing at them and
at the packaged Whisper tiny.en; `write_random_heads` adds untrained heads. Tiny ones run in milliseconds on a
CPU and prove that the graph is wired, batched and served. `size="base"` gives the real architectures
(wav2vec2-base with 10 ms frames, HuBERT base: ~95M parameters each) with random weights: their cost is the
real models', for benchmarks. `write_random_embedded(folder)` writes the embedded configuration instead (the
packaged Whisper's encoder frames, an untrained phone head over them, untrained heads). Their scores mean nothing.
"""
from __future__ import annotations

from pathlib import Path

import torch

from saywell.engine.language.lexicon import VOWELS
from saywell.engine.profiles.neural.config import AlignerConfig, NeuralConfig, model_ref
from saywell.engine.profiles.neural.heads import HeadsConfig, PronunciationHeads, save_heads
from saywell.engine.profiles.neural.phone_head import CONSONANTS

SPECIALS = ("[PAD]", "[UNK]", "[SIL]")  # Charsiu-style vocabulary: specials first, then ARPAbet without stress
PHONES = SPECIALS + tuple(sorted(VOWELS)) + CONSONANTS
# Small conv stacks with the real models' frame rates: 5*4*4*2 = 160 samples (10 ms), 5*4*4*4 = 320 (20 ms).
ALIGNER_CONV = dict(conv_dim=(16, 16, 16, 16), conv_kernel=(10, 4, 4, 2), conv_stride=(5, 4, 4, 2))
SSL_CONV = dict(conv_dim=(16, 16, 16, 16), conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4))
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="group",
            do_stable_layer_norm=False, conv_bias=False)
# (aligner, SSL encoder) settings over transformers' defaults, which are wav2vec2-base and HuBERT base;
# Charsiu's 10 ms classifier halves the frame step: the last convolution's stride is 1 (160 samples).
SIZES = {"tiny": ({**TINY, **ALIGNER_CONV}, {**TINY, **SSL_CONV}),
         "base": ({"conv_stride": (5, 2, 2, 2, 2, 2, 1)}, {})}


def write_random_models(folder: str | Path, size: str = "tiny", asr: str = "tiny.en", seed: int = 0) -> NeuralConfig:
    """A random aligner and SSL encoder of `size` (SIZES) under `folder` and a neural.json naming them and the
    ASR `asr` (heads: heads.pt, not written)."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor
    from transformers import Wav2Vec2ForAudioFrameClassification

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    aligner_size, ssl_size = SIZES[size]
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    torch.manual_seed(seed)
    aligner = Wav2Vec2ForAudioFrameClassification(Wav2Vec2Config(num_labels=len(PHONES), **aligner_size))
    aligner.save_pretrained(folder / "aligner")
    extractor.save_pretrained(folder / "aligner")
    ssl = HubertModel(HubertConfig(**ssl_size))
    ssl.save_pretrained(folder / "ssl")
    extractor.save_pretrained(folder / "ssl")
    config = NeuralConfig(folder=folder, asr=asr, aligner=AlignerConfig(model_ref(folder, "aligner"), PHONES, "[SIL]"),
                          ssl=model_ref(folder, "ssl"), heads=folder / "heads.pt")
    config.save()
    return config


def write_random_heads(config: NeuralConfig, seed: int = 0) -> Path:
    """Untrained heads for `config`'s SSL encoder (plumbing only: their scores are noise)."""
    from transformers import AutoConfig

    torch.manual_seed(seed)
    heads = PronunciationHeads(HeadsConfig(ssl_dim=AutoConfig.from_pretrained(config.ssl.location).hidden_size))
    save_heads(heads, config.heads, {"untrained": True, "note": "random heads: plumbing only"})
    return config.heads


def write_random_embedded(folder: str | Path, asr: str = "tiny.en", seed: int = 0) -> NeuralConfig:
    """The embedded configuration with random weights: neural.json naming Whisper `asr` for the ASR and the SSL
    frames, an untrained phone head over those frames and untrained heads (plumbing only)."""
    from saywell.engine.options import AsrOptions
    from saywell.engine.profiles.neural.phone_head import PhoneHead, PhoneHeadConfig, save_phone_head
    from saywell.engine.profiles.neural.whisper_frames import WhisperFramesStage
    from saywell.engine.stages.asr import ENCODER_FRAME_MS, WhisperAsr

    config = NeuralConfig.embedded_in(folder, asr)
    width = WhisperFramesStage(WhisperAsr(AsrOptions(model=asr))).load().out_dim
    phones = config.aligner.phones
    torch.manual_seed(seed)
    save_phone_head(PhoneHead(PhoneHeadConfig(width, len(phones), ENCODER_FRAME_MS)), config.aligner.head, phones,
                    {"untrained": True})
    save_heads(PronunciationHeads(HeadsConfig(ssl_dim=width)), config.heads, {"untrained": True,
                                                                             "note": "random heads: plumbing only"})
    config.save()
    return config
