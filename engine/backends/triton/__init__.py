"""The `triton` backend: a profile's model stages served by a Triton Inference Server that many saywell replicas
share (deploy/triton/: the model repository, its export and its README).

At start the replica asks Triton's repository index and each model's config for the version exported from the
weights its own model folder names (the export records their hash in the model config), and refuses to start,
naming the model, the version and the URL, when Triton is unreachable or that version is not ready.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from saywell.engine.backends import ModelStages
from saywell.engine.backends.triton import wire
from saywell.engine.backends.triton.connection import TritonConnection
from saywell.engine.backends.triton.stages import TritonAudioStage, TritonHeadsStage, TritonStage
from saywell.engine.options import EngineOptions
from saywell.engine.types import EngineError, UnavailableError

__all__ = ["TritonConnection", "triton_stages"]
EXPORT_HINT = "python deploy/triton/export.py --model-dir MODEL_DIR --repository REPOSITORY"


def triton_stages(local: ModelStages, options: EngineOptions) -> ModelStages:
    """Triton stages for `local`'s (same names, items and results), after checking that Triton serves the
    versions exported from `local.sources`; raises EngineError naming what is missing."""
    connection = TritonConnection(options.triton)
    stages: dict[str, TritonStage] = {}
    try:
        index = _repository_index(connection)
        for name in local.stages:
            if name not in wire.STAGES:
                raise EngineError(f"the triton backend cannot serve a stage named {name!r}; it serves "
                                  f"{', '.join(wire.STAGES)}")
            version, meta = _exported_version(connection, index, name, local.sources[name])
            kind = TritonHeadsStage if name == wire.HEADS_STAGE else TritonAudioStage
            stages[name] = kind(name, connection, version, meta)
    except BaseException:
        for stage in stages.values():
            stage.close()
        connection.close()
        raise
    return ModelStages(stages, dict(local.sources), checker=_readiness(connection, stages))


def _readiness(connection: TritonConnection, stages: Mapping[str, TritonStage]):
    """A check that Triton answers and has every model version this replica uses ready (off the event loop: the
    connection's calls block their caller)."""
    models = [(wire.model_name(name), stage.version) for name, stage in stages.items()]

    async def request(client, timeout_s):
        if not await client.is_server_ready(client_timeout=timeout_s):
            return f"Triton at {connection.url} is not ready"
        for model, version in models:
            if not await client.is_model_ready(model, version, client_timeout=timeout_s):
                return f"model {model!r} version {version} is not ready on Triton at {connection.url}"
        return None

    async def check() -> str | None:
        try:
            return await asyncio.to_thread(connection.call, "readiness", request)
        except EngineError as exc:
            return str(exc)

    return check


def _repository_index(connection: TritonConnection) -> dict[str, dict[str, str]]:
    """model name -> {version: state} of every model Triton knows."""
    async def request(client, timeout_s):
        return await client.get_model_repository_index(as_json=True, client_timeout=timeout_s)

    try:
        answer = connection.call("the repository index", request)
    except UnavailableError as exc:
        raise EngineError(f"the triton backend cannot start: Triton at {connection.url} is unreachable or not "
                          f"answering ({exc})") from None
    models: dict[str, dict[str, str]] = {}
    for model in answer.get("models", []):
        models.setdefault(model["name"], {})[str(model.get("version", ""))] = model.get("state", "UNKNOWN")
    return models


def _exported_version(connection: TritonConnection, index: Mapping[str, Mapping[str, str]], stage: str,
                      source: str) -> tuple[str, dict[str, Any]]:
    """The version of `stage`'s model exported from `source`, and its description's meta."""
    model = wire.model_name(stage)
    url = connection.url
    if model not in index:
        raise EngineError(f"the triton backend cannot start: Triton at {url} has no model {model!r} (it has: "
                          f"{', '.join(sorted(index)) or 'none'}); export it with `{EXPORT_HINT}`")

    async def request(client, timeout_s):
        return await client.get_model_config(model, as_json=True, client_timeout=timeout_s)

    try:
        config = connection.call(f"model {model}", request).get("config", {})
    except EngineError as exc:
        raise EngineError(f"the triton backend cannot start: {exc}") from None
    exported = {}
    for key, value in config.get("parameters", {}).items():
        if key.startswith("saywell_v"):
            exported[key.removeprefix("saywell_v")] = json.loads(value["string_value"])
    matching = sorted((v for v, d in exported.items() if wire.source_hash(d["source"]) == wire.source_hash(source)),
                      key=int)
    offered = ", ".join(f"{v} (from {d['source']})" for v, d in sorted(exported.items(), key=lambda e: int(e[0])))
    if not matching:
        raise EngineError(f"the triton backend cannot start: Triton at {url} serves model {model!r} in versions "
                          f"{offered or 'none described'}, none exported from this saywell's {source}; export it "
                          f"with `{EXPORT_HINT}` (a new version folder) and let Triton load it")
    ready = [v for v in matching if index[model].get(v) == "READY"]
    if not ready:
        states = ", ".join(f"{v}: {index[model].get(v, 'not loaded')}" for v in matching)
        raise EngineError(f"the triton backend cannot start: model {model!r} version {matching[-1]} (from {source}) "
                          f"is in Triton's repository at {url} but not ready ({states})")
    return ready[-1], exported[ready[-1]]["meta"]
