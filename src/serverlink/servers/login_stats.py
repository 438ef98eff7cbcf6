"""What the login server counts (``LoginStats``) and its console screen
(``LOGIN_SCREEN``, over ``LoginServer.snapshot()``)."""

from __future__ import annotations

from collections import Counter

from serverlink.monitor.screen import Row, ScreenSpec, breakdown, fmt, of, rate, value


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

    def completed(self, seconds: float) -> None:
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
            "Completion",
            (
                fmt("avg {login_time_avg_ms:.1f} ms"),
                fmt("min {login_time_min_ms:.1f} ms"),
                fmt("max {login_time_max_ms:.1f} ms"),
            ),
        ),
        Row(
            "Linked",
            (
                value("linked_game", "game"),
                value("linked_chat", "chat"),
                value("pending_handoffs", "pending"),
            ),
        ),
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
        breakdown("Results", "login_by_status"),
        breakdown("Disconnects", "disconnects"),
        breakdown("Protocol errors", "errors"),
    ),
)
