"""``serverlink up``: the servers of a deployment file, on this machine, as one service."""

from __future__ import annotations

import click

from serverlink import logs
from serverlink.aio import run_loop
from serverlink.cli.cluster_example import EXAMPLE
from serverlink.cli.cluster_file import load_cluster
from serverlink.cli.defaults import Seconds, build, opt, options_of
from serverlink.cli.errors import OneLineError
from serverlink.supervise import SuperviseError
from serverlink.supervise.group import GroupConfig, run_group


def _print_example(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(EXAMPLE, nl=False)
        ctx.exit(0)


@click.command("up")
@click.argument("file", metavar="FILE", required=False)
@click.option(
    "--example",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_print_example,
    help="Print a commented example file (2 login, 3 game, 2 chat servers and a monitoring "
    "server on MariaDB and Redis) and exit.",
)
@options_of(
    GroupConfig,
    opt("--start-timeout", Seconds(min=1), "Seconds each server has to be listening."),
    opt("--stop-timeout", Seconds(min=0), "Seconds the servers have to stop before SIGKILL."),
)
@click.pass_context
def up_command(ctx: click.Context, /, file: str | None, **_settings: object) -> int:
    """Start the login, game, chat and monitoring servers FILE lists, each an
    ordinary process ('serverlink <kind>' with the entry's settings as flags);
    print where each listens, restart one that exits (with backoff), and stop
    them all on Ctrl-C or SIGTERM."""
    if file is None:
        raise click.UsageError("give the deployment file (serverlink up --example writes one)")
    entries = load_cluster(file)
    logs.set_process_server("up")
    config = build(ctx, GroupConfig)
    try:
        return run_loop(run_group([entry.child() for entry in entries], config))
    except SuperviseError as exc:
        raise OneLineError(str(exc)) from None
