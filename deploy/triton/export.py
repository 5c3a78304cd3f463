"""Exports a neural model folder (neural.json, the transformers folders, heads.pt) into a Triton model repository:

    python deploy/triton/export.py --model-dir models/neural --repository deploy/triton/models [--kind gpu]

For each model stage (phone_posteriors, ssl, heads) it writes `saywell_<stage>/<N>/` with the weights, this
folder's model.py (the Python backend running saywell's own stage code) and saywell.json, and records version N
in `saywell_<stage>/config.pbtxt` as the parameter saywell_v<N>: the weights' hash and what a replica needs to
know of the model. Exporting weights already exported reuses their version; other weights get the next number,
and every version stays served (version_policy all), so replicas move to new weights one by one.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from saywell.engine.backends.triton import wire
from saywell.engine.profiles.neural.config import MODEL_FILES, NeuralConfig, file_version
from saywell.engine.profiles.neural.encoders import load_frame_classifier, load_ssl_encoder
from saywell.engine.profiles.neural.heads import DEFAULT_FLAG_THRESHOLDS, load_heads

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "models"
MARK = "# --- written by deploy/triton/export.py: the exported versions (do not edit below) ---"


def describe_stages(config: NeuralConfig) -> dict[str, tuple[str, dict, list[Path]]]:
    """stage -> (source, meta, files to copy) from the model folder; the models load once, on the CPU."""
    if config.embedded:
        raise SystemExit(f"export: {config.folder} is the neural profile's embedded configuration (Whisper frames and "
                         "a phone head over them), which runs on the local backend only; export a faithful "
                         "configuration's folder (engine/profiles/neural/README.md)")
    for role, ref in (("aligner", config.aligner.model), ("ssl", config.ssl)):
        if ref.is_hub:
            raise SystemExit(f"export: the {role} model {ref.source!r} is a hub id; save it into the model folder "
                             "first (save_pretrained), the export copies local folders")
    classifier = load_frame_classifier(config.aligner.model, len(config.aligner.phones), False)
    ssl = load_ssl_encoder(config.ssl, False)
    heads, meta = load_heads(config.heads)

    def encoder_meta(encoder) -> dict:
        return {"frame_ms": encoder.frame_ms, "min_samples": encoder.min_samples, "out_dim": encoder.out_dim}

    def files(folder: Path) -> list[Path]:
        return [folder / name for name in MODEL_FILES if (folder / name).is_file()]

    thresholds = [list(row) for row in meta.get("flag_thresholds", DEFAULT_FLAG_THRESHOLDS)]
    return {
        "phone_posteriors": (config.aligner.model.version(),
                             {**encoder_meta(classifier), "classes": len(config.aligner.phones)},
                             files(config.aligner.model.path)),
        "ssl": (config.ssl.version(), encoder_meta(ssl), files(config.ssl.path)),
        "heads": (file_version(config.heads),
                  {"config": {"ssl_dim": heads.config.ssl_dim, "word_dim": heads.config.word_dim,
                              "sentence_dim": heads.config.sentence_dim, "phone_dim": heads.config.phone_dim,
                              "phone_classes": heads.config.phone_classes},
                   "flag_thresholds": thresholds},
                  [config.heads]),
    }


def versions_of(model_dir: Path) -> dict[int, dict]:
    """Exported versions in a model's folder: number -> saywell.json."""
    found = {}
    for child in model_dir.iterdir() if model_dir.is_dir() else ():
        if child.is_dir() and child.name.isdigit() and (child / "saywell.json").is_file():
            found[int(child.name)] = json.loads((child / "saywell.json").read_text())
    return found


def write_config(model_dir: Path, kind: str, instances: int) -> None:
    """The template's config (comments kept) with the instance kind and count, and one saywell_v<N> parameter per
    exported version; checked by parsing it as Triton would. The template is this saywell's, whatever the
    repository held before, so an export brings the model's inputs up to date (the versions' inputs only grow:
    inputs a version before them does not send are optional)."""
    path = model_dir / "config.pbtxt"
    text = (TEMPLATES / model_dir.name / "config.pbtxt").read_text().split(MARK)[0].rstrip() + "\n"
    text = re.sub(r"kind: KIND_\w+", f"kind: KIND_{kind.upper()}", text)
    text = re.sub(r"(instance_group \[\s*\{\s*count: )\d+", rf"\g<1>{instances}", text)
    lines = [MARK]
    for number, description in sorted(versions_of(model_dir).items()):
        value = json.dumps(wire.describe(description["stage"], description["source"], description["meta"]))
        lines.append(f'parameters: {{ key: "{wire.version_parameter(number)}" value: {{ string_value: {value} }} }}')
    path.write_text(text + "\n".join(lines) + "\n")
    text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def export(model_folder: str | Path, repository: str | Path, kind: str = "cpu", instances: int = 1,
           version: int | None = None) -> dict[str, int]:
    """Exports every model stage of `model_folder` into `repository`; returns stage -> version number."""
    config = NeuralConfig.load(model_folder)
    repository = Path(repository).resolve()
    exported = {}
    for stage, (source, meta, files) in describe_stages(config).items():
        model_dir = repository / wire.model_name(stage)
        model_dir.mkdir(parents=True, exist_ok=True)
        if not (model_dir / "config.pbtxt").is_file():
            shutil.copy(TEMPLATES / wire.model_name(stage) / "config.pbtxt", model_dir / "config.pbtxt")
        existing = versions_of(model_dir)
        same = [n for n, d in existing.items() if wire.source_hash(d["source"]) == wire.source_hash(source)]
        number = version if version is not None else (same[0] if same else max(existing, default=0) + 1)
        target = model_dir / str(number)
        if target.exists():
            shutil.rmtree(target)
        weights = target / ("model" if stage != wire.HEADS_STAGE else "")
        weights.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy(file, weights / file.name)
        shutil.copy(HERE / "model.py", target / "model.py")
        (target / "saywell.json").write_text(json.dumps({"stage": stage, "source": source, "meta": meta},
                                                        indent=1) + "\n")
        write_config(model_dir, kind, instances)
        exported[stage] = number
    return exported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="the neural model folder (with neural.json)")
    parser.add_argument("--repository", default=str(TEMPLATES), help="the Triton model repository to write")
    parser.add_argument("--kind", choices=("cpu", "gpu"), default="cpu", help="Triton instance kind")
    parser.add_argument("--instances", type=int, default=1, help="model instances per device")
    parser.add_argument("--version", type=int, default=None,
                        help="version number (default: the one these weights have, else the next)")
    args = parser.parse_args(argv)
    versions = export(args.model_dir, args.repository, args.kind, args.instances, args.version)
    for stage, number in versions.items():
        print(f"{wire.model_name(stage)} version {number} -> {Path(args.repository) / wire.model_name(stage)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
