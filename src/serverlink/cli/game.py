"""``serverlink game``: the game (echo) server, standalone or linked to a login server."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from serverlink.cli.app import serve_command
from serverlink.cli.errors import ConfigError
from serverlink.cli.options import (
    HostPort,
    build,
    codec_options,
    console_options,
    listen_options,
    login_timeout_option,
    server_parts,
    setting,
    store_from,
    store_options,
    tls_from,
    tls_options,
)
from serverlink.runner import ServerSpec
from serverlink.servers.game import GameConfig, build_game_server, game_screen
from serverlink.servers.link import LinkConfig


@click.command("game")
@click.option(
    "--standalone",
    is_flag=True,
    default=False,
    help="Run without a login server: every login is accepted (virtual login).",
)
@setting(
    LinkConfig,
    "--login-server",
    type=HostPort(),
    default=None,
    help="Linked mode: the login server's LAN address to register with.",
)
@store_options("Linked mode: account database (sqlite:///path.db or mysql://user@host/db).")
@setting(
    GameConfig,
    "--server-id",
    type=click.IntRange(1, 2**31 - 1024),
    help="Linked mode: the status value marking this server's accounts in game "
    "(workers add their index); a restart clears the accounts holding it.",
)
@setting(LinkConfig, "--server-name", help="Linked mode: name registered with the login server.")
@setting(
    LinkConfig,
    "--public-addr",
    type=HostPort(),
    help="Linked mode: address the login server gives clients (default: --host:--port).",
)
@setting(
    LinkConfig,
    "--link-heartbeat",
    field="heartbeat",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Linked mode: seconds between status reports to the login server; the link is "
    "re-established after three without an answer (0: none, for an original login server).",
)
@tls_options
@login_timeout_option(LinkConfig, "key_ttl")
@setting(
    GameConfig,
    "--client-version",
    type=click.IntRange(0, 2**31 - 1),
    help="CS_GAME_REQ_LOGIN Version a client must send (Status 3 otherwise).",
)
@listen_options(GameConfig)
@codec_options
@console_options
@click.pass_context
def game_command(ctx: click.Context, /, standalone: bool, **opts: Any) -> int:
    """The game (echo) server: login, echo and heartbeat packets of the
    original game dummy client, with a live console screen."""
    config = build(ctx, GameConfig, **server_parts(ctx))
    if standalone:
        return serve_command(ctx, ServerSpec("game", build_game_server, config))
    if opts["login_server"] is None:
        raise ConfigError(
            "game: linked mode (the default) needs --login-server HOST:PORT; "
            "use --standalone to run without a login server"
        )
    linked = dataclasses.replace(
        config, link=build(ctx, LinkConfig, tls=tls_from(ctx)), store=store_from(ctx)
    )
    return serve_command(ctx, ServerSpec("game", build_game_server, linked), game_screen(linked))
