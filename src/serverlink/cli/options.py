"""The options of the commands, declared once, by the config dataclass they set.

Each group is the options of one config class (``ServerLimits``, ``NetCodec``,
``StoreConfig``, ``LinkConfig``, ``LoginConfig``, ...) or of one part of the
command line (the console's); a command is the groups it takes, and ``build``
(``cli.defaults``) turns their values into its config, with the dataclasses'
own defaults. An option that two commands share (``--quiet``, ``--db``,
``--clients``, ``--code``) is declared here once. The dummy's own options are
beside it, in ``cli.dummy``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from serverlink import logs
from serverlink.cli.defaults import (
    ADDRESS,
    ADDRESSES,
    BYTE,
    KEY_STORE_URL,
    LOG_LEVEL,
    PORT,
    HostPort,
    Seconds,
    apply,
    build,
    opt,
    options_of,
    setting,
)
from serverlink.cli.errors import ConfigError
from serverlink.net.server import ServerLimits
from serverlink.net.tls import TlsConfig, TlsConfigError
from serverlink.protocol.codec import NetCodec
from serverlink.runner import RunOptions
from serverlink.servers.game import GameConfig
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginConfig
from serverlink.store import parse_db_url
from serverlink.store.config import StoreConfig
from serverlink.store.keys import REDIS_URL_FORM

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["ADDRESS", "ADDRESSES", "BYTE", "LOG_LEVEL", "PORT", "HostPort"]  # value types

# --- every server ------------------------------------------------------------------------------


def address_options(config: type[Any]) -> Callable[[F], F]:
    """--host and --port, with the defaults of ``config``."""
    return options_of(
        config,
        opt("--host", None, "Address to listen on (0.0.0.0: every IPv4 interface)."),
        opt("--port", PORT, "TCP port to listen on (0: a free port, shown in the log)."),
    )


workers_option = options_of(
    RunOptions,
    opt(
        "--workers",
        click.IntRange(1, 256),
        "Worker processes sharing the port (SO_REUSEPORT), one event loop each.",
    ),
)


def listen_options(config: type[Any], workers: bool = True) -> Callable[[F], F]:
    """--host and --port (the defaults of ``config``), --workers (unless the
    server runs in one process only), and the listener's limits."""
    return apply(
        [
            address_options(config),
            *([workers_option] if workers else []),
            limits_options,
        ]
    )


limits_options = options_of(
    ServerLimits,
    opt(
        "--max-sessions",
        click.IntRange(min=1),
        "Concurrent sessions per worker; a connection over the cap is closed at once and counted.",
    ),
    opt(
        "--idle-timeout",
        Seconds(min=0),
        "Seconds without a packet before a session is dropped (0: never).",
    ),
    opt(
        "--send-buffer-limit",
        click.IntRange(min=1024),
        "Bytes queued for a peer that does not read before it is dropped.",
        metavar="BYTES",
    ),
    opt(
        "--login-deadline",
        Seconds(min=0),
        "A connection not logged in within this time is closed and counted (0: no limit).",
    ),
    opt(
        "--max-sessions-per-ip",
        click.IntRange(min=0),
        "Concurrent sessions from one client address (0: no limit).",
    ),
    opt("--backlog", click.IntRange(min=1), "Connections the kernel queues before accepting."),
)

codec_options = options_of(
    NetCodec,
    opt("--code", BYTE, "Net frame code byte (the original's PACKET_CODE)."),
    opt("--key1", BYTE, "Net frame key 1 (PACKET_KEY1)."),
    opt("--key2", BYTE, "Net frame key 2 (PACKET_KEY2)."),
    opt(
        "--max-payload",
        click.IntRange(2, 65535),
        "Largest payload accepted; a longer frame drops the connection.",
        metavar="BYTES",
    ),
)


def flag(name: str, help: str) -> Callable[[F], F]:
    """An on/off option of a command, off by default (``--quiet``, ``--standalone``)."""
    return click.option(name, is_flag=True, default=False, help=help)


def log_options(root: bool) -> Callable[[F], F]:
    """--log-level, --log-file and --log-format of the root, or of a command
    (default: the root's)."""
    return apply(
        [
            click.option(
                "--log-level",
                type=LOG_LEVEL,
                default="info" if root else None,
                show_default=root,
                help="Lowest level of the log lines shown"
                + ("." if root else " (default: the root --log-level)."),
            ),
            click.option(
                "--log-file",
                metavar="FILE",
                default=None,
                help="Also append the log lines to this file"
                + ("." if root else " (default: the root --log-file)."),
            ),
            click.option(
                "--log-format",
                type=click.Choice(logs.FORMATS),
                default="text" if root else None,
                show_default=root,
                help="Log lines as text (time level name: message) or one JSON object each"
                + ("." if root else " (default: the root --log-format)."),
            ),
        ]
    )


console_options = apply(
    [
        flag(
            "--quiet",
            "No live screen: a summary log line every --stats-interval seconds "
            "(for services and CI; also when stderr is not a terminal).",
        ),
        options_of(
            RunOptions,
            opt(
                "--stats-interval", Seconds(min=0.5), "Seconds between summary lines with --quiet."
            ),
        ),
        log_options(root=False),
    ]
)


# --- the account database and the server-to-server link ----------------------------------------


def db_option(
    help: str, *names: str, config: type[Any] = StoreConfig, shared: bool = True, **attrs: Any
) -> Callable[[F], F]:
    """--db URL, the account database: by default the ``url`` of a StoreConfig.
    ``shared``: the account database of the deployment, which the config file's
    ``[database] url`` and SERVERLINK_DATABASE_URL also set (the demo's own is not)."""
    attrs.setdefault("field", "url")
    return setting(
        config, "--db", *names, metavar="URL", help=help, shared_database=shared, **attrs
    )


def store_options(db_help: str, required: bool = False) -> Callable[[F], F]:
    """--db, --db-timeout, --db-pool-max: a server's StoreConfig. ``required``:
    no default database (a linked game or chat server must name the login
    server's: ``store_from`` says so when it is missing)."""
    db_attrs: dict[str, Any] = {"default": None} if required else {}
    return apply(
        [
            db_option(db_help, **db_attrs),
            options_of(
                StoreConfig,
                opt(
                    "--db-timeout",
                    Seconds(min=0.1),
                    "Longest wait for one account query (retry included).",
                    field="timeout",
                ),
                opt(
                    "--db-pool-max",
                    click.IntRange(min=1),
                    "Connections to a MySQL/MariaDB account database at most.",
                    field="pool_max",
                ),
            ),
        ]
    )


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


def key_store_option(config: type[Any]) -> Callable[[F], F]:
    """--key-store of the login server and of the servers taking its keys."""
    text = "Where handed-over session keys wait for their client: memory (this process; keys "
    text += f"go over the LAN) or a Redis URL shared by the servers ({REDIS_URL_FORM})."
    return options_of(config, opt("--key-store", KEY_STORE_URL, text, metavar="URL"))


def login_timeout_option(config: type[Any], field: str) -> Callable[[F], F]:
    """--login-timeout of the login server and of the servers holding its
    handed-over keys (both defaults are servers.link.LOGIN_TIMEOUT)."""
    return options_of(
        config,
        opt(
            "--login-timeout",
            Seconds(min=0.1),
            "A login not completed within this time is dropped; handed-over keys expire after it.",
            field=field,
        ),
    )


tls_options = options_of(
    TlsConfig,
    opt(
        "--lan-tls-cert",
        None,
        "Mutual TLS on the server-to-server link: this server's certificate "
        "(with --lan-tls-key and --lan-tls-ca; serverlink servers only).",
        field="cert",
        metavar="FILE",
        default=None,
    ),
    opt("--lan-tls-key", None, "Its private key.", field="key", metavar="FILE", default=None),
    opt(
        "--lan-tls-ca",
        None,
        "The CA that signed the other side's certificate.",
        field="ca",
        metavar="FILE",
        default=None,
    ),
)


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


# --- game and login ----------------------------------------------------------------------------

game_options = options_of(
    GameConfig,
    opt(
        "--server-id",
        click.IntRange(1, 2**31 - 1024),
        "Linked mode: the status value marking this server's accounts in game "
        "(workers add their index); a restart clears the accounts holding it.",
    ),
    opt(
        "--client-version",
        click.IntRange(0, 2**31 - 1),
        "CS_GAME_REQ_LOGIN Version a client must send (Status 3 otherwise).",
    ),
)

link_options = options_of(
    LinkConfig,
    opt(
        "--login-server",
        ADDRESSES,
        "Linked mode: the LAN address of the login server to register with; several "
        "separated by commas (A:8090,B:8090): it links to every one.",
        default=None,
        field="login_servers",
    ),
    opt(
        "--server-name",
        None,
        "Linked mode: name registered with the login server (default: the server's kind).",
    ),
    opt(
        "--public-addr",
        ADDRESS,
        "Linked mode: address the login server gives clients (default: --host:--port).",
    ),
    opt(
        "--link-heartbeat",
        Seconds(min=0),
        "Linked mode: seconds between status reports to the login server; the link is "
        "re-established after three without an answer (0: none, for an original login server).",
        field="heartbeat",
    ),
)


login_options = options_of(
    LoginConfig,
    opt(
        "--game-addr",
        ADDRESS,
        "Game server address given to clients (default: the one each game server announces).",
    ),
    opt(
        "--chat-addr",
        ADDRESS,
        "Chat server address given to clients (default: the one a chat server announces).",
    ),
    opt(
        "--lan-register-deadline",
        Seconds(min=0.1),
        "A server-to-server connection that has not registered in this time is closed.",
    ),
    opt(
        "--handoff-timeout",
        Seconds(min=0.05),
        "A linked server that does not answer a hand-off in time is skipped for that login.",
    ),
    opt(
        "--release-after",
        Seconds(min=0),
        "Accounts claimed by a server whose link is gone this long are released.",
    ),
    opt(
        "--login-fail-limit",
        click.IntRange(min=0),
        "Failed logins from one address within --login-fail-window before it cools off "
        "(0: no limit).",
    ),
    opt("--login-fail-window", Seconds(min=0.1), "Window of --login-fail-limit."),
    opt(
        "--login-cooldown",
        Seconds(min=0),
        "How long a cooling address is answered Status 0 without a database read.",
    ),
    opt(
        "--dummy-accounts-below",
        click.IntRange(min=0),
        "LOAD TESTS ONLY: accounts numbered below this log in with any key, as the original "
        "login server let its dummy clients (which send random keys) in; 0: off. Logged as a "
        "warning at start.",
    ),
)


# --- the dummy and the demo --------------------------------------------------------------------


def load_options(config: type[Any]) -> Callable[[F], F]:
    """The load the dummy puts on the servers (its own, and in the demo)."""
    return options_of(
        config,
        opt(
            "--clients",
            click.IntRange(min=1),
            "Virtual clients (echo mode: AccountNo 1..N; login mode: one account each from "
            "the key file).",
        ),
        opt(
            "--echo-depth",
            click.IntRange(0, 4096),
            "Echo requests kept in flight per client (the original's ECHO_OVERLAP); "
            "0 = log in and send only heartbeats.",
        ),
        opt("--seconds", Seconds(min=0), "Run length; 0 = until Ctrl-C."),
        opt(
            "--disconnect-rate",
            click.FloatRange(0.0, 1.0),
            "Each second, each logged-in client leaves with probability P, "
            "then reconnects and logs in again.",
            metavar="PROBABILITY",
        ),
    )
