"""Where a profile's model stages run: a backend takes the stages a profile built to run in this process and
gives back stages of the same shape (`load / run_batch / close`, see `stages/base.py`) that run where it says.
"local" hands them back as they are; "triton" gives stages whose `run_batch` is a call to a Triton Inference
Server (`backends/triton/`). A profile asks `model_stages(name, ...)` and never imports a backend, so a new
backend is a new folder here and one entry in BACKENDS, never an edit above.

Backends sit below the profiles: they know stages by name and by the shape of their items and results, not
which profile built them.
"""
from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from saywell.engine.options import EngineOptions
from saywell.engine.stages.base import Stage
from saywell.engine.types import EngineError

# name -> "module:factory"; a backend is imported only when chosen (tritonclient only for "triton").
BACKENDS: dict[str, str] = {
    "local": "saywell.engine.backends:local_stages",
    "triton": "saywell.engine.backends.triton:triton_stages",
}


@dataclass(frozen=True)
class ModelStages:
    """A profile's model stages by stage name ("phone_posteriors", "ssl", "heads"), and what each was made from
    (`sources`: stage name -> `name@hash` of its weights) so a remote backend can check it serves those."""

    stages: Mapping[str, Stage]
    sources: Mapping[str, str]
    # None when the stages can serve, else why not (a remote backend asks its server); None: always can.
    checker: Callable[[], Awaitable[str | None]] | None = None

    async def check(self) -> str | None:
        return await self.checker() if self.checker is not None else None

    def __getitem__(self, name: str) -> Stage:
        return self.stages[name]

    def close(self) -> None:
        for stage in self.stages.values():
            stage.close()


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def local_stages(local: ModelStages, options: EngineOptions) -> ModelStages:
    """The stages run in this process, as the profile built them."""
    return local


def model_stages(backend: str, local: ModelStages, options: EngineOptions, offered: tuple[str, ...] = ()
                 ) -> ModelStages:
    """`local`'s stages as `backend` runs them. `offered`: the backends the calling profile supports (all when
    empty). Raises EngineError for an unknown backend, or when the backend cannot serve (unreachable, models or
    versions missing): the engine then refuses to start."""
    names = offered or backend_names()
    if backend not in names or backend not in BACKENDS:
        raise EngineError(f"no {backend!r} backend for these models; available: {', '.join(names)}")
    module, factory = BACKENDS[backend].split(":")
    return getattr(importlib.import_module(module), factory)(local, options)
