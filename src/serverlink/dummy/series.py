"""Per-second series of a dummy run beyond throughput: the latency histogram
of each second (echo round trips and login flows) and the errors counted in
it, merged over the worker processes by interval number. ``Aggregate`` feeds
it every interval snapshot; the report turns it into p50/p99 and error lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from serverlink.monitor.latency import merge_hist, percentiles

if TYPE_CHECKING:
    from serverlink.dummy.metrics import Snapshot


class SecondSeries:
    """What each second of a run saw, summed over the workers."""

    def __init__(self, error_indices: Sequence[int]) -> None:
        #: Positions of the error counters in a snapshot's counter deltas.
        self.error_indices = tuple(error_indices)
        self.hists: list[dict[int, int]] = []
        self.login_hists: list[dict[int, int]] = []
        self.errors: list[int] = []

    def add(self, snap: Snapshot) -> None:
        while len(self.errors) < snap.seq:
            self.hists.append({})
            self.login_hists.append({})
            self.errors.append(0)
        i = snap.seq - 1
        merge_hist(self.hists[i], snap.hist)
        merge_hist(self.login_hists[i], snap.login_hist)
        self.errors[i] += sum(snap.counters[k] for k in self.error_indices)

    def quantile(self, q: float, login: bool = False) -> list[float | None]:
        """The q-quantile of each second in ms (None: a second without samples)."""
        return [
            round(percentiles(h, (q,))[0], 3) if h else None
            for h in (self.login_hists if login else self.hists)
        ]
