"""``serverlink login``: the login (auth) server."""

from __future__ import annotations

from typing import Any

import click

from serverlink.cli import observe, options
from serverlink.cli.app import serve_command
from serverlink.cli.defaults import build
from serverlink.runner import ServerSpec
from serverlink.servers.login import LOGIN_SCREEN, LoginConfig, build_login_server


@click.command("login")
@observe.lan_side_options(LoginConfig)
@options.login_options
@options.store_options("Account database (sqlite:///path.db or mysql://user@host:3306/accountdb).")
@options.login_timeout_option(LoginConfig, "login_timeout")
@options.key_store_option(LoginConfig)
@options.tls_options
@options.listen_options(LoginConfig, workers=False)  # one process: max_workers 1
@options.codec_options
@observe.observe_options
@options.console_options
@click.pass_context
def login_command(ctx: click.Context, /, **_settings: Any) -> int:
    """The login (auth) server: checks each client's session key in the account
    database, hands it to every linked game/chat server, then answers with
    their addresses."""
    parts = options.server_parts(ctx)
    config = build(
        ctx, LoginConfig, store=options.store_from(ctx), lan_tls=options.tls_from(ctx), **parts
    )
    return serve_command(ctx, ServerSpec("login", build_login_server, config), LOGIN_SCREEN)
