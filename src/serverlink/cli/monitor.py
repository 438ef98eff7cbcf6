"""``serverlink monitor``: the monitoring server (servers report on its LAN
port, monitoring tools log in on its port, the dashboard on --http-port), and
``serverlink monitor history``: what it saved."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from serverlink.aio import run_loop
from serverlink.cli import configs, observe, options
from serverlink.cli.app import serve_command
from serverlink.cli.defaults import Seconds, build, opt, options_of
from serverlink.cli.errors import ConfigError, OneLineError
from serverlink.monitor.figures import KIND_BY_NAME, KINDS, Kind
from serverlink.runner import ServerSpec
from serverlink.servers.monitor import MONITOR_SCREEN, MonitorConfig, build_monitor_server
from serverlink.store import StoreError, parse_db_url
from serverlink.store.history import HistoryRow, HistoryStore, format_date
from serverlink.store.url import SqliteTarget

history_db_option = options_of(
    MonitorConfig,
    opt(
        "--history-db",
        None,
        "History database: sqlite:///path.db, or mysql://user@host/status_server "
        "(the original's tables hardware, login, battle, chat).",
        metavar="URL",
    ),
)

monitor_options = options_of(
    MonitorConfig,
    opt(
        "--lan-allow",
        None,
        "An address that may report on the LAN port (repeat for several; none: loopback only).",
        multiple=True,
        metavar="IP",
    ),
    opt(
        "--http-host",
        None,
        "Address of the dashboard, its JSON API and /metrics (default: --host).",
    ),
    opt("--login-key", None, "The tools' login key, 32 bytes (the original tool's LOGIN_KEY)."),
    opt("--tool-code", options.BYTE, "Net frame code byte of the tools' port (PACKET_CODE)."),
    opt("--tool-key1", options.BYTE, "Net frame key 1 of the tools' port (PACKET_KEY1)."),
    opt("--tool-key2", options.BYTE, "Net frame key 2 of the tools' port (PACKET_KEY2)."),
    opt("--max-tools", click.IntRange(1, 4096), "Monitoring tools connected at most."),
    opt(
        "--silent-after",
        Seconds(min=1),
        "A server that reported nothing for this long is shown off and its link dropped.",
    ),
    opt("--save-interval", Seconds(min=0.5), "Seconds between history rows."),
    opt(
        "--retention",
        observe.DURATION,
        "History rows older than this are deleted (90s, 15m, 1h, 7d; a number is seconds).",
    ),
)


@click.group("monitor", invoke_without_command=True)
@options.address_options(MonitorConfig)
@observe.lan_side_options(MonitorConfig)
@monitor_options
@observe.http_port_option(MonitorConfig)
@history_db_option
@options.console_options
@click.pass_context
def monitor_group(ctx: click.Context, /, **_settings: Any) -> int:
    """The monitoring server: servers report their figures on its LAN port
    (--monitor on login and game servers), monitoring tools (the original
    Windows tool too) log in on --port and receive them; a web dashboard with
    live and history charts and /metrics on --http-port; the figures are saved
    to the history database."""
    if ctx.invoked_subcommand is not None:
        return 0
    try:
        config = build(ctx, MonitorConfig, lan_allow=tuple(ctx.params["lan_allow"]))
    except ValueError as exc:
        raise ConfigError(f"monitor: {exc}") from None
    configs.checked_db_url(config.history_db)
    return serve_command(ctx, ServerSpec("monitor", build_monitor_server, config), MONITOR_SCREEN)


@monitor_group.command("history")
@history_db_option
@click.option(
    "--server",
    "kind",
    type=click.Choice([k.name for k in KINDS]),
    default=None,
    help="Only this kind (machine: the machine and the monitoring server); default: all.",
)
@click.option("--server-no", type=click.IntRange(0, 255), default=None, help="Only this ServerNo.")
@click.option(
    "--since",
    type=observe.DURATION,
    default="1h",
    show_default=True,
    help="How far back (90s, 15m, 1h, 7d).",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="JSON lines, not a table.")
def history_command(
    history_db: str, kind: str | None, server_no: int | None, since: float, as_json: bool
) -> None:
    """What the monitoring server saved: one row per server per --save-interval."""
    configs.checked_db_url(history_db)
    target = parse_db_url(history_db)
    if isinstance(target, SqliteTarget) and not Path(target.path).exists():
        raise OneLineError(f"monitor history: no history at {history_db} (the monitor writes it)")
    kinds = [KIND_BY_NAME[kind]] if kind else list(KINDS)
    try:
        rows = run_loop(_read(history_db, kinds, since, server_no))
    except StoreError as exc:
        raise OneLineError(f"monitor history: {exc}") from None
    if as_json:
        for row in rows:
            line = {"kind": row.kind, "server_no": row.server_no, "time": row.time}
            click.echo(json.dumps({**line, "date": format_date(row.time), **row.values}))
        return
    # A pipe gets the whole table, not one cut to 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=400)
    for k in kinds:
        table = _table(k, [r for r in rows if r.kind == k.name])
        console.print(table)


async def _read(
    url: str, kinds: list[Kind], since: float, server_no: int | None
) -> list[HistoryRow]:
    import time

    store = HistoryStore(url)
    try:
        await store.connect()
        rows: list[HistoryRow] = []
        for kind in kinds:
            rows += await store.query(kind, time.time() - since, server_no)
        return rows
    finally:
        await store.close()


def _table(kind: Kind, rows: list[HistoryRow]) -> Table:
    table = Table(title=f"{kind.name} ({kind.table}): {len(rows)} rows", title_justify="left")
    table.add_column("date (UTC)")
    table.add_column("no", justify="right")
    for figure in kind.figures:
        table.add_column(figure.name, justify="right")
    for row in rows:
        cells = [
            "" if row.values[f.name] is None else f"{row.values[f.name]:,}" for f in kind.figures
        ]
        table.add_row(format_date(row.time), str(row.server_no), *cells)
    return table
