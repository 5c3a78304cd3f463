"""The shape every engine stage has, so a scheduler, a worker process or a Triton client can run any of them.

`load()` brings the models in (lazily otherwise), `run_batch(items)` returns one result per item in order (the
exception for an item that failed, never a raise for the batch), `close()` lets resources go. This is Triton's
python-backend shape (initialize / execute(requests) / finalize), so a stage served by Triton is a drop-in.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

Item = TypeVar("Item", contravariant=True)
Result = TypeVar("Result", covariant=True)


@runtime_checkable
class Stage(Protocol[Item, Result]):
    name: str

    def load(self) -> Any: ...

    def run_batch(self, items: Sequence[Item]) -> list[Result | Exception]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class AlignItem:
    """Forced alignment of `words` to `audio`, with the phone loop already decoded for that audio if any."""

    audio: np.ndarray = field(repr=False)
    words: tuple[str, ...] | list[str]
    loop: Any = field(default=None, repr=False)  # the phone loop stage's result for this audio


def run_each(items: Sequence, run) -> list:
    """`run(item)` for each item; an item's exception is its result, so one bad item never fails a batch."""
    results = []
    for item in items:
        try:
            results.append(run(item))
        except Exception as exc:  # noqa: BLE001 - handed back to the item's caller, not swallowed
            results.append(exc)
    return results
