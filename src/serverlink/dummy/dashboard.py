"""What the dummy shows while it runs and at the end.

``LiveDashboard``: a rich Live table redrawn once a second. ``QuietPrinter``: one
plain line per second (CI, services, logs). ``summary_table``: the final table.
All of them read an ``Aggregate`` / ``DummyResult``; none runs the clients.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.labels import counters_of, label, ms_text, now_ms, run_ms
from serverlink.dummy.metrics import (
    ERROR_COUNTERS,
    GAME_LOGIN_STATUS,
    LOGIN_SERVER_STATUS,
    Aggregate,
)
from serverlink.dummy.result import DummyResult
from serverlink.dummy.run import run_dummy

_ERRORS = frozenset(ERROR_COUNTERS)


def _ms(value: float) -> str:
    return f"{value:.2f} ms"


def _refusals(agg: Aggregate) -> str:
    """Refused logins by Status name, e.g. 'login FAIL=3 game FAIL=1'."""
    parts = [
        f"{where} " + " ".join(f"{name}={n}" for name, n in counts.items())
        for where, counts in (
            ("login", agg.refusals(LOGIN_SERVER_STATUS)),
            ("game", agg.refusals(GAME_LOGIN_STATUS)),
        )
        if counts
    ]
    return ", ".join(parts)


def chat_status(agg: Aggregate, elapsed: float) -> str:
    """Chat mode's line of live counters."""
    p50, p99, lat_max = agg.latency_now_ms()
    named = " ".join(f"{k}={v}" for k, v in agg.errors().items() if v)
    t = agg.totals
    return (
        f"t={elapsed:.0f}s connected={agg.gauge('connected')} "
        f"logged_in={agg.gauge('logged_in')} messages/s={agg.rate_now('messages_sent'):.0f} "
        f"deliveries/s={agg.rate_now('deliveries'):.0f} delivery_p50={p50:.2f}ms "
        f"p99={p99:.2f}ms max={lat_max:.2f}ms attacks={t['attack_sent']} "
        f"(dropped {t['attack_dropped']}, muted {t['attack_muted']}) "
        f"errors={agg.errors_total}" + (f" {named}" if named else "")
    )


def status_line(agg: Aggregate, elapsed: float, login: bool = False) -> str:
    """One line of the live counters, e.g. for --quiet; ``login`` adds the
    login flow figures; "–" for a figure of a second without samples."""

    def q(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}ms"

    p50, p99, lat_max = now_ms(agg)
    errors = agg.errors()
    named = " ".join(f"{k}={v}" for k, v in errors.items() if v)
    flows = ""
    if login:
        l50, l99, lmax = now_ms(agg, login=True)
        refused = _refusals(agg)
        flows = (
            f"in_login={agg.gauge('in_login')} in_game={agg.gauge('in_game')} "
            f"logins/s={agg.login_rate_now:.0f} login_p50={q(l50)} "
            f"login_p99={q(l99)} login_max={q(lmax)} " + (f"refused: {refused} " if refused else "")
        )
    return (
        f"t={elapsed:.0f}s connected={agg.gauge('connected')} {flows}"
        f"logged_in={agg.gauge('logged_in')} echo/s={agg.echo_rate_now:.0f} "
        f"reply_wait={agg.gauge('reply_wait')} p50={q(p50)} p99={q(p99)} "
        f"max={q(lat_max)} errors={agg.errors_total}" + (f" {named}" if named else "")
    )


class QuietPrinter:
    """``on_tick`` that prints ``status_line`` once a second."""

    def __init__(self, out: IO[str] | None = None, login: bool = False, chat: bool = False) -> None:
        self.out = out or sys.stdout
        self.login = login
        self.chat = chat

    def __call__(self, agg: Aggregate, elapsed: float) -> None:
        line = chat_status(agg, elapsed) if self.chat else status_line(agg, elapsed, self.login)
        print(line, file=self.out, flush=True)


class LiveDashboard:
    """``on_tick`` that redraws a rich table; use as a context manager."""

    def __init__(self, config: DummyConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console()
        self.live = Live(
            self._render(None, 0.0), console=self.console, auto_refresh=False, transient=False
        )

    def __enter__(self) -> LiveDashboard:
        self.live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.live.stop()

    def __call__(self, agg: Aggregate, elapsed: float) -> None:
        self.live.update(self._render(agg, elapsed), refresh=True)

    def _render(self, agg: Aggregate | None, elapsed: float) -> Table:
        """Two label/value column pairs, every label in words, at most 120
        columns wide: what runs now on the left, the run's counters (only
        those of the mode) on the right."""
        cfg = self.config
        length = f"{cfg.seconds:g} s" if cfg.seconds else "until Ctrl-C"
        mode = f"{cfg.mode} (relogin)" if cfg.relogin else cfg.mode
        table = Table(
            title=(
                f"serverlink dummy: {mode} mode → {cfg.target}, {cfg.clients:,} clients "
                f"× {cfg.echo_depth} in flight, {elapsed:.0f} s of {length}"
            ),
            show_header=False,
            expand=False,
        )
        table.add_column("", style="bold", no_wrap=True)
        table.add_column("", justify="right", no_wrap=True)
        table.add_column("", style="bold", no_wrap=True)
        table.add_column("", justify="right", no_wrap=True)
        if agg is None:
            table.add_row("starting", "", "", "")
            return table
        p50, p99, lat_max = now_ms(agg)
        run = agg.latency_ms()
        if cfg.mode == "chat":
            what, kind = "delivery", "moves"
            rates = [
                ("messages sent per second", f"{agg.rate_now('messages_sent'):,.0f}"),
                ("deliveries verified per second", f"{agg.rate_now('deliveries'):,.0f}"),
            ]
        else:
            what, kind = "echo", "echoes"
            rates = [("echoes verified per second", f"{agg.echo_rate_now:,.0f}")]
        left = [
            ("clients connected", f"{agg.gauge('connected'):,}"),
            ("clients logged in", f"{agg.gauge('logged_in'):,}"),
            *rates,
            (f"{kind} awaiting a reply", f"{agg.gauge('reply_wait'):,}"),
            (f"{what} latency p50 / p99, last second", f"{ms_text(p50)} / {ms_text(p99)}"),
            (f"{what} latency max, last second", ms_text(lat_max)),
            (f"{what} latency p50 / p99, whole run", run_ms(run, agg.hist, "p50", "p99")),
            (f"{what} latency max, whole run", run_ms(run, agg.hist, "max")),
        ]
        if cfg.mode == "login":
            l50, l99, lmax = now_ms(agg, login=True)
            login_run = agg.login_latency_ms()
            left += [
                ("clients at the login server", f"{agg.gauge('in_login'):,}"),
                ("clients at the game server", f"{agg.gauge('in_game'):,}"),
                ("login flows per second", f"{agg.login_rate_now:,.0f}"),
                ("login flow time p50 / p99, last second", f"{ms_text(l50)} / {ms_text(l99)}"),
                ("login flow time max, last second", ms_text(lmax)),
                (
                    "login flow time p50 / p99, whole run",
                    run_ms(login_run, agg.login_hist, "p50", "p99"),
                ),
            ]
            refused = _refusals(agg)
            if refused:
                left.append(("logins refused, by Status", refused))
        right: list[tuple[str, Text]] = []
        for name in counters_of(cfg.mode):
            value = agg.totals[name]
            style = "red" if name in _ERRORS and value else ""
            right.append((label(name), Text(f"{value:,}", style=style)))
        failed = agg.workers_failed
        right.append((label("worker_failed"), Text(str(failed), style="red" if failed else "")))
        total = agg.errors_total
        right.append(("errors in all", Text(f"{total:,}", style="bold red" if total else "green")))
        for i in range(max(len(left), len(right))):
            a, b = left[i] if i < len(left) else ("", "")
            c, d = right[i] if i < len(right) else ("", Text(""))
            table.add_row(a, b, c, d)
        return table


def summary_table(result: DummyResult) -> Group:
    """The end-of-run table (and the error reasons, when there are any)."""
    table = Table(title=f"serverlink dummy — {result.config.mode} summary", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    lat = result.latency_ms
    rows: list[tuple[str, str]] = [
        ("target", result.config.target),
        ("clients × depth", f"{result.config.clients} × {result.config.echo_depth}"),
        ("processes", str(result.processes)),
        ("seconds", f"{result.duration:.2f}"),
        *(
            [
                ("messages/s", f"{result.messages_per_s:,.0f}"),
                ("deliveries/s", f"{result.deliveries_per_s:,.0f}"),
            ]
            if result.config.mode == "chat"
            else [("echo/s", f"{result.echo_per_s:,.0f}")]
        ),
        ("latency p50 / p99", f"{_ms(lat['p50'])} / {_ms(lat['p99'])}"),
        ("latency p99.9 / max", f"{_ms(lat['p99.9'])} / {_ms(lat['max'])}"),
    ]
    if result.config.mode == "login":
        login = result.login_latency_ms
        rows += [
            ("login flows/s", f"{result.login_flows_per_s:,.1f}"),
            ("login time p50 / p99", f"{_ms(login['p50'])} / {_ms(login['p99'])}"),
            ("login time max", _ms(login["max"])),
        ]
        for where, counts in (
            ("login server", result.login_failures),
            ("game login", result.game_login_failures),
        ):
            if counts:
                named = ", ".join(f"{k} {v:,}" for k, v in counts.items())
                rows.append((f"{where} refused", named))
        if result.login_flows_by_game_server:
            spread = result.login_flows_by_game_server.items()
            rows.append(("flows by game server", ", ".join(f"{k} {v:,}" for k, v in spread)))
    for name, value in rows:
        table.add_row(name, value)
    for name in counters_of(result.config.mode):
        count = result.counters.get(name, 0)
        bad = name in _ERRORS and count
        table.add_row(label(name), Text(f"{count:,}", style="red" if bad else ""))
    failed = result.errors.get("worker_failed", 0)
    if failed:
        table.add_row(label("worker_failed"), Text(str(failed), style="red"))
    total = result.errors_total
    table.add_row(
        Text("errors in all", style="bold"),
        Text(f"{total:,}", style="bold red" if total else "bold green"),
    )
    parts: list[Table | Text] = [table]
    if result.error_details:
        details = ", ".join(f"{k}: {v:,}" for k, v in result.error_details.items())
        parts.append(Text(f"error reasons: {details}", style="red"))
    if result.attack_details:
        answers = ", ".join(f"{k}: {v:,}" for k, v in result.attack_details.items())
        parts.append(Text(f"attacks and answers: {answers}"))
    return Group(*parts)


def run_with_display(
    config: DummyConfig, quiet: bool = False, console: Console | None = None
) -> DummyResult:
    """``run_dummy`` with the live dashboard (or, quiet, one line a second),
    then the summary table. For the CLI and the demo command."""
    console = console or Console()
    if quiet:
        printer = QuietPrinter(
            console.file, login=config.mode == "login", chat=config.mode == "chat"
        )
        result = run_dummy(config, printer)
    else:
        with LiveDashboard(config, console) as dash:
            result = run_dummy(config, dash)
    console.print(summary_table(result))
    return result
