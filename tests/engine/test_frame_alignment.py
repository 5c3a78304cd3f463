"""Batched Viterbi forced alignment and posterior GOP from per-frame phone posteriors (CPU torch)."""
import itertools
import time

import numpy as np
import pytest
import torch

from saywell.engine.stages.base import Stage
from saywell.engine.stages.frame_alignment import (FrameAlignItem, FrameAlignment, FrameAlignmentStage,
                                                   ViterbiPath, batched_viterbi, posterior_gop)

torch.set_num_threads(1)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def peaked(labels, classes: int, p: float = 0.9) -> np.ndarray:
    """(T, C) log posteriors giving class labels[t] probability p at frame t, the rest shared evenly."""
    probs = np.full((len(labels), classes), (1 - p) / (classes - 1))
    probs[np.arange(len(labels)), labels] = p
    return np.log(probs).astype(np.float32)


def one(log_probs: np.ndarray, phones, min_frames: int = 1):
    return batched_viterbi(torch.from_numpy(log_probs)[None], torch.tensor([list(phones)]),
                           min_frames=min_frames)[0]


def path_score(log_probs: np.ndarray, phones, segments) -> float:
    return float(sum(log_probs[a:b, p].sum() for p, (a, b) in zip(phones, segments)))


def brute_force_best(log_probs: np.ndarray, phones, min_frames: int) -> float:
    """Best summed score over every segmentation of the frames into the phones, in order."""
    frames, n = len(log_probs), len(phones)
    best = -np.inf
    for cuts in itertools.combinations(range(1, frames), n - 1):
        bounds = (0,) + cuts + (frames,)
        segments = list(itertools.pairwise(bounds))
        if all(b - a >= min_frames for a, b in segments):
            best = max(best, path_score(log_probs.astype(np.float64), phones, segments))
    return best


def assert_valid(path: ViterbiPath, frames: int, n_phones: int, min_frames: int) -> None:
    assert len(path.segments) == n_phones
    assert path.segments[0][0] == 0 and path.segments[-1][1] == frames
    for (_, b), (c, _) in itertools.pairwise(path.segments):
        assert b == c
    assert all(b - a >= min_frames for a, b in path.segments)


def test_hand_built_posteriors_give_the_known_boundaries():
    lp = peaked([1, 1, 1, 2, 2, 2, 2, 3, 3, 3], classes=5)
    path = one(lp, [1, 2, 3])
    assert path.segments == ((0, 3), (3, 7), (7, 10))
    assert path.score == pytest.approx(10 * np.log(0.9), rel=1e-5)


def test_min_frames_stretches_a_short_phone():
    lp = peaked([1, 2, 2, 2, 2, 2, 2, 2, 2, 2], classes=4)
    assert one(lp, [1, 2]).segments == ((0, 1), (1, 10))
    assert one(lp, [1, 2], min_frames=3).segments == ((0, 3), (3, 10))
    # A phone the audio does not contain at all still gets its minimum, where it costs least.
    lp = peaked([1, 1, 1, 1, 2, 2, 2, 2], classes=4)
    path = one(lp, [1, 3, 2], min_frames=2)
    assert_valid(path, 8, 3, 2)
    assert path.segments[1][1] - path.segments[1][0] == 2


def test_exactly_enough_frames_gives_each_phone_its_minimum():
    lp = log_softmax(np.random.default_rng(0).normal(size=(6, 4))).astype(np.float32)
    assert one(lp, [0, 1, 2], min_frames=2).segments == ((0, 2), (2, 4), (4, 6))


def test_agrees_with_brute_force_on_random_inputs():
    rng = np.random.default_rng(1)
    for _ in range(150):
        frames, n, m, classes = int(rng.integers(1, 10)), int(rng.integers(1, 5)), int(rng.integers(1, 3)), 6
        if frames < n * m:
            continue
        lp = log_softmax(rng.normal(scale=2.0, size=(frames, classes))).astype(np.float32)
        phones = rng.integers(0, classes, size=n).tolist()
        path = one(lp, phones, min_frames=m)
        assert isinstance(path, ViterbiPath)
        assert_valid(path, frames, n, m)
        best = brute_force_best(lp, phones, m)
        assert path.score == pytest.approx(best, abs=1e-4)
        assert path_score(lp, phones, path.segments) == pytest.approx(best, abs=1e-4)


def random_batch(rng, batch: int, max_frames: int, max_phones: int, classes: int, min_frames: int = 1):
    items = []
    for _ in range(batch):
        n = int(rng.integers(1, max_phones + 1))
        frames = int(rng.integers(n * min_frames, max_frames + 1))
        lp = log_softmax(rng.normal(scale=2.0, size=(frames, classes))).astype(np.float32)
        items.append((lp, rng.integers(0, classes, size=n).tolist()))
    return items


def pad(items, frames: int, n_max: int, classes: int, fill_lp=np.nan, fill_id=-1):
    lp = np.full((len(items), frames, classes), fill_lp, dtype=np.float32)
    ids = np.full((len(items), n_max), fill_id, dtype=np.int64)
    for i, (x, p) in enumerate(items):
        lp[i, :len(x)] = x
        ids[i, :len(p)] = p
    return (torch.from_numpy(lp), torch.from_numpy(ids), [len(x) for x, _ in items], [len(p) for _, p in items])


@pytest.mark.parametrize("min_frames", [1, 3])
def test_batch_equals_item_by_item_whatever_the_padding(min_frames):
    rng = np.random.default_rng(2)
    items = random_batch(rng, 12, 40, 8, 7, min_frames)
    singles = [one(lp, phones, min_frames) for lp, phones in items]
    frames = max(len(x) for x, _ in items)
    n_max = max(len(p) for _, p in items)
    # NaN frames and -1 ids past each item's lengths, and extra padding beyond the longest item.
    for extra in (0, 5):
        batched = batched_viterbi(*pad(items, frames + extra, n_max + extra, 7), min_frames=min_frames)
        assert len(batched) == len(items)
        for (lp, phones), single, got in zip(items, singles, batched):
            assert got.segments == single.segments
            assert got.score == pytest.approx(single.score, abs=1e-4)
            assert_valid(got, len(lp), len(phones), min_frames)


def test_lengths_default_to_the_whole_tensor():
    lp = torch.from_numpy(peaked([0, 0, 1, 1, 1, 2], classes=3)).expand(2, 6, 3)
    paths = batched_viterbi(lp, torch.tensor([[0, 1, 2], [0, 1, 2]]))
    assert [p.segments for p in paths] == [((0, 2), (2, 5), (5, 6))] * 2


def test_an_impossible_item_fails_alone():
    rng = np.random.default_rng(3)
    good = random_batch(rng, 3, 20, 4, 5, min_frames=2)
    too_short = (log_softmax(rng.normal(size=(5, 5))).astype(np.float32), [0, 1, 2])  # 5 < 3 * 2
    bad_id = (log_softmax(rng.normal(size=(8, 5))).astype(np.float32), [0, 9])
    with_nan = (np.full((8, 5), np.nan, dtype=np.float32), [0, 1])
    no_path = (np.log(np.full((8, 5), 0.2, dtype=np.float32)), [0, 1])
    no_path[0][:, 1] = -np.inf  # phone 1's class is impossible everywhere
    items = [good[0], too_short, good[1], bad_id, with_nan, no_path, good[2]]
    frames, n_max = max(len(x) for x, _ in items), max(len(p) for _, p in items)
    results = batched_viterbi(*pad(items, frames, n_max, 5), min_frames=2)
    errors = {i: r for i, r in enumerate(results) if isinstance(r, Exception)}
    assert set(errors) == {1, 3, 4, 5}
    assert all(isinstance(e, ValueError) for e in errors.values())
    assert "cannot hold" in str(errors[1]) and "out of range" in str(errors[3])
    assert "NaN" in str(errors[4]) and "finite" in str(errors[5])
    for i, (lp, phones) in zip((0, 2, 6), good):
        assert results[i].segments == one(lp, phones, 2).segments
    # No phones, and lengths beyond the tensor, are per-item errors too.
    lp, ids, t_len, _ = pad(good, 20, 4, 5)
    results = batched_viterbi(lp, ids, [t_len[0], 25, t_len[2]], [0, 1, len(good[2][1])])
    assert [type(r) for r in results] == [ValueError, ValueError, ViterbiPath]


def test_float16_input_is_computed_in_float32():
    rng = np.random.default_rng(4)
    items = random_batch(rng, 6, 30, 6, 5)
    lp, ids, t_len, n_len = pad(items, 30, 6, 5, fill_lp=0.0)
    full = batched_viterbi(lp.half().float(), ids, t_len, n_len)
    half = batched_viterbi(lp.half(), ids, t_len, n_len)
    for a, b in zip(full, half):
        assert a.segments == b.segments and a.score == pytest.approx(b.score, abs=1e-4)
        assert isinstance(b.score, float)


def test_gop_of_a_clear_phone_is_near_zero_and_of_a_wrong_phone_names_the_winner():
    # Reference "TH IY" (classes 1, 2); the learner said "S IY": the first frames favour class 3.
    labels = [3, 3, 3, 3, 2, 2, 2, 2, 2]
    lp = peaked(labels, classes=5, p=0.95)
    lp[:4, 1] = np.log(0.03)  # TH a little likelier than the rest, but far from S
    lp = log_softmax(lp)
    path = one(lp, [1, 2])
    assert path.segments == ((0, 4), (4, 9))
    th, iy = posterior_gop(torch.from_numpy(lp), path.segments, [1, 2])
    assert (iy.start_frame, iy.end_frame, iy.n_frames) == (4, 9, 5)
    assert iy.gop == pytest.approx(0.0, abs=1e-6) and iy.margin > 2.0
    assert iy.log_posterior == pytest.approx(np.log(0.95), abs=0.01)
    assert th.gop == pytest.approx(np.log(0.03 / 0.95), abs=0.05) and th.gop < -3
    assert th.margin == pytest.approx(th.gop, abs=1e-6)
    assert th.competitor == 3 and th.competitor_log_posterior > th.log_posterior
    assert th.phone_id == 1
    # numpy input, and a GOP per phone computed together equals each phone alone.
    together = posterior_gop(lp, path.segments, [1, 2])
    alone = [posterior_gop(lp, [s], [p])[0] for s, p in zip(path.segments, [1, 2])]
    for a, b in zip(together, alone):
        assert (a.phone_id, a.start_frame, a.end_frame, a.competitor) == (b.phone_id, b.start_frame, b.end_frame,
                                                                          b.competitor)
        assert (a.gop, a.margin, a.log_posterior) == pytest.approx((b.gop, b.margin, b.log_posterior), abs=1e-6)


def test_gop_rejects_bad_segments():
    lp = peaked([0, 1, 2], classes=3)
    assert posterior_gop(lp, [], []) == ()
    with pytest.raises(ValueError):
        posterior_gop(lp, [(1, 1)], [0])
    with pytest.raises(ValueError):
        posterior_gop(lp, [(0, 4)], [0])
    with pytest.raises(ValueError):
        posterior_gop(lp, [(0, 3)], [7])


def test_stage_pads_a_batch_and_fails_bad_items_alone():
    stage = FrameAlignmentStage(min_frames=2, frame_ms=20)
    assert isinstance(stage, Stage) and stage.name == "frame_alignment"
    assert stage.load() is stage and stage.device == torch.device("cpu")
    clear = log_softmax(peaked([1, 1, 1, 2, 2, 2, 2, 3, 3, 3], classes=5))
    rng = np.random.default_rng(5)
    other_classes = log_softmax(rng.normal(size=(12, 7))).astype(np.float32)
    items = [FrameAlignItem(clear, (1, 2, 3)),
             FrameAlignItem(clear[:3], [1, 2, 3]),  # 3 frames for 3 phones of >= 2
             FrameAlignItem(other_classes, [6, 0]),
             FrameAlignItem(np.zeros(5), [0]),  # not (T, C)
             FrameAlignItem(clear[:6].astype(np.float16), [1, 2])]
    results = stage.run_batch(items)
    assert len(results) == 5
    assert isinstance(results[1], ValueError) and isinstance(results[3], ValueError)
    first = results[0]
    assert isinstance(first, FrameAlignment) and first.frame_ms == 20 and first.n_frames == 10
    assert [(p.phone_id, p.start_frame, p.end_frame) for p in first.phones] == [(1, 0, 3), (2, 3, 7), (3, 7, 10)]
    assert first.gop == pytest.approx(0.0, abs=1e-6)
    assert first.score == pytest.approx(10 * np.log(0.9), rel=1e-5)
    assert results[2].n_frames == 12 and [p.phone_id for p in results[2].phones] == [6, 0]
    assert results[2].score == pytest.approx(brute_force_best(other_classes, [6, 0], 2), abs=1e-4)
    assert [(p.start_frame, p.end_frame) for p in results[4].phones] == [(0, 3), (3, 6)]
    assert stage.run_batch([]) == []
    stage.close()


def test_timing_of_a_batch_of_64_items():
    rng = np.random.default_rng(6)
    batch, frames, classes, n_phones = 64, 300, 42, 40
    lp = torch.log_softmax(torch.from_numpy(rng.normal(scale=3.0, size=(batch, frames, classes))).float(), -1)
    ids = torch.from_numpy(rng.integers(0, classes, size=(batch, n_phones)))
    batched_viterbi(lp[:2, :20], ids[:2, :5])  # warm-up
    start = time.perf_counter()
    paths = batched_viterbi(lp, ids, min_frames=3)
    viterbi_s = time.perf_counter() - start
    start = time.perf_counter()
    for b, path in enumerate(paths):
        posterior_gop(lp[b], path.segments, ids[b].tolist())
    gop_s = time.perf_counter() - start
    assert all(isinstance(p, ViterbiPath) for p in paths)
    print(f"\nbatched_viterbi {batch} x {frames} frames x {classes} classes, {n_phones} phones, min 3 frames, "
          f"1 CPU thread: {viterbi_s * 1000:.1f} ms; posterior_gop for all items: {gop_s * 1000:.1f} ms")
