"""The server console screen, in the spirit of the original IOCP server's:
one panel of rows, redrawn each second, or one plain line for ``--quiet``.

A screen is data: a ``ScreenSpec`` lists rows, each a label and a few cells,
each cell a function of the current ``View`` (snapshot, per-second rates,
uptime, CPU, memory). The game server uses ``standard_rows()``; another server
(the login server: login success/s, completion time, linked servers, failures
by Status) passes ``ScreenSpec(title, standard_rows() + its own rows)``::

    LOGIN_SCREEN = ScreenSpec(
        "login",
        rows=(
            *standard_rows(),
            Row("Login success", (rate("login_ok"), total("login_ok"))),
            Row("Completion ms", (fmt("avg {login_ms_avg:.1f}  min {login_ms_min}  "
                                      "max {login_ms_max}"),)),
            Row("Linked servers", (value("linked_servers"),)),
            breakdown("Failures", "failures_by_status"),
        ),
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True, slots=True)
class View:
    """What one redraw shows."""

    name: str
    address: str
    uptime: float
    snapshot: Mapping[str, Any]
    rates: Mapping[str, float]
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    workers: int = 0  # 0: the server runs in this process
    worker_restarts: int = 0
    pid: int = 0

    def get(self, key: str, default: Any = 0) -> Any:
        return self.snapshot.get(key, default)

    def rate(self, key: str) -> float:
        return self.rates.get(key, 0.0)


Cell = Callable[[View], str]


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    cells: tuple[Cell, ...]
    #: Shown only when this returns True (e.g. a breakdown with entries).
    when: Callable[[View], bool] | None = None


@dataclass(frozen=True, slots=True)
class ScreenSpec:
    title: str
    rows: tuple[Row, ...]
    #: How snapshots of worker processes are merged, per key (see monitor.stats).
    merge_rules: Mapping[str, str] = field(default_factory=dict)


# --- number formatting -----------------------------------------------------------------


def count(n: float) -> str:
    """12,345 / 1.5 M style."""
    if isinstance(n, float) and not n.is_integer():
        if n >= 100:
            return f"{n:,.0f}"
        return f"{n:,.1f}"
    n = int(n)
    return f"{n:,}"


def per_second(n: float) -> str:
    return f"{n:,.0f}/s" if n >= 100 else f"{n:,.1f}/s"


def mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    text = f"{hours:02d}:{minutes:02d}:{s:02d}"
    return f"{days}d {text}" if days else text


# --- cells ------------------------------------------------------------------------------


def value(key: str, label: str = "") -> Cell:
    """The snapshot's number (a total, a gauge)."""
    prefix = f"{label} " if label else ""
    return lambda v: f"{prefix}{count(v.get(key))}"


total = value


def rate(key: str, label: str = "") -> Cell:
    """Per second since the last redraw."""
    prefix = f"{label} " if label else ""
    return lambda v: f"{prefix}{per_second(v.rate(key))}"


def of(key: str, max_key: str) -> Cell:
    """``n / max``."""
    return lambda v: f"{count(v.get(key))} / {count(v.get(max_key))}"


def fmt(template: str) -> Cell:
    """``str.format`` over the snapshot (missing keys show as '-')."""

    def cell(v: View) -> str:
        try:
            return template.format_map(dict(v.snapshot))
        except (KeyError, ValueError, TypeError):
            return "-"

    return cell


def reasons(key: str) -> Cell:
    """A breakdown (reason -> count), largest first."""

    def cell(v: View) -> str:
        items = v.get(key, {})
        if not isinstance(items, Mapping) or not items:
            return "none"
        ranked = sorted(items.items(), key=lambda kv: (-kv[1], str(kv[0])))
        return ", ".join(f"{name} {count(n)}" for name, n in ranked)

    return cell


def breakdown(label: str, key: str) -> Row:
    return Row(label, (reasons(key),))


def _cpu(v: View) -> str:
    return "-" if v.cpu_percent is None else f"{v.cpu_percent:.1f} %"


def _rss(v: View) -> str:
    return "-" if v.rss_bytes is None else f"RSS {mib(v.rss_bytes)}"


def _processes(v: View) -> str:
    if not v.workers:
        return f"pid {v.pid}"
    restarts = f", {v.worker_restarts} restarted" if v.worker_restarts else ""
    return f"{v.workers} workers{restarts}"


def process_row() -> Row:
    """CPU, memory and processes of the server."""
    return Row("Process", (_cpu, _rss, _processes))


def standard_rows() -> tuple[Row, ...]:
    """Rows of every session server: sessions, accepts, logins, packets,
    process, disconnects and protocol errors by reason."""
    return (
        Row("Sessions", (of("sessions", "max_sessions"), value("sessions_peak", "peak"))),
        Row("Accepted", (value("accepted"), value("refused_over_cap", "refused over cap"))),
        Row("Logins", (value("logins"), rate("logins"), value("login_fail", "fail"))),
        Row("Packets in", (rate("packets_in"), value("packets_in", "total"))),
        Row("Packets out", (rate("packets_out"), value("packets_out", "total"))),
        process_row(),
        breakdown("Disconnects", "disconnects"),
        breakdown("Protocol errors", "errors"),
    )


def default_screen(name: str) -> ScreenSpec:
    return ScreenSpec(name, standard_rows())


# --- drawing ------------------------------------------------------------------------------


def _rows(spec: ScreenSpec, view: View) -> list[tuple[str, list[str]]]:
    shown: list[tuple[str, list[str]]] = []
    for row in spec.rows:
        if row.when is not None and not row.when(view):
            continue
        cells: list[str] = []
        for cell in row.cells:
            try:
                cells.append(cell(view))
            except Exception:  # a screen must never take the server down
                cells.append("?")
        shown.append((row.label, cells))
    return shown


def render_screen(spec: ScreenSpec, view: View) -> RenderableType:
    """The panel of one redraw: rows of several cells in aligned columns, then
    rows of one cell (breakdowns) that may take the whole width."""
    rows = _rows(spec, view)
    label_width = max((len(label) for label, _ in rows), default=8)
    width = max((len(cells) for _, cells in rows if len(cells) > 1), default=1)
    columns = Table.grid(padding=(0, 3))
    columns.add_column(style="bold cyan", no_wrap=True, min_width=label_width)
    for _ in range(width):
        columns.add_column()
    wide = Table.grid(padding=(0, 3))
    wide.add_column(style="bold cyan", no_wrap=True, min_width=label_width)
    wide.add_column()
    for label, cells in rows:
        if len(cells) > 1:
            columns.add_row(label, *cells, *([""] * (width - len(cells))))
        else:
            wide.add_row(label, *cells)
    title = Text.assemble(
        ("serverlink ", "bold"),
        (spec.title, "bold green"),
        f"  {view.address}  up {duration(view.uptime)}",
    )
    footer = Text("Ctrl-C stops the server gracefully", style="dim")
    return Panel(Group(columns, wide, footer), title=title, title_align="left", expand=False)


def summary_line(spec: ScreenSpec, view: View) -> str:
    """The screen as one plain line (``--quiet``): ``label cells; ...``."""
    parts = [f"up {duration(view.uptime)}"]
    for label, cells in _rows(spec, view):
        parts.append(f"{label.lower()} {', '.join(c for c in cells if c)}")
    return "; ".join(parts)
