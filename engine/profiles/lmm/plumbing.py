"""Tiny random model folders (Qwen2-Audio, Phi-4-multimodal), for tests and plumbing benchmarks.

`write_tiny_model(folder)` writes `base/`: a Qwen2-Audio model with a one-layer audio encoder and a two-layer
text model (hidden size 32) whose tokenizer is built here, offline: byte-level characters plus whole tokens for
the assessment schema's keys, the phones and the chat markers, so an assessment takes a few hundred generate
steps. Its processor is transformers' own `Qwen2AudioProcessor` (a WhisperFeatureExtractor with 128 mel bins,
as Qwen2-Audio has). And it writes `lmm.json` naming it.

`write_tiny_model(folder, architecture="phi4-multimodal")` writes a Phi4MultimodalForCausalLM instead (a
one-block conformer audio encoder, a one-layer vision encoder nothing uses, a two-layer text model of hidden
size 32), the same kind of tokenizer with Phi-4's chat markers and its image / audio tokens, and a
Phi4MultimodalFeatureExtractor (80 mel bins, as Phi-4 has).

Random weights: what it generates means nothing; the tests use it to prove prompts, constrained generation,
batching, LoRA training and serving are wired.
"""
from __future__ import annotations

from pathlib import Path

import torch

from saywell.engine.profiles.lmm.config import LmmConfig, lmm_ref
from saywell.engine.profiles.lmm.schema import ERRORS, PHONES, SCHEMA_TOKENS

AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS)
# Phi-4-multimodal's (transformers' conversion names the image and audio tokens as extra special tokens).
PHI_IMAGE, PHI_AUDIO = "<|endoftext10|>", "<|endoftext11|>"
PHI_CHAT = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


def tiny_tokenizer(architecture: str = "qwen2-audio"):
    """A byte-level BPE tokenizer without merges (every byte a token) plus added whole tokens for the schema's
    fixed strings, the phones and the error types: a small vocabulary that still spells any text. Its special
    tokens are the architecture's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    alphabet = ByteLevel.alphabet()
    vocab = {char: index for index, char in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    if architecture == "phi4-multimodal":
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                            pad_token=END_OF_TEXT,
                                            extra_special_tokens={"image_token": PHI_IMAGE, "audio_token": PHI_AUDIO})
        tokenizer.add_tokens(list(PHI_CHAT), special_tokens=True)
    else:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=IM_END, pad_token=END_OF_TEXT,
                                            additional_special_tokens=list(SPECIAL_TOKENS[1:]))
    tokenizer.add_tokens(sorted(set(SCHEMA_TOKENS) | set(PHONES) | set(ERRORS), key=lambda t: (-len(t), t)))
    tokenizer.padding_side = "left"
    return tokenizer


def write_tiny_model(folder: str | Path, seed: int = 0, constrained: bool = True,
                     architecture: str = "qwen2-audio") -> LmmConfig:
    """`folder/base/` (a tiny random model of `architecture`, its tokenizer and processor) and `folder/lmm.json`."""
    if architecture == "phi4-multimodal":
        return write_tiny_phi4(folder, seed, constrained)
    from transformers import (Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor,
                              WhisperFeatureExtractor)

    folder = Path(folder).resolve()
    base = folder / "base"
    base.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, return_attention_mask=True)
    processor = Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    processor.save_pretrained(base)
    text = dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    audio = dict(model_type="qwen2_audio_encoder", num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2,
                 encoder_ffn_dim=64, d_model=32, max_source_positions=1500)
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(Qwen2AudioConfig(
        audio_config=audio, text_config=text, audio_token_index=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(base)
    config = LmmConfig(folder=folder, base_model=lmm_ref(folder, "base"), processor=lmm_ref(folder, "base"),
                       adapter=None, constrained=constrained)
    config.save()
    return config


def write_tiny_phi4(folder: str | Path, seed: int = 0, constrained: bool = True) -> LmmConfig:
    """`folder/base/`: a tiny random Phi4MultimodalForCausalLM, its tokenizer and its feature extractor (no
    image processor: transformers' needs torchvision and nothing here passes images), and `folder/lmm.json`."""
    from transformers import Phi4MultimodalConfig, Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM

    folder = Path(folder).resolve()
    base = folder / "base"
    base.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer("phi4-multimodal")
    tokenizer.save_pretrained(base)
    Phi4MultimodalFeatureExtractor(feature_size=80, sampling_rate=16000).save_pretrained(base)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    audio = dict(hidden_size=32, intermediate_size=64, num_blocks=1, num_attention_heads=2, ext_pw_out_channel=32,
                 depthwise_separable_out_channel=32, nemo_conv_channels=32, input_size=80,
                 audio_token_id=tokenizer.audio_token_id)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14, crop_size=28, image_token_id=tokenizer.image_token_id)
    torch.manual_seed(seed)
    model = Phi4MultimodalForCausalLM(Phi4MultimodalConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, original_max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=[tokenizer.eos_token_id, end],
        pad_token_id=tokenizer.pad_token_id, audio_config=audio, vision_config=vision))
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, end]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(base)
    config = LmmConfig(folder=folder, base_model=lmm_ref(folder, "base"), processor=lmm_ref(folder, "base"),
                       adapter=None, architecture="phi4-multimodal", constrained=constrained)
    config.save()
    return config
