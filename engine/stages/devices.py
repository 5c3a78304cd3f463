"""Where a torch profile's models run: the `--device` rule every such profile shares."""
from __future__ import annotations

import re

import torch

from saywell.engine.types import EngineError


def resolve_device(name: str) -> torch.device:
    """`auto`: the first CUDA device when torch sees one, else the CPU; `cuda`, `cuda:N` or `cpu` as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not torch.cuda.is_available():
            raise EngineError(f"device {name!r} was asked for but torch {torch.__version__} sees no CUDA device; "
                              "use --device cpu or auto")
        return torch.device(name)
    raise EngineError(f"unknown device {name!r}; use auto (CUDA when present), cuda, cuda:N or cpu")
