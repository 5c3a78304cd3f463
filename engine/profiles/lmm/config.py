"""The lmm profile's model folder: `lmm.json` names the base model, its processor and the LoRA adapter; this
module reads it and checks where each comes from (the neural profile's rules: a folder relative to the model
folder or absolute loads always, a hub id only with allow_download).

    {"format": "saywell-lmm/1", "architecture": "qwen2-audio",
     "base_model": "Qwen/Qwen2-Audio-7B-Instruct", "processor": "Qwen/Qwen2-Audio-7B-Instruct",
     "adapter": "adapter", "constrained": true, "max_new_tokens": 2048, "dtype": "auto"}

`architecture` is `qwen2-audio` or `phi4-multimodal` (architectures.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from saywell.engine.profiles.lmm.architectures import NAMES
from saywell.engine.types import EngineError
from saywell.engine.weights import ModelRef, model_ref, save_json

CONFIG_NAME = "lmm.json"
FORMAT = "saywell-lmm/1"
# The architectures lmm.json may name (architectures.py: what differs between them).
ARCHITECTURES = NAMES  # ("qwen2-audio", "phi4-multimodal")
DTYPES = ("auto", "float32", "bfloat16", "float16")  # auto: bfloat16 on CUDA, float32 on the CPU
# Files whose bytes define a model, processor or adapter folder, hashed for model_versions.
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "adapter_config.json",
               "adapter_model.safetensors", "tokenizer.json", "preprocessor_config.json", "processor_config.json",
               "speech-lora/adapter_model.safetensors")


@dataclass(frozen=True)
class LmmConfig:
    folder: Path
    base_model: ModelRef
    processor: ModelRef
    adapter: ModelRef | None  # a LoRA adapter (peft) over the base model; None: the base model as is
    architecture: str = "qwen2-audio"
    constrained: bool = True  # the default scorer: schema-constrained decoding ("free": the model's own text)
    max_new_tokens: int = 2048  # an assessment longer than this is incomplete, and fails
    dtype: str = "auto"
    trained: dict[str, Any] = field(default_factory=dict)  # what `saywell train --profile lmm` wrote

    @classmethod
    def load(cls, folder: str | Path) -> LmmConfig:
        if not str(folder):
            raise EngineError("the lmm profile has no packaged models: pass --model-dir, a folder with "
                              f"{CONFIG_NAME} (engine/profiles/lmm/README.md says how to make one)")
        folder = Path(folder).resolve()
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise EngineError(f"no {CONFIG_NAME} in the lmm model folder {folder}")
        try:
            data = json.loads(path.read_text())
            base = lmm_ref(folder, data["base_model"])
            config = cls(folder=folder, base_model=base,
                         processor=lmm_ref(folder, data["processor"]) if data.get("processor") else base,
                         adapter=lmm_ref(folder, data["adapter"]) if data.get("adapter") else None,
                         architecture=str(data.get("architecture", "qwen2-audio")),
                         constrained=bool(data.get("constrained", True)),
                         max_new_tokens=int(data.get("max_new_tokens", 2048)), dtype=str(data.get("dtype", "auto")),
                         trained=dict(data.get("trained", {})))
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise EngineError(f"{path} is not a valid {FORMAT} config: {type(exc).__name__}: {exc}") from exc
        if data.get("format", FORMAT) != FORMAT:
            raise EngineError(f"{path} has format {data.get('format')!r}; this saywell reads {FORMAT!r}")
        if config.architecture not in ARCHITECTURES:
            raise EngineError(f"{path}: architecture {config.architecture!r} is not supported; supported: "
                              f"{', '.join(ARCHITECTURES)}")
        if config.dtype not in DTYPES or config.max_new_tokens < 16:
            raise EngineError(f"{path}: dtype must be one of {', '.join(DTYPES)} and max_new_tokens >= 16")
        return config

    def check_sources(self, allow_download: bool) -> None:
        for role, ref in (("base_model", self.base_model), ("processor", self.processor), ("adapter", self.adapter)):
            if ref is not None and ref.is_hub and not allow_download:
                raise EngineError(f"the lmm profile's {role} {ref.source!r} is no folder under {self.folder}, so a "
                                  "hub id, and downloads are off: pass --allow-download (needs the network) or "
                                  "point lmm.json at a local folder")

    def versions(self) -> dict[str, str]:
        refs = {"base_model": self.base_model, "processor": self.processor, "adapter": self.adapter}
        return {role: version_of(ref) for role, ref in refs.items() if ref is not None}

    def to_json(self) -> dict[str, Any]:
        def written(ref: ModelRef | None) -> str | None:
            return None if ref is None else ref.written(self.folder)

        data: dict[str, Any] = {"format": FORMAT, "architecture": self.architecture,
                                "base_model": written(self.base_model), "processor": written(self.processor),
                                "adapter": written(self.adapter), "constrained": self.constrained,
                                "max_new_tokens": self.max_new_tokens, "dtype": self.dtype}
        if self.trained:
            data["trained"] = self.trained
        return data

    def save(self) -> Path:
        return save_json(self.folder / CONFIG_NAME, self.to_json())


def lmm_ref(folder: Path, source: str) -> ModelRef:
    """A folder (relative to the model folder, or absolute) when one is there, else a hub id."""
    return model_ref(folder, source, MODEL_FILES, "lmm model")


def version_of(ref: ModelRef) -> str:
    """`name@hash` over the folder's defining files (weights, adapter, tokenizer), or the hub id as is."""
    return ref.version()
