"""The lmm stage: a batch of utterances -> one padded `generate` call -> each row's text parsed into an
assessment (or the row's own AssessmentFormatError). The Stage shape (load / run_batch / close), so the
engine's BatchScheduler batches it across streams like any other stage."""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from saywell.engine.profiles.lmm.architectures import Architecture, architecture, load_base
from saywell.engine.profiles.lmm.config import LmmConfig
from saywell.engine.profiles.lmm.constrained import SchemaLogitsProcessor, SchemaWalker, Vocabulary, assessment_program
from saywell.engine.profiles.lmm.schema import AssessmentFormatError, ParsedAssessment, parse_assessment
from saywell.engine.types import SAMPLE_RATE, EngineError, InputError

MAX_AUDIO_S = 30.0  # Qwen2-Audio's encoder window: longer audio would be cut, so it is refused (Phi-4 too)
WORDS_PER_S, MIN_WORDS, MAX_WORDS = 4, 4, 96  # open mode's word budget: generous for learner speech


@dataclass(frozen=True)
class LmmItem:
    audio: np.ndarray = field(repr=False)  # 16 kHz mono float32
    reference: tuple[str, ...] | None  # closed mode's normalised reference words; None: open mode
    constrained: bool = True  # False: the model's own text, parsed strictly


@dataclass(frozen=True)
class Generated:
    text: str  # what the model wrote
    assessment: ParsedAssessment


@dataclass(frozen=True)
class Loaded:
    model: torch.nn.Module
    processor: object
    vocabulary: Vocabulary
    arch: Architecture
    end_token_id: int  # the token that ends an assessment (the architecture's)


def torch_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def load_model(config: LmmConfig, device: torch.device, allow_download: bool) -> Loaded:
    """The base model (its own adapters merged, architectures.py) with the assessment adapter merged in (one
    matrix per layer again: no LoRA cost per token), on `device`, and its processor with left padding
    (generation continues every row from its last token)."""
    arch = architecture(config.architecture)
    local = not allow_download
    try:
        processor, model = load_base(arch, config.base_model.location, config.processor.location,
                                     torch_dtype(config.dtype, device), local)
        if config.adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, config.adapter.location, local_files_only=local).merge_and_unload()
        end_token_id = arch.end_token_id(processor.tokenizer)
    except (OSError, ValueError) as exc:
        raise EngineError(f"the lmm model ({config.architecture}) could not be loaded from {config.folder}: "
                          f"{exc}") from exc
    processor.tokenizer.padding_side = "left"
    model.to(device).eval()
    return Loaded(model, processor, Vocabulary(processor.tokenizer), arch, end_token_id)


class LmmStage:
    name = "lmm"

    def __init__(self, config: LmmConfig, device: torch.device, allow_download: bool,
                 phones_of: Callable[[str], Sequence[str]]) -> None:
        self.config = config
        self.device = device
        self._allow_download = allow_download
        self._phones_of = phones_of
        self._loaded: Loaded | None = None
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []  # every generate call's batch size, for tests and benchmarks

    def load(self) -> Loaded:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = load_model(self.config, self.device, self._allow_download)
        return self._loaded

    def close(self) -> None:
        self._loaded = None

    def run_batch(self, items: Sequence[LmmItem]) -> list[Generated | Exception]:
        """One generate call for the whole batch; a row whose text is no assessment gets its own error."""
        loaded = self.load()
        for item in items:
            if len(item.audio) > MAX_AUDIO_S * SAMPLE_RATE:
                raise InputError(f"the lmm profile assesses utterances of up to {MAX_AUDIO_S:g} s")
        inputs = loaded.processor(text=[loaded.arch.prompt(item.reference, loaded.processor) for item in items],
                                  audio=[np.asarray(item.audio, np.float32) for item in items],
                                  sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt").to(self.device)
        prompt_length = inputs["input_ids"].shape[1]
        walkers = [self._walker(item, loaded.vocabulary) if item.constrained else None for item in items]
        tokenizer = loaded.processor.tokenizer
        with torch.inference_mode():
            output = loaded.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False, num_beams=1,
                logits_processor=[SchemaLogitsProcessor(walkers, prompt_length, loaded.end_token_id)],
                eos_token_id=loaded.end_token_id, pad_token_id=tokenizer.pad_token_id)
        self.batch_sizes.append(len(items))
        results: list[Generated | Exception] = []
        for item, walker, row in zip(items, walkers, output[:, prompt_length:]):
            text = tokenizer.decode(row, skip_special_tokens=True)
            try:
                if walker is not None and not walker.done:
                    raise AssessmentFormatError(f"the assessment did not end within max_new_tokens "
                                                f"({self.config.max_new_tokens}): raise it in lmm.json")
                results.append(Generated(text, parse_assessment(text, item.reference)))
            except AssessmentFormatError as exc:
                results.append(exc)
        return results

    def _walker(self, item: LmmItem, vocabulary: Vocabulary) -> SchemaWalker:
        walker: SchemaWalker | None = None
        budget = self.config.max_new_tokens - 1  # the end token takes the last step

        def remaining() -> int:
            return budget - (walker.consumed if walker is not None else 0)

        walker = SchemaWalker(assessment_program(item.reference, self._phones_of, open_words(item), remaining),
                              vocabulary)
        return walker


def open_words(item: LmmItem) -> int:
    seconds = len(item.audio) / SAMPLE_RATE
    return min(MAX_WORDS, MIN_WORDS + int(WORDS_PER_S * seconds))
