"""Forced alignment and GOP from per-frame phone posteriors, batched in torch (CPU or GPU).

Groundwork for a "neural" profile: a frame phone classifier (Charsiu-style) gives, for each frame, log
posteriors over phone classes. `batched_viterbi` places the reference phones in the frames (a left-to-right
HMM with one state per phone: stay or advance, each phone at least `min_frames` frames, all frames covered)
maximising the summed log posterior, for a whole padded batch at once; `posterior_gop` scores each aligned
phone from the posteriors; `FrameAlignmentStage` wraps both in the engine's Stage shape.

The Viterbi recursion runs over time only; each step is a few tensor ops over (batch, phones), on the device
the log posteriors are on. With D[t, n] the best score of frames [0, t) ending inside phone n:

    D[t, n] = max(D[t-1, n] + e[t-1, n],                      stay in phone n one more frame
                  D[t-m, n-1] + e[t-m, n] + ... + e[t-1, n])   phone n starts at t-m and takes m frames

so the minimum duration m costs no extra states: only the last m rows of D are kept, and one bit per
(t, item, phone) says which branch won, for the backtrace (also vectorised over the batch).
"""
from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from saywell.engine.types import FRAME_MS


@dataclass(frozen=True)
class ViterbiPath:
    """One item's best path: each phone's frames [start, end) in order, covering all the item's frames."""

    segments: tuple[tuple[int, int], ...]
    score: float  # summed log probability of the phones' classes along the path


def _as_lengths(lengths, default: int, batch: int, device) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), default, dtype=torch.long, device=device)
    return torch.as_tensor(lengths, dtype=torch.long).to(device).reshape(batch)


@torch.no_grad()
def batched_viterbi(log_probs: torch.Tensor, phone_ids: torch.Tensor, input_lengths=None, phone_lengths=None,
                    min_frames: int = 1) -> list[ViterbiPath | ValueError]:
    """Force-align each item's phones to its frames; one `ViterbiPath` or `ValueError` per item, in order.

    log_probs: (B, T, C) per-frame log posteriors (float16 is computed in float32); phone_ids: (B, N) class
    ids, padded; input_lengths / phone_lengths: (B,) valid frames / phones of each item (None: all of them).
    An item that cannot be aligned (fewer than N_i * min_frames frames, no phones, a phone id out of range,
    NaN or +inf among its frames, or no path of finite score) gets a ValueError; the others are unaffected.
    Ties between staying and advancing go to staying: the later phone gets the frame (the earlier boundary).
    """
    if log_probs.dim() != 3 or phone_ids.dim() != 2 or phone_ids.shape[0] != log_probs.shape[0]:
        raise ValueError(f"expected log_probs (B, T, C) and phone_ids (B, N), got {tuple(log_probs.shape)} "
                         f"and {tuple(phone_ids.shape)}")
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1, got {min_frames}")
    device = log_probs.device
    lp = log_probs.float()
    batch, frames, classes = lp.shape
    n_max = phone_ids.shape[1]
    m = int(min_frames)
    ids = phone_ids.to(device=device, dtype=torch.long)
    t_len = _as_lengths(input_lengths, frames, batch, device)
    n_len = _as_lengths(phone_lengths, n_max, batch, device)

    # Per-item checks, computed together and brought to the host once.
    frame_ok = torch.arange(frames, device=device)[None, :] < t_len[:, None]  # (B, T)
    phone_ok = torch.arange(n_max, device=device)[None, :] < n_len[:, None]  # (B, N)
    bad_value = ((~(lp < float("inf"))).any(-1) & frame_ok).any(-1)  # NaN or +inf in a valid frame
    bad_id = (((ids < 0) | (ids >= classes)) & phone_ok).any(-1)
    checks = torch.stack([t_len, n_len, bad_value.long(), bad_id.long()], 1).tolist()
    errors: list[ValueError | None] = []
    for t_i, n_i, bad_v, bad_i in checks:
        if not (0 <= t_i <= frames and 1 <= n_i <= n_max):
            errors.append(ValueError(f"lengths out of range: {t_i} frames of {frames}, {n_i} phones of {n_max}"))
        elif t_i < n_i * m:
            errors.append(ValueError(f"{t_i} frames cannot hold {n_i} phones of at least {m} frames each"))
        elif bad_i:
            errors.append(ValueError(f"phone id out of range [0, {classes})"))
        elif bad_v:
            errors.append(ValueError("log_probs has NaN or +inf values"))
        else:
            errors.append(None)

    # Emissions e[b, t, n] = log P(phone n's class at frame t); frames past an item's end count 0 (unused).
    emis = lp.gather(2, ids.clamp(0, classes - 1)[:, None, :].expand(batch, frames, n_max))
    emis = emis.masked_fill(~frame_ok[:, :, None], 0.0)
    # win[:, s, n] = e[s] + ... + e[s+m-1]: phone n's score over its first m frames when it starts at s.
    win = emis.unfold(1, m, 1).sum(-1) if frames >= m else emis[:, :0]

    neg_inf = torch.tensor(float("-inf"), device=device)
    first = torch.full((batch, n_max + 1), float("-inf"), device=device)
    first[:, 0] = 0.0  # column 0: "before the first phone", reachable only at t = 0
    rows = collections.deque([first], maxlen=m)  # D[t-m] ... D[t-1]
    advanced = torch.zeros(frames + 1, batch, n_max + 1, dtype=torch.bool, device=device)
    last = (n_len.clamp(1, n_max))[:, None]  # column of each item's last phone
    best = torch.where(t_len == 0, first.gather(1, last).squeeze(1), neg_inf)
    for t in range(1, frames + 1):
        new = torch.empty(batch, n_max + 1, device=device)
        new[:, 0] = float("-inf")
        stay = rows[-1][:, 1:] + emis[:, t - 1]
        if t >= m:
            adv = rows[0][:, :-1] + win[:, t - m]
            take = adv > stay
            advanced[t, :, 1:] = take
            new[:, 1:] = torch.where(take, adv, stay)
        else:
            new[:, 1:] = stay
        best = torch.where(t_len == t, new.gather(1, last).squeeze(1), best)
        rows.append(new)

    best_host = best.tolist()
    for b, score in enumerate(best_host):
        if errors[b] is None and not np.isfinite(score):
            errors[b] = ValueError("no alignment with a finite score (a phone's class has -inf log probability)")
    ok = torch.tensor([e is None for e in errors], device=device)

    # Backtrace from (T_i, N_i), all items together; a finished item (n = 0) stands still.
    t = torch.where(ok, t_len, 0)
    n = torch.where(ok, n_len, 0)
    starts = torch.zeros(batch, n_max + 1, dtype=torch.long, device=device)
    items = torch.arange(batch, device=device)
    for _ in range(frames):
        adv = advanced[t, items, n] & (n > 0)
        starts[items, n] = torch.where(adv, t - m, starts[items, n])
        t = (t - torch.where(adv, m, (n > 0).long())).clamp(min=0)
        n = n - adv.long()

    starts_host = starts.tolist()
    lengths_host = t_len.tolist()
    n_host = n_len.tolist()
    results: list[ViterbiPath | ValueError] = []
    for b in range(batch):
        if errors[b] is not None:
            results.append(errors[b])
            continue
        s = starts_host[b][1:n_host[b] + 1]
        ends = s[1:] + [lengths_host[b]]
        results.append(ViterbiPath(segments=tuple(zip(s, ends)), score=best_host[b]))
    return results


@dataclass(frozen=True)
class PhoneGop:
    """An aligned phone scored from the frame posteriors (all means are over the phone's frames)."""

    phone_id: int  # the canonical (reference) class
    start_frame: int
    end_frame: int  # exclusive
    gop: float  # mean of log P(canonical) - max over all classes log P(q): 0 when the canonical phone wins
    margin: float  # mean of log P(canonical) - max over the other classes: > 0 clearly said, < 0 another won
    log_posterior: float  # mean log P(canonical)
    competitor: int  # the other class with the highest mean posterior
    competitor_log_posterior: float  # its mean log P

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


@torch.no_grad()
def posterior_gop(log_probs, segments: Sequence[tuple[int, int]], phone_ids: Sequence[int]) -> tuple[PhoneGop, ...]:
    """GOP of each aligned phone of one item, from its (T, C) log posteriors (torch on any device, or numpy).

    `segments` are the phones' [start, end) frames (non-empty), `phone_ids` their canonical classes. The log
    posteriors should be normalised (log-softmax) for the posterior means to mean what they say. Computed for
    all phones at once: frames are tagged with their phone and the per-phone sums are one index_add.
    """
    lp = torch.as_tensor(log_probs).float()
    if lp.dim() != 2 or lp.shape[1] < 2:
        raise ValueError(f"expected log_probs (T, C) with C >= 2, got {tuple(lp.shape)}")
    if len(segments) != len(phone_ids):
        raise ValueError(f"{len(segments)} segments for {len(phone_ids)} phones")
    if not segments:
        return ()
    device = lp.device
    seg = torch.as_tensor(segments, dtype=torch.long)
    if bool(((seg[:, 1] <= seg[:, 0]) | (seg[:, 0] < 0) | (seg[:, 1] > lp.shape[0])).any()):
        raise ValueError("segments must be non-empty and inside the frames")
    seg = seg.to(device)
    canon = torch.as_tensor(phone_ids, dtype=torch.long).to(device)
    if bool(((canon < 0) | (canon >= lp.shape[1])).any()):
        raise ValueError(f"phone id out of range [0, {lp.shape[1]})")
    n_phones = len(segments)
    counts = seg[:, 1] - seg[:, 0]
    owner = torch.repeat_interleave(torch.arange(n_phones, device=device), counts)  # phone of each frame
    offset = torch.cumsum(counts, 0) - counts  # where each phone's frames begin in the gathered rows
    frame = seg[owner, 0] + torch.arange(len(owner), device=device) - offset[owner]  # frames, phone order
    rows = lp[frame]  # (F, C)
    canon_f = canon[owner]
    lp_canon = rows.gather(1, canon_f[:, None]).squeeze(1)
    top2, top2_idx = rows.topk(2, dim=1)
    best_other = torch.where(top2_idx[:, 0] == canon_f, top2[:, 1], top2[:, 0])
    best_any = top2[:, 0]

    def phone_mean(values: torch.Tensor) -> torch.Tensor:  # (F, ...) -> (N, ...)
        total = torch.zeros((n_phones,) + values.shape[1:], device=device).index_add_(0, owner, values)
        return total / counts.view((-1,) + (1,) * (values.dim() - 1))

    per_frame = torch.stack([lp_canon - best_any, lp_canon - best_other, lp_canon], 1)
    gop, margin, log_post = phone_mean(per_frame).unbind(1)
    mean_post = phone_mean(rows.exp()).scatter(1, canon[:, None], float("-inf"))
    competitor = mean_post.argmax(1)
    competitor_lp = phone_mean(rows).gather(1, competitor[:, None]).squeeze(1)
    host = torch.stack([gop, margin, log_post, competitor_lp], 1).tolist()
    comp_host = competitor.tolist()
    return tuple(PhoneGop(phone_id=int(pid), start_frame=int(a), end_frame=int(b), gop=g, margin=mg,
                          log_posterior=lpc, competitor=c, competitor_log_posterior=clp)
                 for (a, b), pid, (g, mg, lpc, clp), c in zip(segments, phone_ids, host, comp_host))


@dataclass(frozen=True)
class FrameAlignItem:
    """One utterance's frame log posteriors (T, C) and the reference phones' class ids, in order."""

    log_probs: np.ndarray = field(repr=False)
    phone_ids: tuple[int, ...] | list[int]


@dataclass(frozen=True)
class FrameAlignment:
    phones: tuple[PhoneGop, ...]
    n_frames: int
    score: float  # the Viterbi path's summed log posterior
    frame_ms: int = FRAME_MS  # Charsiu-style classifiers: 10 ms; wav2vec2 CTC heads: 20 ms

    @property
    def gop(self) -> float:
        """Frame-weighted mean GOP of the phones."""
        frames = sum(p.n_frames for p in self.phones)
        return sum(p.gop * p.n_frames for p in self.phones) / frames if frames else 0.0


class FrameAlignmentStage:
    """Stage shape (name, load, run_batch, close): pads the items' posteriors into one batched Viterbi on
    `device`, then scores each item's phones. Items with a different class count than others run in their own
    batch; a bad item gets its exception, the rest of the batch its alignment."""

    name = "frame_alignment"

    def __init__(self, min_frames: int = 1, frame_ms: int = FRAME_MS, device: str | torch.device | None = None,
                 name: str = "frame_alignment") -> None:
        self.name = name
        self.min_frames = min_frames
        self.frame_ms = frame_ms
        self._device_option = device
        self.device: torch.device | None = None

    def load(self) -> FrameAlignmentStage:
        if self.device is None:
            wanted = self._device_option or ("cuda" if torch.cuda.is_available() else "cpu")
            self.device = torch.device(wanted)
        return self

    def close(self) -> None:
        self.device = None

    def run_batch(self, items: Sequence[FrameAlignItem]) -> list[FrameAlignment | Exception]:
        self.load()
        results: list[FrameAlignment | Exception | None] = [None] * len(items)
        groups: dict[int, list[tuple[int, np.ndarray, list[int]]]] = {}
        for i, item in enumerate(items):
            try:
                lp = np.asarray(item.log_probs)
                ids = [int(p) for p in item.phone_ids]
                if lp.ndim != 2 or lp.shape[1] < 2 or not np.issubdtype(lp.dtype, np.floating):
                    raise ValueError(f"log_probs must be float (T, C) with C >= 2, got {lp.dtype} {lp.shape}")
                if not ids:
                    raise ValueError("no phones to align")
                groups.setdefault(lp.shape[1], []).append((i, lp, ids))
            except Exception as exc:  # noqa: BLE001 - the item's result
                results[i] = exc
        for classes, group in groups.items():
            try:
                self._run_group(classes, group, results)
            except Exception as exc:  # noqa: BLE001 - e.g. out of device memory: every item of the group fails
                for i, _, _ in group:
                    if results[i] is None:
                        results[i] = exc
        return results  # type: ignore[return-value]

    def _run_group(self, classes: int, group, results: list) -> None:
        frames = max(len(lp) for _, lp, _ in group)
        n_max = max(len(ids) for _, _, ids in group)
        lp_pad = np.zeros((len(group), frames, classes), dtype=np.float32)
        ids_pad = np.zeros((len(group), n_max), dtype=np.int64)
        for j, (_, lp, ids) in enumerate(group):
            lp_pad[j, :len(lp)] = lp
            ids_pad[j, :len(ids)] = ids
        lp_dev = torch.from_numpy(lp_pad).to(self.device)
        paths = batched_viterbi(lp_dev, torch.from_numpy(ids_pad).to(self.device),
                                [len(lp) for _, lp, _ in group], [len(ids) for _, _, ids in group],
                                min_frames=self.min_frames)
        for j, ((i, lp, ids), path) in enumerate(zip(group, paths)):
            if isinstance(path, Exception):
                results[i] = path
                continue
            try:
                phones = posterior_gop(lp_dev[j, :len(lp)], path.segments, ids)
                results[i] = FrameAlignment(phones=phones, n_frames=len(lp), score=path.score,
                                            frame_ms=self.frame_ms)
            except Exception as exc:  # noqa: BLE001 - the item's result
                results[i] = exc
