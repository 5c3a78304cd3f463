"""A small HDR-style latency histogram: log-spaced buckets, bounded relative error, constant memory per decade.

A load test records millions of latencies; keeping them all to sort for percentiles is wasteful and merging
runs is awkward. Buckets grow geometrically by (1 + 2·error), so any value is reported as its bucket's
geometric centre, within `relative_error` of the truth, however large it is. Values below `lowest` (zero or
negative ones too) share one underflow bucket, reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["LatencyHistogram"]


class LatencyHistogram:
    """Counts of values in geometric buckets.

    relative_error: largest |reported - true| / true of a reported percentile (default 0.5 %).
    lowest: smallest value told apart from 0; smaller values (and negatives) count as 0.
    Percentiles use the nearest-rank definition: the smallest recorded value that at least p % of the
    values do not exceed (numpy's method="inverted_cdf"), then rounded to its bucket.
    """

    def __init__(self, relative_error: float = 0.005, lowest: float = 0.001) -> None:
        if not 0 < relative_error < 0.5:
            raise ValueError(f"relative_error must be in (0, 0.5), got {relative_error}")
        if lowest <= 0:
            raise ValueError(f"lowest must be > 0, got {lowest}")
        self.relative_error = relative_error
        self.lowest = lowest
        self._log_ratio = math.log1p(2 * relative_error)
        self._counts: dict[int, int] = {}
        self._zeros = 0
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def record(self, value: float) -> None:
        if math.isnan(value):
            raise ValueError("cannot record NaN")
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if value < self.lowest:
            self._zeros += 1
            return
        index = int(math.log(value / self.lowest) / self._log_ratio)
        self._counts[index] = self._counts.get(index, 0) + 1

    def record_all(self, values: Iterable[float]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's counts (same relative_error and lowest)."""
        if (other.relative_error, other.lowest) != (self.relative_error, self.lowest):
            raise ValueError("can only merge histograms with the same relative_error and lowest")
        for index, n in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + n
        self._zeros += other._zeros
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def _centre(self, index: int) -> float:
        # Geometric centre of [lowest·r^i, lowest·r^(i+1)): within relative_error of both ends.
        return self.lowest * math.exp((index + 0.5) * self._log_ratio)

    def percentile(self, p: float) -> float | None:
        """Value at percentile p (0..100); None when nothing was recorded. p=100 is the exact max."""
        if not 0 <= p <= 100:
            raise ValueError(f"percentile must be 0..100, got {p}")
        if not self.count:
            return None
        if p >= 100:
            return self.max
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = self._zeros
        if seen >= rank:
            return 0.0 if self.min < self.lowest else self.min
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                # Never report beyond what was actually seen.
                return min(max(self._centre(index), self.min), self.max)
        return self.max

    def percentiles(self, ps: Iterable[float]) -> dict[float, float | None]:
        return {p: self.percentile(p) for p in ps}

    def cdf(self) -> list[tuple[float, float]]:
        """(value, fraction of values <= value) at every non-empty bucket, for plotting."""
        if not self.count:
            return []
        points = []
        seen = self._zeros
        if self._zeros:
            points.append((0.0, seen / self.count))
        for index in sorted(self._counts):
            seen += self._counts[index]
            points.append((min(self._centre(index), self.max), seen / self.count))
        return points
