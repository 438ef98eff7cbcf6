"""Latency histograms, shared by the servers' screens and the dummy's metrics.

A histogram is a sparse dict ``bucket -> count`` with buckets ``BUCKET_NS``
(10 µs) wide (bucket b holds [b*10, (b+1)*10) µs): no upper limit, and merging
two is adding counts per key (worker processes, seconds of a run).
``LatencyHistogram`` keeps one for a whole run and one per second, for the
"now" and "run" percentiles of a screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

BUCKET_NS = 10_000


def merge_hist(into: dict[int, int], other: Mapping[int, int]) -> None:
    for bucket, count in other.items():
        into[bucket] = into.get(bucket, 0) + count


def percentiles(hist: Mapping[int, int], qs: Iterable[float]) -> list[float]:
    """Latency percentiles in ms from a bucket histogram: the upper edge of the
    bucket holding the q-th sample, so a percentile is never understated.
    0.0 for an empty histogram."""
    qs = list(qs)
    total = sum(hist.values())
    if not total:
        return [0.0 for _ in qs]
    items = sorted(hist.items())
    out: list[float] = []
    for q in qs:
        rank = q * total
        seen = 0
        edge = items[-1][0]
        for bucket, count in items:
            seen += count
            if seen >= rank:
                edge = bucket
                break
        out.append((edge + 1) * BUCKET_NS / 1e6)
    return out


def mean_ms(hist: Mapping[int, int]) -> float:
    total = sum(hist.values())
    if not total:
        return 0.0
    return sum((b + 0.5) * c for b, c in hist.items()) * BUCKET_NS / total / 1e6


class LatencyHistogram:
    """Durations of one kind (a login's completion time): the whole run's
    histogram and the last full second's, read by a screen once a second."""

    __slots__ = ("_clock", "_current", "_current_start", "last", "max_ns", "run")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.run: dict[int, int] = {}
        #: The last full second's samples (the "now" figures).
        self.last: dict[int, int] = {}
        self._current: dict[int, int] = {}
        self._current_start = clock()
        self.max_ns = 0

    def add(self, seconds: float) -> None:
        self._rotate()
        ns = int(seconds * 1e9)
        bucket = ns // BUCKET_NS
        self.run[bucket] = self.run.get(bucket, 0) + 1
        self._current[bucket] = self._current.get(bucket, 0) + 1
        if ns > self.max_ns:
            self.max_ns = ns

    def _rotate(self) -> None:
        now = self._clock()
        elapsed = now - self._current_start
        if elapsed >= 1.0:
            # a second with no samples in between leaves "now" empty
            self.last = self._current if elapsed < 2.0 else {}
            self._current = {}
            self._current_start = now - (elapsed % 1.0)

    def snapshot(self, prefix: str) -> dict[str, float | None]:
        """``{prefix}_p50_ms`` / ``_p99_ms`` of the run and ``{prefix}_now_p50_ms``
        / ``_now_p99_ms`` of the last second (None: no sample then)."""
        self._rotate()
        run50, run99 = percentiles(self.run, (0.5, 0.99))
        now50, now99 = percentiles(self.last, (0.5, 0.99))
        has_run, has_now = bool(self.run), bool(self.last)
        return {
            f"{prefix}_p50_ms": run50 if has_run else None,
            f"{prefix}_p99_ms": run99 if has_run else None,
            f"{prefix}_now_p50_ms": now50 if has_now else None,
            f"{prefix}_now_p99_ms": now99 if has_now else None,
        }
