"""The dummy's counters in words, and which of them each mode shows.

The dashboard and the summary label every row in words (``COUNTER_LABELS``)
and show only the counters the run's mode can move (``counters_of``); a
counter without a label (a mode added later) shows under its own name.
"""

from __future__ import annotations

from collections.abc import Mapping

from serverlink.dummy.metrics import COUNTERS, Aggregate

COUNTER_LABELS = {
    "connect_total": "connection attempts",
    "connect_fail": "connections failed",
    "login_ok": "game logins accepted",
    "login_fail": "game logins refused",
    "login_timeout": "game logins unanswered",
    "disconnect_server": "connections closed by the server",
    "disconnect_planned": "planned disconnects (--disconnect-rate)",
    "echo_sent": "echoes sent",
    "echo_recv": "echoes verified",
    "echo_late": "echoes late (over --late)",
    "echo_timeout": "echoes unanswered (--reply-timeout)",
    "packet_error": "bad packets",
    "heartbeat_sent": "heartbeats sent",
    "login_server_ok": "login server: logins accepted",
    "login_server_fail": "login server: logins refused",
    "login_flows": "login flows completed",
    "account_wait": "waits for a free account",
    "account_busy": "account busy (its logout in flight)",
    "server_lost": "flows cut: game server lost",
    "account_locked": "account locked (its server was lost)",
    "worker_failed": "worker processes failed",
    "web_signups": "web API: accounts made",
    "web_signins": "web API: sign-ins",
    "web_fail": "web API: requests failed",
}

#: The counters of login mode only (the login server and the account rotation).
LOGIN_ONLY = (
    "login_server_ok",
    "login_server_fail",
    "login_flows",
    "account_wait",
    "account_busy",
    "server_lost",
    "account_locked",
)


#: The counters of web mode only (the account web API).
WEB_ONLY = ("web_signups", "web_signins", "web_fail")


def counters_of(mode: str) -> tuple[str, ...]:
    """The counters a run of ``mode`` shows (echo mode: none of login mode's;
    none but web mode the web API's)."""
    hidden = (LOGIN_ONLY if mode == "echo" else ()) + (WEB_ONLY if mode != "web" else ())
    return tuple(name for name in COUNTERS if name not in hidden)


def label(name: str) -> str:
    return COUNTER_LABELS.get(name, name)


def ms_text(value: float | None) -> str:
    """A duration in ms, or "–" for an interval without a sample."""
    return "–" if value is None else f"{value:.2f} ms"


def run_ms(summary: Mapping[str, float], hist: Mapping[int, int], *keys: str) -> str:
    """Figures of a run's latency summary joined by " / "; "–" each without samples."""
    return " / ".join(ms_text(summary[key] if hist else None) for key in keys)


def now_ms(agg: Aggregate, login: bool = False) -> tuple[float | None, float | None, float | None]:
    """p50, p99, max of the last interval; None each when it had no sample."""
    sampled = any((w.login_hist if login else w.hist) for w in agg.workers if not w.done)
    if not sampled:
        return None, None, None
    return agg.latency_now_ms(login=login)
