"""``serverlink game``: the game (echo) server, standalone or linked to a login server."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from serverlink.cli import observe, options
from serverlink.cli.app import serve_command
from serverlink.cli.defaults import build
from serverlink.cli.errors import ConfigError
from serverlink.runner import ServerSpec
from serverlink.servers.game import GameConfig, build_game_server, game_screen
from serverlink.servers.link import LinkConfig


@click.command("game")
@options.flag(
    "--standalone", "Run without a login server: every login is accepted (virtual login)."
)
@options.link_options
@options.store_options(
    "Linked mode (required): the login server's account database "
    "(sqlite:///path.db or mysql://user[:pass]@host[:port]/dbname).",
    required=True,
)
@options.tls_options
@options.login_timeout_option(LinkConfig, "key_ttl")
@options.key_store_option(LinkConfig)
@options.game_options
@options.listen_options(GameConfig)
@options.codec_options
@observe.observe_options
@options.console_options
@click.pass_context
def game_command(ctx: click.Context, /, standalone: bool, **_settings: Any) -> int:
    """The game (echo) server: login, echo and heartbeat packets of the
    original game dummy client, with a live console screen."""
    config = build(ctx, GameConfig, **options.server_parts(ctx))
    if standalone:
        if ctx.params["login_server"] is not None:
            raise ConfigError(
                "game: --standalone and --login-server contradict each other: "
                "give --login-server for a linked game server, --standalone for one without"
            )
        return serve_command(ctx, ServerSpec("game", build_game_server, config))
    if ctx.params["login_server"] is None:
        raise ConfigError(
            "game: linked mode (the default) needs --login-server HOST:PORT; "
            "use --standalone to run without a login server"
        )
    link = build(ctx, LinkConfig, tls=options.tls_from(ctx))
    store = options.store_from(ctx, "game: linked mode")
    linked = dataclasses.replace(config, link=link, store=store)
    return serve_command(ctx, ServerSpec("game", build_game_server, linked), game_screen(linked))
