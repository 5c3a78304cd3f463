"""Profiles by name. An entry names the module and the factory; it is imported only when chosen, so a server
running one profile never imports another's dependencies."""
from __future__ import annotations

import importlib

from saywell.engine.types import EngineError

PROFILES: dict[str, str] = {
    "cpu": "saywell.engine.profiles.cpu:CpuEngine",
    "synthetic": "saywell.engine.profiles.synthetic:SyntheticEngine",
    "neural": "saywell.engine.profiles.neural:NeuralEngine",
    "lmm": "saywell.engine.profiles.lmm:LmmEngine",
}


def load_profile(name: str):
    if name not in PROFILES:
        raise EngineError(f"unknown engine profile {name!r}; available: {', '.join(PROFILES)}")
    module, factory = PROFILES[name].split(":")
    return getattr(importlib.import_module(module), factory)
