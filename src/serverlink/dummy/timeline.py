"""Latency percentiles of each second of a run, for the HTML report's charts.

The parent merges the workers' per-interval histograms by interval number; a
second's percentiles are taken once no worker can still add to it (two
intervals later, or at the end), and its histogram is dropped, so a long run
keeps a few floats per second, not a histogram per second."""

from __future__ import annotations

from collections.abc import Mapping

from serverlink.dummy.metrics import merge_hist, percentiles

#: The percentiles charted, by name.
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
#: Intervals after which a second is taken as complete.
SETTLE = 2


class LatencyTimeline:
    def __init__(self) -> None:
        self.series: dict[str, list[float]] = {name: [] for name in QUANTILES}
        self._open: dict[int, dict[int, int]] = {}

    def add(self, seq: int, hist: Mapping[int, int]) -> None:
        """One worker's histogram of interval ``seq`` (from 1)."""
        merge_hist(self._open.setdefault(seq, {}), hist)
        for done in [s for s in self._open if s <= seq - SETTLE]:
            self._close(done)

    def _close(self, seq: int) -> None:
        values = percentiles(self._open.pop(seq), QUANTILES.values())
        for (name, _), value in zip(QUANTILES.items(), values, strict=True):
            column = self.series[name]
            column.extend([0.0] * (seq - len(column)))
            column[seq - 1] = value

    def finish(self) -> dict[str, list[float]]:
        """Every second's percentiles in ms (0.0 for a second without samples)."""
        for seq in sorted(self._open):
            self._close(seq)
        return self.series
