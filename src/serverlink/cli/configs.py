"""What a command's options build: the configs of its parts, checked as a
whole before anything starts (the database URL, the three TLS files, linked
or standalone), each mistake a ConfigError that says what to fix. The options
themselves are declared in ``cli.options``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from serverlink.cli.defaults import build
from serverlink.cli.errors import ConfigError
from serverlink.net.server import ServerLimits
from serverlink.net.tls import TlsConfig, TlsConfigError
from serverlink.protocol.codec import NetCodec
from serverlink.servers.link import LinkConfig
from serverlink.store import parse_db_url
from serverlink.store.config import StoreConfig


def checked_db_url(url: str) -> str:
    try:
        parse_db_url(url)
    except ValueError as exc:
        raise ConfigError(f"--db: {exc}") from None
    return url


def store_from(ctx: click.Context, needed_by: str = "") -> StoreConfig:
    """The command's StoreConfig. Without a --db (``store_options(required=True)``)
    a ConfigError says what ``needed_by`` (e.g. "game: linked mode") needs."""
    if ctx.params.get("db") is None:
        raise ConfigError(
            f"{needed_by} needs --db URL, the account database of the login server "
            "(the URL of its --db; or [database] url in the config file, or "
            "SERVERLINK_DATABASE_URL)"
        )
    config = build(ctx, StoreConfig)
    checked_db_url(config.url)
    return config


def tls_from(ctx: click.Context) -> TlsConfig | None:
    """The TlsConfig of --lan-tls-*: all three or none, the files checked now
    (a bad file is a config error, not a failure at the first link)."""
    given = [ctx.params["lan_tls_cert"], ctx.params["lan_tls_key"], ctx.params["lan_tls_ca"]]
    if not any(given):
        return None
    if not all(given):
        raise ConfigError(
            "--lan-tls-cert, --lan-tls-key and --lan-tls-ca go together: give all three"
        )
    tls = build(ctx, TlsConfig)
    try:
        tls.client_context()
    except TlsConfigError as exc:
        raise ConfigError(str(exc)) from None
    return tls


def server_parts(ctx: click.Context) -> Mapping[str, Any]:
    """The codec and the limits of a server command."""
    return {"codec": build(ctx, NetCodec), "limits": build(ctx, ServerLimits)}


def linked_mode(ctx: click.Context, kind: str, standalone: bool) -> LinkConfig | None:
    """The link of a game or chat server: None with --standalone; otherwise
    --login-server is required (and contradicts --standalone)."""
    given = ctx.params["login_server"] is not None
    if standalone and given:
        raise ConfigError(
            f"{kind}: --standalone and --login-server contradict each other: give "
            f"--login-server for a linked {kind} server, --standalone for one without"
        )
    if standalone:
        return None
    if not given:
        raise ConfigError(
            f"{kind}: linked mode (the default) needs --login-server HOST:PORT; "
            "use --standalone to run without a login server"
        )
    return build(ctx, LinkConfig, tls=tls_from(ctx))
