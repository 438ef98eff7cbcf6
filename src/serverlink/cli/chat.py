"""``serverlink chat``: the chat server, standalone or linked to a login server."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from serverlink.cli import configs, observe, options
from serverlink.cli.app import serve_command
from serverlink.cli.defaults import build
from serverlink.runner import ServerSpec
from serverlink.servers.chat import CHAT_SCREEN, ChatConfig, build_chat_server
from serverlink.servers.link import LinkConfig


@click.command("chat")
@options.flag(
    "--standalone", "Run without a login server: every login is accepted (virtual login)."
)
@options.link_options
@options.tls_options
@options.login_timeout_option(LinkConfig, "key_ttl")
@options.key_store_option(LinkConfig)
@options.chat_options
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
    config = build(ctx, ChatConfig, **configs.server_parts(ctx))
    linked = dataclasses.replace(config, link=configs.linked_mode(ctx, "chat", standalone))
    return serve_command(ctx, ServerSpec("chat", build_chat_server, linked), CHAT_SCREEN)
