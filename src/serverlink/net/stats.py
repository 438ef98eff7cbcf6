"""Counters of the network core: plain ints bumped on the hot path, read by the
monitor once a second (no locks, no per-packet allocation)."""

from __future__ import annotations

from collections import Counter
from typing import Any


class NetStats:
    __slots__ = (
        "accepted",
        "disconnects",
        "errors",
        "packets_in",
        "packets_out",
        "refused_over_cap",
        "sessions",
        "sessions_peak",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.refused_over_cap = 0
        self.sessions = 0
        self.sessions_peak = 0
        self.packets_in = 0
        self.packets_out = 0
        self.disconnects: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def count_disconnect(self, reason: str) -> None:
        self.disconnects[reason] += 1

    def count_error(self, reason: str) -> None:
        self.errors[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "refused_over_cap": self.refused_over_cap,
            "sessions": self.sessions,
            "sessions_peak": self.sessions_peak,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "disconnects": dict(self.disconnects),
            "errors": dict(self.errors),
        }
