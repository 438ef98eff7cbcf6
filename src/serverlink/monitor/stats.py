"""Numbers behind the console screen, from ``snapshot()`` dicts.

A snapshot is a flat dict of counters (ints/floats) and breakdowns (dicts of
reason -> count), as ``GameServer.snapshot()`` returns. This module merges the
snapshots of worker processes into one, turns successive snapshots into
per-second rates, and samples CPU and memory of the processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psutil

Snapshot = Mapping[str, Any]

#: How a key of several workers' snapshots is merged: "sum" (the default),
#: "max", "min", or "gauge" (summed over the workers alive now; a worker that
#: died takes its value with it, while its counters stay in the totals).
DEFAULT_RULES: Mapping[str, str] = {
    "sessions": "gauge",
    "max_sessions": "gauge",
    "authenticated": "gauge",
    "queued_bytes": "gauge",
}


def merge_rule(key: str, rules: Mapping[str, str]) -> str:
    rule = rules.get(key)
    if rule is not None:
        return rule
    if key.endswith(("_peak", "_max")):
        return "max"
    if key.endswith("_min"):
        return "min"
    return DEFAULT_RULES.get(key, "sum")


def _combine(rule: str, a: Any, b: Any) -> Any:
    if rule == "max":
        return max(a, b)
    if rule == "min":
        return min(a, b)
    return a + b


def merge_snapshots(
    snapshots: Iterable[Snapshot], rules: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One snapshot from several: numbers by their rule, breakdowns key by key
    (summed), anything else taken from the first snapshot that has it."""
    rules = rules or {}
    merged: dict[str, Any] = {}
    for snap in snapshots:
        for key, value in snap.items():
            if key not in merged:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
                continue
            current = merged[key]
            if isinstance(value, Mapping) and isinstance(current, dict):
                for sub, n in value.items():
                    current[sub] = current.get(sub, 0) + n if _is_number(n) else n
            elif _is_number(value) and _is_number(current):
                merged[key] = _combine(merge_rule(key, rules), current, value)
    return merged


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Aggregator:
    """The parent's view of its workers: the latest snapshot of each, plus the
    counters of workers that died, so totals never go backwards when a worker is
    restarted."""

    def __init__(self, rules: Mapping[str, str] | None = None) -> None:
        self.rules = dict(rules or {})
        self.latest: dict[int, dict[str, Any]] = {}
        self.retired: dict[str, Any] = {}
        self.peak_sessions = 0

    def update(self, worker: int, snapshot: Snapshot) -> None:
        self.latest[worker] = dict(snapshot)

    def retire(self, worker: int) -> None:
        """Worker ``worker`` is gone: fold its counters into the totals."""
        last = self.latest.pop(worker, None)
        if last is None:
            return
        kept = {k: v for k, v in last.items() if merge_rule(k, self.rules) != "gauge"}
        self.retired = merge_snapshots([self.retired, kept], self.rules)

    def snapshot(self) -> dict[str, Any]:
        merged = merge_snapshots([*self.latest.values(), self.retired], self.rules)
        sessions = merged.get("sessions")
        if isinstance(sessions, int):
            # Each worker reports its own peak; the sum of those overstates the
            # peak of the whole, the peak of the sampled sum understates it.
            # Show the larger of the sampled sum's peak and the busiest worker's
            # peak ("sessions_peak" merges by max).
            self.peak_sessions = max(self.peak_sessions, sessions)
            merged["sessions_peak"] = max(self.peak_sessions, merged.get("sessions_peak", 0))
        return merged


def flatten(snapshot: Snapshot) -> dict[str, float]:
    """Numbers of a snapshot as ``key`` and ``key.sub`` (breakdowns)."""
    flat: dict[str, float] = {}
    for key, value in snapshot.items():
        if _is_number(value):
            flat[key] = value
        elif isinstance(value, Mapping):
            for sub, n in value.items():
                if _is_number(n):
                    flat[f"{key}.{sub}"] = n
    return flat


class RateTracker:
    """Per-second rates of every number of successive snapshots, over the time
    between the last two ``update`` calls."""

    def __init__(self) -> None:
        self._last: dict[str, float] | None = None
        self._last_time = 0.0
        self.rates: dict[str, float] = {}

    def update(self, snapshot: Snapshot, now: float) -> dict[str, float]:
        flat = flatten(snapshot)
        if self._last is not None and now > self._last_time:
            dt = now - self._last_time
            last = self._last
            self.rates = {k: max(0.0, (v - last.get(k, 0)) / dt) for k, v in flat.items()}
        self._last, self._last_time = flat, now
        return self.rates


class ProcessSampler:
    """CPU % (of one core: 2 busy cores = 200 %) and resident memory summed over
    a set of processes, between successive samples."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def sample(self, pids: Iterable[int]) -> tuple[float, int]:
        cpu, rss = 0.0, 0
        wanted = set(pids)
        for pid in list(self._procs):
            if pid not in wanted:
                del self._procs[pid]
        for pid in wanted:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)  # the first call only starts the clock
                else:
                    cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
                self._procs.pop(pid, None)
        return cpu, rss
