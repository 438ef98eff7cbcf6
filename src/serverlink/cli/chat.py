"""``serverlink chat``: the chat server, standalone or linked to a login server."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from serverlink.cli import observe, options
from serverlink.cli.app import serve_command
from serverlink.cli.defaults import Seconds, build, opt, options_of
from serverlink.cli.errors import ConfigError
from serverlink.runner import ServerSpec
from serverlink.servers.chat import CHAT_SCREEN, ChatConfig, build_chat_server
from serverlink.servers.link import LinkConfig

chat_options = options_of(
    ChatConfig,
    opt(
        "--flood-messages",
        click.IntRange(0, 1000),
        "Messages a player may send in any --flood-window; past it the player is muted "
        "(its messages dropped and counted, not disconnected). 0: no limit.",
    ),
    opt("--flood-window", Seconds(min=0.01), "The window of --flood-messages."),
    opt("--mute-seconds", Seconds(min=0), "How long a player past the flood limit is muted."),
)


@click.command("chat")
@options.flag(
    "--standalone", "Run without a login server: every login is accepted (virtual login)."
)
@options.link_options
@options.tls_options
@options.login_timeout_option(LinkConfig, "key_ttl")
@options.key_store_option(LinkConfig)
@chat_options
@options.listen_options(ChatConfig, workers=False)
@options.codec_options
@observe.observe_options
@options.console_options
@click.pass_context
def chat_command(ctx: click.Context, /, standalone: bool, **_settings: Any) -> int:
    """The chat server: a 50 × 50 sector grid; a message goes to every player in
    the 3 × 3 sectors around its sender's. One process (the grid lives in it);
    a second chat server is a second process on its own port, which the login
    server places clients on like another game server. It claims no accounts,
    so it needs no database."""
    config = build(ctx, ChatConfig, **options.server_parts(ctx))
    if standalone:
        if ctx.params["login_server"] is not None:
            raise ConfigError(
                "chat: --standalone and --login-server contradict each other: "
                "give --login-server for a linked chat server, --standalone for one without"
            )
        return serve_command(ctx, ServerSpec("chat", build_chat_server, config), CHAT_SCREEN)
    if ctx.params["login_server"] is None:
        raise ConfigError(
            "chat: linked mode (the default) needs --login-server HOST:PORT; "
            "use --standalone to run without a login server"
        )
    link = build(ctx, LinkConfig, tls=options.tls_from(ctx))
    linked = dataclasses.replace(config, link=link)
    return serve_command(ctx, ServerSpec("chat", build_chat_server, linked), CHAT_SCREEN)
