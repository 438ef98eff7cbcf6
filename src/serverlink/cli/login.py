"""``serverlink login``: the login (auth) server."""

from __future__ import annotations

from typing import Any

import click

from serverlink.cli.app import serve_command
from serverlink.cli.options import (
    PORT,
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
from serverlink.servers.login import LOGIN_SCREEN, LoginConfig, build_login_server


@click.command("login")
@setting(
    LoginConfig, "--lan-host", help="Address of the server-to-server (LAN) port (default: --host)."
)
@setting(
    LoginConfig,
    "--lan-port",
    type=PORT,
    help="Server-to-server port where game/chat servers register.",
)
@store_options("Account database (sqlite:///path.db or mysql://user@host:3306/accountdb).")
@setting(
    LoginConfig,
    "--game-addr",
    type=HostPort(),
    help="Game server address given to clients (default: the one each game server announces).",
)
@setting(
    LoginConfig,
    "--chat-addr",
    type=HostPort(),
    help="Chat server address given to clients (default: the one a chat server announces).",
)
@login_timeout_option(LoginConfig, "login_timeout")
@setting(
    LoginConfig,
    "--lan-allow-any",
    is_flag=True,
    help="Let servers link from any address while the whiteip table is empty "
    "(else loopback only). A linked server receives every login's session key.",
)
@setting(
    LoginConfig,
    "--lan-register-deadline",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="A server-to-server connection that has not registered within this time is closed.",
)
@setting(
    LoginConfig,
    "--handoff-timeout",
    type=click.FloatRange(min=0.05),
    metavar="SECONDS",
    help="A linked server that does not answer a hand-off in time is skipped for that login.",
)
@setting(
    LoginConfig,
    "--release-after",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Accounts claimed by a server whose link is gone this long are released.",
)
@setting(
    LoginConfig,
    "--login-fail-limit",
    type=click.IntRange(min=0),
    help="Failed logins from one address within --login-fail-window before it cools off "
    "(0: no limit).",
)
@setting(
    LoginConfig,
    "--login-fail-window",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Window of --login-fail-limit.",
)
@setting(
    LoginConfig,
    "--login-cooldown",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long a cooling address is answered Status 0 without a database read.",
)
@tls_options
@listen_options(LoginConfig)
@codec_options
@console_options
@click.pass_context
def login_command(ctx: click.Context, /, **_settings: Any) -> int:
    """The login (auth) server: checks each client's session key in the account
    database, hands it to every linked game/chat server, then answers with
    their addresses."""
    config = build(
        ctx, LoginConfig, store=store_from(ctx), lan_tls=tls_from(ctx), **server_parts(ctx)
    )
    return serve_command(ctx, ServerSpec("login", build_login_server, config), LOGIN_SCREEN)
