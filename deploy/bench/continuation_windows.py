"""Whisper final decodes with and without short windows for a decode's later passes: transcripts, WER, time.

    .venv/bin/python deploy/bench/continuation_windows.py --data ../shared/data/speechocean762/train \
        --limit 300 --model tiny.en --threads 1

Decodes a seeded sample of the corpus twice with the engine's ASR stage: once as faster-whisper does it (a
pass after the first encodes the rest of the audio padded to 30 s), once with `shorten_continuation_windows`
(the default). Prints WER against the reference texts, decode time percentiles, and the transcripts that differ.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np

from saywell.engine.language.text import normalize_words
from saywell.engine.offline.dataset import load_audio, load_corpus
from saywell.engine.options import AsrOptions
from saywell.engine.stages import asr


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    row = np.arange(len(hypothesis) + 1)
    for i, said in enumerate(reference, 1):
        previous, row = row, np.empty_like(row)
        row[0] = i
        for j, heard in enumerate(hypothesis, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (said != heard))
    return int(row[-1])


def decode_all(audios: list[np.ndarray], options: AsrOptions, short: bool) -> tuple[list[list[str]], list[float]]:
    stage = asr.WhisperAsr(options)
    model = stage.load()
    if not short:
        del model.encode  # drops the instance's wrapper: faster-whisper's own encode again
    words, seconds = [], []
    for audio in audios:
        started = time.perf_counter()
        transcript = stage.run_batch([asr.AsrRequest(audio)])[0]
        seconds.append(time.perf_counter() - started)
        words.append([w.text for w in transcript.words])
    return words, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    corpus = random.Random(args.seed).sample(load_corpus(args.data), args.limit)
    audios = [load_audio(u.audio_path) for u in corpus]
    references = [normalize_words(u.text) for u in corpus]
    options = AsrOptions(model=args.model, cpu_threads=args.threads)
    results = {}
    for short in (False, True):
        words, seconds = decode_all(audios, options, short)
        errors = sum(word_errors(r, h) for r, h in zip(references, words))
        label = "short later passes" if short else "30 s later passes"
        p50, p95, top = np.percentile(seconds, [50, 95, 100]) * 1000
        print(f"{args.model} {label}: WER {errors / sum(map(len, references)):.4f}, decode ms p50 {p50:.0f} "
              f"p95 {p95:.0f} max {top:.0f}", flush=True)
        results[short] = words
    differ = [i for i in range(len(corpus)) if results[False][i] != results[True][i]]
    print(f"transcripts that differ: {len(differ)} of {len(corpus)}")
    for i in differ:
        print(f"  {corpus[i].utt}\n    30 s:  {' '.join(results[False][i])}\n    short: {' '.join(results[True][i])}")


if __name__ == "__main__":
    main()
