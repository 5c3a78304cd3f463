"""The neural profile's model folder: `neural.json` names the ASR, the frame phone classifier (with its phone
list), the SSL encoder and the heads checkpoint; this module reads it, checks where each model comes from, and
picks the torch device.

A model entry is a folder relative to the model folder (or absolute), or a hub id. Local folders always load;
hub ids only with `allow_download` (the server's --allow-download), so a server never reaches the network
unless told to. `model_versions` names each model with a short hash of its files, so a result says which
weights produced it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from saywell.engine.types import EngineError
from saywell.engine.weights import ModelRef, save_json, sha256_of
from saywell.engine.weights import model_ref as weights_model_ref

CONFIG_NAME = "neural.json"
FORMAT = "saywell-neural/1"
HASH_CHARS = 12
# Files whose bytes define a transformers model folder (weights and architecture), hashed for model_versions.
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "preprocessor_config.json")


@dataclass(frozen=True)
class AlignerConfig:
    model: ModelRef
    phones: tuple[str, ...]  # the classifier's class names in class-id order (ARPAbet without stress, specials)
    silence: str | None  # the class that means silence, if the classifier has one
    min_frames: int = 1  # the least frames a phone may take in the forced alignment


@dataclass(frozen=True)
class NeuralConfig:
    folder: Path
    asr: str  # a packaged faster-whisper name ("tiny.en"), a CTranslate2 folder, or a hub id
    aligner: AlignerConfig
    ssl: ModelRef
    heads: Path
    trained: dict[str, Any] = field(default_factory=dict)  # what `saywell train` wrote about the heads

    @classmethod
    def load(cls, folder: str | Path) -> NeuralConfig:
        if not str(folder):
            raise EngineError("the neural profile has no packaged models: pass --model-dir, a folder with "
                              f"{CONFIG_NAME} (engine/profiles/neural/README.md says how to make one)")
        folder = Path(folder).resolve()
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise EngineError(f"no {CONFIG_NAME} in the neural model folder {folder}")
        try:
            data = json.loads(path.read_text())
            aligner = data["aligner"]
            phones = tuple(str(p) for p in aligner["phones"])
            silence = aligner.get("silence")
            config = cls(folder=folder, asr=str(data["asr"]),
                         aligner=AlignerConfig(model_ref(folder, aligner["model"]), phones, silence,
                                               int(aligner.get("min_frames", 1))),
                         ssl=model_ref(folder, data["ssl"]["model"]), heads=folder / data.get("heads", "heads.pt"),
                         trained=dict(data.get("trained", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"{path} is not a valid {FORMAT} config: {type(exc).__name__}: {exc}") from exc
        if data.get("format", FORMAT) != FORMAT:
            raise EngineError(f"{path} has format {data.get('format')!r}; this saywell reads {FORMAT!r}")
        if silence is not None and silence not in phones:
            raise EngineError(f"{path}: the silence class {silence!r} is not among the aligner's phones")
        if config.aligner.min_frames < 1:
            raise EngineError(f"{path}: aligner min_frames must be >= 1")
        return config

    def check_sources(self, allow_download: bool) -> None:
        """Refuses hub ids unless downloads are allowed (the ASR's loader checks its own)."""
        for role, ref in (("aligner", self.aligner.model), ("ssl", self.ssl)):
            if ref.is_hub and not allow_download:
                raise EngineError(f"the neural profile's {role} model {ref.source!r} is no folder under "
                                  f"{self.folder}, so a hub id, and downloads are off: pass --allow-download (needs "
                                  "the network) or point neural.json at a local folder")

    def to_json(self) -> dict[str, Any]:
        def written(ref: ModelRef) -> str:
            return ref.written(self.folder)

        data: dict[str, Any] = {
            "format": FORMAT, "asr": self.asr,
            "aligner": {"model": written(self.aligner.model), "phones": list(self.aligner.phones),
                        "silence": self.aligner.silence, "min_frames": self.aligner.min_frames},
            "ssl": {"model": written(self.ssl)}, "heads": str(self.heads.relative_to(self.folder))}
        if self.trained:
            data["trained"] = self.trained
        return data

    def save(self) -> Path:
        return save_json(self.folder / CONFIG_NAME, self.to_json())


def model_ref(folder: Path, source: str) -> ModelRef:
    """A folder (relative to the model folder, or absolute) when one is there, else a hub id."""
    return weights_model_ref(folder, source, MODEL_FILES, "neural model")


def file_hash(path: Path) -> str:
    return sha256_of(path)[:HASH_CHARS]
