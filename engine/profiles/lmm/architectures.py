"""What differs between the speech LLMs the lmm profile runs: one small `Architecture` each (its transformers model
class, how its processor is loaded, its prompt, the token that ends its answer, the base model's own adapters
and where LoRA goes). Everything else (the processor call, batched generation with left padding, the
schema-constrained walker, the parser, training) is shared and goes through this interface.

- `qwen2-audio`: `Qwen2AudioForConditionalGeneration` and `Qwen2AudioProcessor` (AutoProcessor).
- `phi4-multimodal`: transformers' native `Phi4MultimodalForCausalLM` and `Phi4MultimodalProcessor`. The
  processor is built from the folder's `Phi4MultimodalFeatureExtractor` and tokenizer with an inert image
  processor: transformers' `Phi4MultimodalImageProcessor` needs torchvision, and this profile passes no images.
  The base folder's `speech-lora/` (Microsoft's speech adapter, as transformers' conversion script writes it)
  is merged into the weights before the assessment adapter, as Phi-4's audio path expects.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from saywell.engine.profiles.lmm.prompts import phi4_prompt, qwen2_audio_prompt

SPEECH_LORA = "speech-lora"  # Phi-4-multimodal's speech adapter, a subfolder of the (converted) base model


class Architecture:
    name: str
    model_type: str  # the base model's config.json `model_type`, for `saywell train` to recognise it
    lora_targets: str  # peft target_modules: the language model's attention and MLP projections

    def model_class(self):
        raise NotImplementedError

    def load_processor(self, location: str, local: bool):
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(location, local_files_only=local)

    def prompt(self, reference: Sequence[str] | None, processor) -> str:
        raise NotImplementedError

    def end_token_id(self, tokenizer) -> int:
        """The token that ends the assessment (training appends it; generation stops on it)."""
        return tokenizer.eos_token_id

    def prepare_base(self, model, location: str, local: bool):
        """The base model as the assessment adapter is trained on and served over (its own adapters merged)."""
        return model


class Qwen2Audio(Architecture):
    name, model_type = "qwen2-audio", "qwen2_audio"
    lora_targets = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"

    def model_class(self):
        from transformers import Qwen2AudioForConditionalGeneration

        return Qwen2AudioForConditionalGeneration

    def prompt(self, reference: Sequence[str] | None, processor) -> str:
        return qwen2_audio_prompt(reference, processor.audio_token)


class Phi4Multimodal(Architecture):
    name, model_type = "phi4-multimodal", "phi4_multimodal"
    # The text model's fused projections (the ones Microsoft's speech and vision LoRAs use); the audio encoder's
    # and the vision encoder's layers do not match (they are not under `model.layers`).
    lora_targets = r"model\.layers\.\d+\.(self_attn\.(qkv|o)_proj|mlp\.(gate_up|down)_proj)"
    END = "<|end|>"

    def model_class(self):
        from transformers import Phi4MultimodalForCausalLM

        return Phi4MultimodalForCausalLM

    def load_processor(self, location: str, local: bool):
        from transformers import AutoTokenizer, Phi4MultimodalFeatureExtractor, Phi4MultimodalProcessor
        from transformers.image_processing_backends import PilBackend

        extractor = Phi4MultimodalFeatureExtractor.from_pretrained(location, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local)
        if getattr(tokenizer, "audio_token", None) is None:
            raise ValueError(f"the tokenizer in {location} names no audio_token (transformers' Phi-4 layout has "
                             "extra_special_tokens image_token and audio_token)")
        return Phi4MultimodalProcessor(image_processor=PilBackend(), audio_processor=extractor, tokenizer=tokenizer)

    def prompt(self, reference: Sequence[str] | None, processor) -> str:
        return phi4_prompt(reference, processor.audio_token)

    def end_token_id(self, tokenizer) -> int:
        token = tokenizer.convert_tokens_to_ids(self.END)
        if token is None or token == tokenizer.unk_token_id:
            raise ValueError(f"the Phi-4 tokenizer has no {self.END} token")
        return token

    def prepare_base(self, model, location: str, local: bool):
        folder = Path(location)
        if folder.is_dir() and not (folder / SPEECH_LORA / "adapter_config.json").is_file():
            return model  # a folder without Microsoft's speech adapter (the tiny test models)
        from peft import PeftModel

        return PeftModel.from_pretrained(model, location, subfolder=SPEECH_LORA,
                                         local_files_only=local).merge_and_unload()


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (Qwen2Audio(), Phi4Multimodal())}
NAMES = tuple(ARCHITECTURES)


def architecture(name: str) -> Architecture:
    return ARCHITECTURES[name]


def architecture_of_model_type(model_type: str) -> Architecture | None:
    return next((a for a in ARCHITECTURES.values() if a.model_type == model_type), None)


def load_base(arch: Architecture, base: str, processor: str, dtype, local: bool):
    """(processor, model): the base model of `arch` in `dtype`, its own adapters merged, on the CPU. A base model
    of another architecture is a ValueError (transformers would load it into the wrong class with a warning)."""
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(base, local_files_only=local).model_type
    if model_type != arch.model_type:
        raise ValueError(f"the base model {base} is a {model_type!r} model, not {arch.name} ({arch.model_type!r})")
    loaded_processor = arch.load_processor(processor, local)
    model = arch.model_class().from_pretrained(base, dtype=dtype, local_files_only=local)
    return loaded_processor, arch.prepare_base(model, base, local)
