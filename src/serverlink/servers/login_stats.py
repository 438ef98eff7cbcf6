"""What the login server counts (``LoginStats``) and its console screen
(``LOGIN_SCREEN``, over ``LoginServer.snapshot()``): logins per second, their
completion time (p50/p99 of the last second and of the run), CPU and memory,
and each linked server by name and address with its players and capacity."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from serverlink.monitor.latency import LatencyHistogram
from serverlink.monitor.screen import (
    Row,
    ScreenSpec,
    breakdown,
    ms,
    of,
    process_row,
    rate,
    value,
)


class LoginStats:
    def __init__(self) -> None:
        self.requests = 0
        self.success = 0
        self.by_status: Counter[str] = Counter()
        self.timeouts = 0
        self.db_errors = 0
        self.time_total = 0.0
        self.time_min: float | None = None
        self.time_max = 0.0
        #: Completion times (request to answer) of the successful logins.
        self.times = LatencyHistogram()

    def completed(self, seconds: float) -> None:
        self.times.add(seconds)
        self.success += 1
        self.time_total += seconds
        self.time_max = max(self.time_max, seconds)
        self.time_min = seconds if self.time_min is None else min(self.time_min, seconds)


LOGIN_SCREEN = ScreenSpec(
    "login",
    (
        Row(
            "Sessions",
            (
                of("sessions", "max_sessions"),
                value("sessions_peak", "peak"),
                value("accepted", "accepted"),
            ),
        ),
        Row("Login OK", (value("logins"), rate("logins"), value("login_requests", "requests"))),
        Row(
            "Completion now",
            (ms("login_time_now_p50_ms", "p50"), ms("login_time_now_p99_ms", "p99")),
        ),
        Row(
            "Completion run",
            (
                ms("login_time_p50_ms", "p50"),
                ms("login_time_p99_ms", "p99"),
                ms("login_time_max_ms", "max"),
            ),
        ),
        Row(
            "Linked",
            (
                value("linked_game", "game"),
                value("linked_chat", "chat"),
                value("pending_handoffs", "hand-offs pending"),
            ),
        ),
        Row("Linked servers", (lambda v: linked_text(v.get("linked", [])),)),
        Row(
            "Problems",
            (
                value("login_timeouts", "timeouts"),
                value("stale_answers", "stale answers"),
                value("db_errors", "DB errors"),
                value("rejected_links", "refused links"),
                value("handoff_timeouts", "hand-off timeouts"),
                value("silent_links", "silent links"),
            ),
        ),
        Row(
            "Protection",
            (
                value("cooling_refusals", "refused while cooling off"),
                value("accounts_released", "accounts released"),
            ),
        ),
        Row("Packets", (rate("packets_in", "in"), rate("packets_out", "out"))),
        process_row(),
        breakdown("Results", "login_by_status"),
        breakdown("Disconnects", "disconnects"),
        breakdown("Protocol errors", "errors"),
    ),
)


class Linked(Protocol):
    """What the screen shows of a linked server (``servers.lan.LinkedServer``)."""

    name: str
    address: tuple[str, int]
    players: int
    capacity: int
    status_id: int | None
    draining: bool

    @property
    def keys(self) -> object:
        """Its scope of the shared key store; None: its keys go by hand-off."""


def linked_rows(servers: Iterable[Linked]) -> list[dict[str, Any]]:
    """The linked servers for the snapshot: name, address, players/capacity
    (from their reports; None for an original server, which sends none)."""
    return [
        {
            "name": s.name.partition("@")[0],
            "address": f"{s.address[0]}:{s.address[1]}",
            "players": s.players if s.status_id is not None else None,
            "capacity": s.capacity if s.status_id is not None else None,
            "draining": s.draining,
            "shared_keys": s.keys is not None,
        }
        for s in servers
    ]


def linked_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """``game 127.0.0.1:12211 35/20,000 players; ...`` ("none" when none)."""
    parts = []
    for row in rows:
        load = (
            f"{row['players']:,}/{row['capacity']:,} players"
            if row.get("players") is not None
            else "no load reports"
        )
        draining = ", draining" if row.get("draining") else ""
        keys = ", keys in the shared store" if row.get("shared_keys") else ""
        parts.append(f"{row['name']} {row['address']} {load}{draining}{keys}")
    return "; ".join(parts) or "none"
