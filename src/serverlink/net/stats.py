"""Counters of the network core: plain ints bumped on the hot path, read by the
monitor once a second (no locks, no per-packet allocation), and the log of bad
connections, rate limited per reason."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from serverlink.logs import RateLimitedLog

log = logging.getLogger("serverlink.net")


@dataclass(slots=True, eq=False)
class NetStats:
    #: One line per bad connection, up to a few per reason every 10 s.
    problems: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))
    accepted: int = 0
    refused_over_cap: int = 0
    sessions: int = 0
    sessions_peak: int = 0
    packets_in: int = 0
    packets_out: int = 0
    disconnects: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    #: Logins refused by the rules (a key not handed over, the wrong
    #: version, an account in game elsewhere): a client's problem, not a
    #: protocol error.
    refusals: Counter[str] = field(default_factory=Counter)

    def count_disconnect(self, reason: str) -> None:
        self.disconnects[reason] += 1

    def count_error(self, reason: str) -> None:
        self.errors[reason] += 1

    def report(self, reason: str, msg: str, *args: object) -> None:
        """Count a bad connection by reason and log it (rate limited)."""
        self.errors[reason] += 1
        self.problems.warning(reason, msg, *args)

    def refuse(self, reason: str, msg: str, *args: object) -> None:
        """Count a refused login by reason and log it (info, rate limited)."""
        self.refusals[reason] += 1
        self.problems.info(f"refused:{reason}", msg, *args)

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
            "refusals": dict(self.refusals),
        }
