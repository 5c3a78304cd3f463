"""The neural profile's model folder: `neural.json` names the ASR, the frame phone classifier (with its phone
list), the SSL encoder, the heads checkpoint and, when trained, the trees blended with the heads; this module
reads it and checks where each model comes from.

Two configurations share the format. Faithful MultiPA: `ssl.model` is a wav2vec2-family encoder and
`aligner.model` a frame classifier over audio (transformers folders or hub ids). Embedded: `ssl.whisper` names a
Whisper model whose encoder frames stand in for the SSL encoder, and `aligner.head` a small phone classifier
checkpoint over those frames (`phone_head.py`), so nothing comes from a hub.

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
from saywell.engine.weights import PACKAGED_DATA, ModelRef, save_json, sha256_of
from saywell.engine.weights import model_version as whisper_version
from saywell.engine.weights import model_ref as weights_model_ref

CONFIG_NAME = "neural.json"
PACKAGED_FOLDER = PACKAGED_DATA / "neural"  # `--model-dir` unset: the shipped embedded configuration
FORMAT = "saywell-neural/1"
HASH_CHARS = 12
# Files whose bytes define a transformers model folder (weights and architecture), hashed for model_versions.
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "preprocessor_config.json")


@dataclass(frozen=True)
class AlignerConfig:
    model: ModelRef | None  # a frame classifier over audio (Charsiu-style), or None with `head`
    phones: tuple[str, ...]  # the classifier's class names in class-id order (ARPAbet without stress, specials)
    silence: str | None  # the class that means silence, if the classifier has one
    min_frames: int = 1  # the least frames a phone may take in the forced alignment
    head: Path | None = None  # embedded: a phone classifier checkpoint over the SSL frames (phone_head.py)

    def version(self) -> str:
        return file_version(self.head) if self.head is not None else self.model.version()


@dataclass(frozen=True)
class NeuralConfig:
    folder: Path
    asr: str  # a packaged faster-whisper name ("tiny.en"), a CTranslate2 folder, or a hub id
    aligner: AlignerConfig
    ssl: ModelRef | None  # a wav2vec2-family encoder, or None with `ssl_whisper`
    heads: Path
    trained: dict[str, Any] = field(default_factory=dict)  # what `saywell train` wrote about the heads
    ssl_whisper: str | None = None  # embedded: the Whisper model whose encoder frames are the SSL frames
    trees: Path | None = None  # gradient-boosted trees blended with the heads' scores (trees.py), when trained

    @property
    def embedded(self) -> bool:
        return self.ssl_whisper is not None

    def ssl_version(self) -> str:
        if self.ssl is None:
            return f"whisper-encoder:{self.ssl_whisper} ({whisper_version(self.ssl_whisper)})"
        return self.ssl.version()

    @classmethod
    def embedded_in(cls, folder: str | Path, whisper: str) -> NeuralConfig:
        """The embedded configuration for `folder` (not saved): Whisper `whisper` for the ASR and the SSL frames,
        phone-head.pt over those frames, heads.pt."""
        from saywell.engine.profiles.neural.phone_head import EMBEDDED_PHONES, SILENCE_CLASS

        folder = Path(folder).resolve()
        return cls(folder=folder, asr=whisper, ssl=None, ssl_whisper=whisper, heads=folder / "heads.pt",
                   aligner=AlignerConfig(None, EMBEDDED_PHONES, SILENCE_CLASS, 1, folder / "phone-head.pt"))

    @classmethod
    def load(cls, folder: str | Path) -> NeuralConfig:
        if not str(folder):
            if not (PACKAGED_FOLDER / CONFIG_NAME).is_file():
                raise EngineError("this saywell has no packaged neural models: pass --model-dir, a folder with "
                                  f"{CONFIG_NAME} (engine/profiles/neural/README.md says how to make one)")
            folder = PACKAGED_FOLDER  # the embedded configuration, trained offline and shipped in the package
        folder = Path(folder).resolve()
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise EngineError(f"no {CONFIG_NAME} in the neural model folder {folder}")
        try:
            data = json.loads(path.read_text())
            aligner = data["aligner"]
            phones = tuple(str(p) for p in aligner["phones"])
            silence = aligner.get("silence")
            ssl = data["ssl"]
            if ("model" in ssl) == ("whisper" in ssl):
                raise ValueError("ssl needs exactly one of 'model' (a speech encoder) and 'whisper' (a Whisper "
                                 "model whose encoder frames are used)")
            if ("model" in aligner) == ("head" in aligner):
                raise ValueError("aligner needs exactly one of 'model' (a frame classifier over audio) and 'head' "
                                 "(a phone classifier checkpoint over the SSL frames)")
            if ("head" in aligner) != ("whisper" in ssl):
                raise ValueError("an aligner 'head' classifies Whisper encoder frames and Whisper frames need a "
                                 "head to classify them: ssl 'whisper' and aligner 'head' go together")
            config = cls(folder=folder, asr=str(data["asr"]),
                         aligner=AlignerConfig(model_ref(folder, aligner["model"]) if "model" in aligner else None,
                                               phones, silence, int(aligner.get("min_frames", 1)),
                                               folder / aligner["head"] if "head" in aligner else None),
                         ssl=model_ref(folder, ssl["model"]) if "model" in ssl else None,
                         heads=folder / data.get("heads", "heads.pt"), trained=dict(data.get("trained", {})),
                         ssl_whisper=str(ssl["whisper"]) if "whisper" in ssl else None,
                         trees=folder / data["trees"] if data.get("trees") else None)
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
            if ref is not None and ref.is_hub and not allow_download:
                raise EngineError(f"the neural profile's {role} model {ref.source!r} is no folder under "
                                  f"{self.folder}, so a hub id, and downloads are off: pass --allow-download (needs "
                                  "the network) or point neural.json at a local folder")

    def to_json(self) -> dict[str, Any]:
        def written(ref: ModelRef) -> str:
            return ref.written(self.folder)

        aligner: dict[str, Any] = ({"head": str(self.aligner.head.relative_to(self.folder))}
                                   if self.aligner.head is not None else {"model": written(self.aligner.model)})
        data: dict[str, Any] = {
            "format": FORMAT, "asr": self.asr,
            "aligner": {**aligner, "phones": list(self.aligner.phones), "silence": self.aligner.silence,
                        "min_frames": self.aligner.min_frames},
            "ssl": {"whisper": self.ssl_whisper} if self.ssl is None else {"model": written(self.ssl)},
            "heads": str(self.heads.relative_to(self.folder))}
        if self.trees is not None:
            data["trees"] = str(self.trees.relative_to(self.folder))
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


def file_version(path: Path) -> str:
    """`name@hash` of a checkpoint file, `name (missing)` when there is none."""
    return f"{path.name}@{file_hash(path)}" if path.is_file() else f"{path.name} (missing)"
