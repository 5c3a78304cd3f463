"""Long turns: same-speaker utterances of a validation fold joined into one, scored against the experts' scores of
the parts (their mean, weighted by words). speechocean762 has no labelled turn longer than a sentence, so this is
the nearest labelled stand-in for a chatbot learner's answer of a few sentences.

    python deploy/bench/long_turns.py --data ../shared/data/speechocean762/train --profile cpu --mode closed
        [--fold 0] [--turns 60] [--join 3] [--pause-ms 400] [--whole]

`--whole` scores each joined turn as one window, as before session 16 (engine/features/windows.py). Prints, per
sentence aspect, the mean of (predicted - human) and the PCC over the turns.
"""
from __future__ import annotations

import argparse
import asyncio

import numpy as np

from saywell.engine.api import create_engine
from saywell.engine.features import windows
from saywell.engine.offline.dataset import choice_folds, load_audio, load_corpus
from saywell.engine.options import EngineOptions
from saywell.engine.types import AssessmentRequest

ASPECTS = ("accuracy", "fluency", "prosody", "total")


def turns(data: str, fold: int, join: int, limit: int, seed: int = 762) -> list[list]:
    """Consecutive utterances (by id) of each speaker of the fold, `join` at a time, speakers in order."""
    by_speaker: dict[str, list] = {}
    for u in sorted(choice_folds(load_corpus(data), 5, seed)[fold], key=lambda u: u.utt):
        by_speaker.setdefault(u.speaker, []).append(u)
    groups = [us[i:i + join] for _, us in sorted(by_speaker.items()) for i in range(0, len(us) - join + 1, join)]
    return groups[:limit]


async def score(groups: list[list], profile: str, mode: str, pause_ms: int) -> tuple[np.ndarray, np.ndarray]:
    engine = create_engine(EngineOptions(profile=profile))
    engine.start()
    pause = np.zeros(pause_ms * 16, np.float32)
    predicted, human = [], []
    try:
        for group in groups:
            audio = np.concatenate([np.concatenate([load_audio(u.audio_path), pause]) for u in group])
            reference = " ".join(u.text for u in group) if mode == "closed" else ""
            result = await engine.assess(AssessmentRequest(audio=audio, reference_text=reference))
            predicted.append([getattr(result.scores, a) for a in ASPECTS])
            sizes = [len(u.words) for u in group]
            human.append([np.average([u.scores[a] for u in group], weights=sizes) for a in ASPECTS])
    finally:
        await engine.close()
    return np.array(predicted), np.array(human)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--mode", choices=("open", "closed"), required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--join", type=int, default=3)
    parser.add_argument("--pause-ms", type=int, default=400)
    parser.add_argument("--whole", action="store_true", help="score each turn as one window")
    args = parser.parse_args()
    if args.whole:
        windows.LONGEST_WHOLE = 10 ** 9
    groups = turns(args.data, args.fold, args.join, args.turns)
    predicted, human = asyncio.run(score(groups, args.profile, args.mode, args.pause_ms))
    words = np.mean([sum(len(u.words) for u in g) for g in groups])
    print(f"{args.profile} {args.mode} {'whole' if args.whole else 'windows'}: {len(groups)} turns of "
          f"{args.join} utterances, {words:.0f} words on average")
    for i, aspect in enumerate(ASPECTS):
        bias = float(np.mean(predicted[:, i] - human[:, i]))
        pcc = float(np.corrcoef(predicted[:, i], human[:, i])[0, 1])
        print(f"  {aspect:9s} bias {bias:+.2f}  PCC {pcc:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
