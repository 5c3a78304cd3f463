"""Stages whose `run_batch` is one request to a Triton model: a saywell batch becomes one inference request
(Triton's dynamic batcher then batches requests across saywell's streams and replicas), with the local stages'
items and results, so the profile cannot tell them apart.

`load()` returns what the profile reads of a model (frame step, dimensions) as the export described it in the
model's config: nothing is loaded in the replica. A request that fails hands every item of the batch the error
(UnavailableError when Triton is gone or late), as the Stage shape asks: one failed batch never raises.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saywell.engine.backends.triton import wire
from saywell.engine.backends.triton.connection import TritonConnection
from saywell.engine.types import EngineError


@dataclass(frozen=True)
class RemoteEncoder:
    """An audio model served by Triton, as the profile sees it (the local SpeechEncoder's attributes)."""

    frame_ms: float
    min_samples: int
    out_dim: int


@dataclass(frozen=True)
class HeadsDims:
    ssl_dim: int
    word_dim: int
    sentence_dim: int
    phone_dim: int
    phone_classes: int


@dataclass(frozen=True)
class RemoteHeads:
    config: HeadsDims


class TritonStage:
    """A stage `name` served as Triton model `model` at `version`; `meta` is the export's description of it."""

    def __init__(self, name: str, connection: TritonConnection, version: str, meta: Mapping[str, Any]) -> None:
        self.name = name
        self.model = wire.model_name(name)
        self.version = version
        self.meta = dict(meta)
        self._connection = connection.acquire()
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.release()

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """One request; raises UnavailableError / EngineError naming the model and version."""
        from tritonclient.grpc.aio import InferInput, InferRequestedOutput
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for name, array in inputs.items():
            tensor = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            tensors.append(tensor)
        wanted = [InferRequestedOutput(name) for name in outputs]

        async def request(client, timeout_s: float):
            result = await client.infer(self.model, tensors, model_version=self.version, outputs=wanted,
                                        client_timeout=timeout_s)
            return {name: result.as_numpy(name) for name in outputs}

        return self._connection.call(f"model {self.model} version {self.version}", request)

    def _run(self, items: Sequence, results: list, usable: list[int], inputs, outputs, collect) -> list:
        """Sends the usable items as one request; every one of them gets the error if it fails."""
        if usable:
            try:
                answer = self.infer(inputs, outputs)
            except EngineError as exc:
                for index in usable:
                    results[index] = exc
            else:
                for row, index in enumerate(usable):
                    results[index] = collect(answer, row)
        return results


class TritonAudioStage(TritonStage):
    """Stage: 16 kHz mono audio -> (frames, dim) float32 per item, as EncoderStage."""

    def load(self) -> RemoteEncoder:
        return RemoteEncoder(float(self.meta["frame_ms"]), int(self.meta["min_samples"]), int(self.meta["out_dim"]))

    def run_batch(self, items: Sequence[np.ndarray]) -> list[np.ndarray | Exception]:
        results: list[Any] = [None] * len(items)
        usable = []
        for index, audio in enumerate(items):
            if np.asarray(audio).ndim != 1:
                results[index] = EngineError(f"{self.name}: expected mono audio, got shape {np.shape(audio)}")
            else:
                usable.append(index)
        if not usable:
            return results
        audio, lengths = wire.pad([np.asarray(items[i], np.float32) for i in usable], np.float32)

        def collect(answer, row):
            n = int(answer[wire.OUTPUT_LENGTHS][row, 0])
            return np.ascontiguousarray(answer[wire.OUTPUT][row, :n], dtype=np.float32)

        return self._run(items, results, usable, {wire.AUDIO: audio, wire.LENGTHS: lengths},
                         (wire.OUTPUT, wire.OUTPUT_LENGTHS), collect)


class TritonHeadsStage(TritonStage):
    """Stage: heads item (frames, spans, words, sentence, phones, phone_ids, phone_owner) -> (word scores (N, 3),
    sentence scores (4,), phone accuracy (P,)), as HeadsStage."""

    def load(self) -> RemoteHeads:
        config = self.meta["config"]
        if "phone_dim" not in config:
            raise EngineError(f"Triton's {self.model} version {self.version} was exported from heads without a phone "
                              "level (before saywell-neural-heads/3): export this model folder again "
                              "(deploy/triton/export.py)")
        return RemoteHeads(HeadsDims(int(config["ssl_dim"]), int(config["word_dim"]), int(config["sentence_dim"]),
                                     int(config["phone_dim"]), int(config["phone_classes"])))

    def flag_thresholds(self) -> tuple[tuple[float, float], ...]:
        return tuple(tuple(float(v) for v in row) for row in self.meta["flag_thresholds"])

    def run_batch(self, items: Sequence) -> list[tuple[np.ndarray, np.ndarray] | Exception]:
        dims = self.load().config
        results: list[Any] = [None] * len(items)
        usable = []
        for index, item in enumerate(items):
            problem = item.problem(dims.ssl_dim, dims.phone_dim, dims.phone_classes)  # the local stage's check
            if problem:
                results[index] = EngineError(problem)
            else:
                usable.append(index)
        if not usable:
            return results
        chosen = [items[i] for i in usable]
        frames, frame_lengths = wire.pad([np.asarray(i.frames, np.float32) for i in chosen], np.float32)
        spans, _ = wire.pad([np.asarray(i.spans, np.int64).reshape(-1, 2) for i in chosen], np.int64)
        words, word_lengths = wire.pad([np.asarray(i.words, np.float32) for i in chosen], np.float32)
        sentence = np.stack([np.asarray(i.sentence, np.float32) for i in chosen])
        phones, phone_lengths = wire.pad([np.asarray(i.phones, np.float32) for i in chosen], np.float32)
        phone_ids, _ = wire.pad([np.asarray(i.phone_ids, np.int64) for i in chosen], np.int64)
        phone_owner, _ = wire.pad([np.asarray(i.phone_owner, np.int64) for i in chosen], np.int64)
        inputs = {wire.FRAMES: frames, wire.FRAME_LENGTHS: frame_lengths, wire.SPANS: spans,
                  wire.WORD_VALUES: words, wire.WORD_LENGTHS: word_lengths, wire.SENTENCE_VALUES: sentence,
                  wire.PHONE_VALUES: phones, wire.PHONE_IDS: phone_ids, wire.PHONE_OWNER: phone_owner,
                  wire.PHONE_LENGTHS: phone_lengths}

        def collect(answer, row):
            item = items[usable[row]]
            return (np.array(answer[wire.WORD_SCORES][row, :len(item.words)], np.float32),
                    np.array(answer[wire.SENTENCE_SCORES][row], np.float32),
                    np.array(answer[wire.PHONE_SCORES][row, :len(item.phones)], np.float32))

        return self._run(items, results, usable, inputs, (wire.WORD_SCORES, wire.SENTENCE_SCORES, wire.PHONE_SCORES),
                         collect)
