"""A tiny random Qwen2-Audio model folder, for tests and plumbing benchmarks.

`write_tiny_model(folder)` writes `base/`: a Qwen2-Audio model with a one-layer audio encoder and a two-layer
text model (hidden size 32) whose tokenizer is built here, offline: byte-level characters plus whole tokens for
the assessment schema's keys, the phones and the chat markers, so an assessment takes a few hundred generate
steps. Its processor is transformers' own `Qwen2AudioProcessor` (a WhisperFeatureExtractor with 128 mel bins,
as Qwen2-Audio has). And it writes `lmm.json` naming it. Random weights: what it generates means nothing; the
tests use it to prove prompts, constrained generation, batching, LoRA training and serving are wired.
"""
from __future__ import annotations

from pathlib import Path

import torch

from saywell.engine.profiles.lmm.config import LmmConfig, lmm_ref
from saywell.engine.profiles.lmm.schema import ERRORS, PHONES, SCHEMA_TOKENS

AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS)


def tiny_tokenizer():
    """A byte-level BPE tokenizer without merges (every byte a token) plus added whole tokens for the schema's
    fixed strings, the phones and the error types: a small vocabulary that still spells any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    alphabet = ByteLevel.alphabet()
    vocab = {char: index for index, char in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=IM_END, pad_token=END_OF_TEXT,
                                        additional_special_tokens=list(SPECIAL_TOKENS[1:]))
    tokenizer.add_tokens(sorted(set(SCHEMA_TOKENS) | set(PHONES) | set(ERRORS), key=lambda t: (-len(t), t)))
    tokenizer.padding_side = "left"
    return tokenizer


def write_tiny_model(folder: str | Path, seed: int = 0, constrained: bool = True) -> LmmConfig:
    """`folder/base/` (tiny random Qwen2-Audio, its tokenizer and processor) and `folder/lmm.json`."""
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
