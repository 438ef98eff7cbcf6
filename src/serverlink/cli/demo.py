"""``serverlink demo``: the options of ``serverlink.demo``, which runs it."""

from __future__ import annotations

from typing import Any

import click

from serverlink import logs
from serverlink.cli import configs, observe, options
from serverlink.cli.app import state
from serverlink.cli.defaults import build, opt, options_of
from serverlink.cli.errors import Interrupted, OneLineError
from serverlink.demo import DemoError, DemoInterrupted, DemoOptions, run_demo


@click.command("demo")
@options.load_options(DemoOptions)
@options.db_option(
    "Account database of the demo (seeded on first run).",
    config=DemoOptions,
    field="db",
    shared=False,
)
@options.flag(
    "--standalone",
    "Only a standalone game server and the dummy in echo mode (no login server).",
)
@options_of(
    DemoOptions,
    opt(
        "--chat-clients",
        click.IntRange(min=0),
        "Virtual chat players through the login server (moving, one message a second "
        "each), at the same time as the game traffic; 0: no chat server.",
    ),
)
@observe.http_port_option(DemoOptions)
@options.flag("--quiet", "No live dashboard: one status line a second.")
@click.pass_context
def demo_command(ctx: click.Context, /, standalone: bool, quiet: bool, **_settings: Any) -> int:
    """The linked system on the embedded database: a monitoring server (its
    dashboard's URL is printed), a login server and the game and chat servers
    linked to it, all reporting to the monitor, and the account web API (worker
    processes, free ports), and the dummy client driving game traffic (sign-up
    and sign-in over the web API for a key, login server, hand-off, game login,
    echo, random re-logins; the live dashboard) and chat traffic (moves and
    messages, every delivery checked) through them at once, then the summaries.
    Exit status 0 when no side counted an error."""
    app = state(ctx)
    level = logs.level_number(app.log_level)
    demo = build(ctx, DemoOptions, standalone=standalone, quiet=quiet, log_level=level)
    if not standalone:
        configs.checked_db_url(demo.db)
    try:
        return run_demo(demo, app.console)
    except DemoInterrupted as exc:
        raise Interrupted(str(exc)) from None
    except DemoError as exc:
        raise OneLineError(str(exc)) from None
