"""`saywell train --profile lmm`: LoRA adapters (peft) on a speech LLM, from a corpus in the speechocean762 layout.
The speech LLM is Qwen2-Audio or Phi-4-multimodal, told apart by the base model's config.json. Each utterance
gives a closed-mode example (the prompt carries the reference words) and an open-mode one (the model writes the
words); the target is the labels rendered as the assessment schema's JSON text, and only the target's tokens
carry the loss. Writes `adapter/`, `lmm.json` (with a `trained` block) and `MODEL_CARD.md`.

Labels speechocean762 lacks are left out of the targets rather than made up: phones carry no `heard` (it has no
phone-substitution labels here), and a word's error type is `mispronunciation` when its accuracy is under 5,
else `none` (no `omission` label exists).
"""
from __future__ import annotations

import argparse
import datetime
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from saywell.engine.language.lexicon import strip_stress
from saywell.engine.language.text import normalize_words
from saywell.engine.profiles.lmm.architectures import (
    ARCHITECTURES,
    Architecture,
    architecture,
    architecture_of_model_type,
    load_base,
)
from saywell.engine.profiles.lmm.config import LmmConfig, lmm_ref
from saywell.engine.profiles.lmm.schema import PHONES, render_target
from saywell.engine.profiles.lmm.stage import torch_dtype
from saywell.engine.stages.devices import resolve_device
from saywell.engine.types import SAMPLE_RATE, EngineError

MISPRONOUNCED_BELOW = 5.0  # word accuracy under which a target word's error is "mispronunciation"
# LoRA goes on the language model's attention and MLP projections (Architecture.lora_targets); the audio
# encoder stays as it is.


@dataclass(frozen=True)
class Example:
    audio_path: Path
    reference: tuple[str, ...] | None  # closed mode's words; None: open mode
    target: str = field(repr=False)


def examples_of(utterance, modes: Sequence[str]) -> list[Example]:
    """The utterance's examples in `modes`; none when its reference does not normalise to its labelled words."""
    words = tuple(w.text.lower() for w in utterance.words)
    if tuple(normalize_words(utterance.text)) != words:
        return []
    labelled = []
    for w in utterance.words:
        phones = tuple((strip_stress(p), a, None) for p, a in zip(w.phones, w.phones_accuracy)
                       if strip_stress(p) in PHONES)
        error = "mispronunciation" if w.accuracy < MISPRONOUNCED_BELOW else "none"
        labelled.append((w.text.lower(), (w.accuracy, w.stress, w.total), error, phones))
    return [Example(utterance.audio_path, words if mode == "closed" else None,
                    render_target(utterance.scores, labelled, mode == "closed")) for mode in modes]


def collate(examples: Sequence[Example], processor, load_audio: Callable[[Path], np.ndarray],
            arch: Architecture, end_token_id: int) -> dict:
    """A right-padded training batch: prompt tokens (audio expanded) then target tokens; labels on the target.
    The audio inputs are whatever the architecture's processor gives (Qwen2-Audio: input_features and
    feature_attention_mask; Phi-4: audio_input_features, audio_embed_sizes and, batched, audio_attention_mask)."""
    tokenizer = processor.tokenizer
    # The processor call the stage makes (so training sees the audio features serving sees); the prompt rows are
    # then taken out of their padding and right-padded again with their targets.
    prompts = processor(text=[arch.prompt(e.reference, processor) for e in examples],
                        audio=[load_audio(e.audio_path) for e in examples], sampling_rate=SAMPLE_RATE,
                        padding=True, return_tensors="pt")
    rows, labels = [], []
    for ids, mask, example in zip(prompts["input_ids"], prompts["attention_mask"], examples):
        prompt = ids[mask.bool()].tolist()
        target = tokenizer.encode(example.target, add_special_tokens=False) + [end_token_id]
        rows.append(list(prompt) + target)
        labels.append([-100] * len(prompt) + target)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id

    def padded(values: list[list[int]], fill: int) -> torch.Tensor:
        return torch.tensor([v + [fill] * (width - len(v)) for v in values])

    audio = {key: value for key, value in prompts.items() if key not in ("input_ids", "attention_mask")}
    return {"input_ids": padded(rows, pad), "attention_mask": padded([[1] * len(r) for r in rows], 0),
            "labels": padded(labels, -100), **audio}


def model_card(report: dict[str, Any]) -> str:
    return "\n".join([
        "# lmm profile: LoRA adapter", "",
        f"Base model `{report['base_model']}` ({report['architecture']}), LoRA rank {report['rank']} "
        f"(alpha {report['alpha']}) on the language model's attention and MLP projections, trained with "
        f"`saywell train --profile lmm` on {report['date']}.", "",
        f"Data: `{report['data']}`, {report['utterances']} utterances ({report['skipped']} skipped: reference not "
        f"matching the labelled words), {report['examples']} examples (modes: {', '.join(report['modes'])}).",
        f"Steps: {report['steps']}, batch {report['batch_size']}, learning rate {report['lr']}, device "
        f"{report['device']}.",
        f"Loss: first {report['first_loss']:.4f}, last {report['last_loss']:.4f} (mean of the last 10 steps).", "",
        "Targets: the labels as the assessment schema's JSON (engine/profiles/lmm/schema.py). No phone carries "
        "`heard` and no word `omission`: the corpus has no such labels.", "",
        "Tiny random models (engine/profiles/lmm/plumbing.py) prove the plumbing only: an adapter trained on them "
        "says nothing about pronunciation. No accuracy was measured for this adapter: run `saywell eval` on a "
        "held-out split before serving it.", ""])


def main(argv: Sequence[str], load_corpus: Callable[[str], list], load_audio: Callable[[Path], np.ndarray]) -> int:
    p = argparse.ArgumentParser(prog="saywell train --profile lmm", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="corpus folder in the speechocean762 layout")
    p.add_argument("--model-dir", required=True, help="where adapter/, lmm.json and MODEL_CARD.md go")
    p.add_argument("--base-model", required=True,
                   help="a Qwen2-Audio or Phi-4-multimodal folder or hub id (hub ids: --allow-download)")
    p.add_argument("--architecture", default="auto", choices=("auto", *ARCHITECTURES),
                   help="the base model's architecture (default: from its config.json)")
    p.add_argument("--processor", default="", help="its processor's folder or hub id (default: the base model's)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--rank", type=int, default=16, help="LoRA rank")
    p.add_argument("--alpha", type=int, default=32, help="LoRA alpha")
    p.add_argument("--modes", default="closed,open", help="comma-separated modes whose examples to train on")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu")
    p.add_argument("--allow-download", action="store_true", help="hub ids may download (needs the network)")
    p.add_argument("--limit", type=int, default=None, help="use only this many utterances (smoke runs)")
    p.add_argument("--seed", type=int, default=762)
    args = p.parse_args(list(argv))
    from peft import LoraConfig, get_peft_model

    folder = Path(args.model_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    sources = [str(Path(s).resolve()) if Path(s).is_dir() else s for s in (args.base_model, args.processor or
                                                                        args.base_model)]
    config = LmmConfig(folder=folder, base_model=lmm_ref(folder, sources[0]), processor=lmm_ref(folder, sources[1]),
                       adapter=None)
    config.check_sources(args.allow_download)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"open", "closed"}:
        raise SystemExit("--modes takes open, closed or both")
    corpus = load_corpus(args.data)
    if args.limit:
        corpus = random.Random(args.seed).sample(corpus, min(args.limit, len(corpus)))
    examples = [e for u in corpus for e in examples_of(u, modes)]
    if not examples:
        raise EngineError(f"no usable utterance in {args.data}")
    device = resolve_device(args.device)
    local = not args.allow_download
    arch = base_architecture(args.architecture, config.base_model.location, local)
    processor, model = load_base(arch, config.base_model.location, config.processor.location,
                                 torch_dtype("auto", device), local)
    end_token_id = arch.end_token_id(processor.tokenizer)
    torch.manual_seed(args.seed)
    model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0,
                                             target_modules=arch.lora_targets, task_type="CAUSAL_LM"))
    model.to(device).train()
    optimiser = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=args.lr)
    order = random.Random(args.seed)
    losses = []
    for _step in range(args.steps):
        batch = collate(order.sample(examples, min(args.batch_size, len(examples))), processor, load_audio, arch,
                        end_token_id)
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    model.save_pretrained(folder / "adapter")
    report = {"date": datetime.date.today().isoformat(), "data": str(args.data), "base_model": args.base_model,
              "architecture": arch.name,
              "utterances": len(corpus), "skipped": len(corpus) - len({e.audio_path for e in examples}),
              "examples": len(examples), "modes": modes, "steps": args.steps, "batch_size": args.batch_size,
              "lr": args.lr, "rank": args.rank, "alpha": args.alpha, "device": str(device),
              "first_loss": losses[0] if losses else float("nan"),
              "last_loss": float(np.mean(losses[-10:])) if losses else float("nan")}
    trained = LmmConfig(folder=folder, base_model=config.base_model, processor=config.processor,
                        adapter=lmm_ref(folder, "adapter"), architecture=arch.name, trained=report)
    trained.save()
    (folder / "MODEL_CARD.md").write_text(model_card(report))
    print(f"trained a LoRA adapter on {len(examples)} examples in {args.steps} steps (loss {report['first_loss']:.4f} "
          f"-> {report['last_loss']:.4f}); wrote adapter/, lmm.json and MODEL_CARD.md to {folder}")
    return 0


def base_architecture(name: str, location: str, local: bool) -> Architecture:
    """`name`, or (auto) the architecture whose model_type the base model's config.json gives."""
    if name != "auto":
        return architecture(name)
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(location, local_files_only=local).model_type
    found = architecture_of_model_type(model_type)
    if found is None:
        raise EngineError(f"the base model {location} is a {model_type!r}; the lmm profile trains "
                          f"{', '.join(a.model_type for a in ARCHITECTURES.values())}")
    return found
