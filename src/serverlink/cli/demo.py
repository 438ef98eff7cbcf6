"""``serverlink demo``: the options of ``serverlink.demo``, which runs it."""

from __future__ import annotations

from typing import Any

import click

from serverlink import logs
from serverlink.cli.app import state
from serverlink.cli.errors import OneLineError
from serverlink.cli.options import build, checked_db_url, db_option, quiet_option, setting
from serverlink.demo import DemoError, DemoOptions, run_demo


@click.command("demo")
@setting(
    DemoOptions,
    "--seconds",
    type=click.FloatRange(min=1),
    help="How long the dummy client runs.",
)
@setting(DemoOptions, "--clients", type=click.IntRange(min=1), help="Virtual clients of the dummy.")
@setting(
    DemoOptions,
    "--echo-depth",
    type=click.IntRange(min=1),
    help="Echo requests each client keeps in flight (the original's ECHO_OVERLAP).",
)
@setting(
    DemoOptions,
    "--disconnect-rate",
    type=click.FloatRange(0.0, 1.0),
    metavar="P",
    help="Each second a client leaves with probability P and logs in again "
    "(login server, then game server).",
)
@db_option("Account database of the demo (seeded on first run).", config=DemoOptions, field="db")
@setting(
    DemoOptions,
    "--standalone",
    is_flag=True,
    help="Only a standalone game server and the dummy in echo mode (no login server).",
)
@quiet_option("No live dashboard: one status line a second.")
@click.pass_context
def demo_command(ctx: click.Context, /, **_settings: Any) -> int:
    """The linked system on the embedded database: a login server and a game
    server (worker processes, free ports) and the dummy client in login mode
    against them (login server, hand-off, game login, echo, random re-logins),
    with the live dashboard, then the summary. Exit status 0 when no side
    counted an error."""
    app = state(ctx)
    options = build(
        ctx, DemoOptions, quiet=ctx.params["quiet"], log_level=logs.level_number(app.log_level)
    )
    if not options.standalone:
        checked_db_url(options.db)
    try:
        return run_demo(options, app.console)
    except DemoError as exc:
        raise OneLineError(str(exc)) from None
