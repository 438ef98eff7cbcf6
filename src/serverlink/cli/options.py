"""The options of the commands, declared once, and the one place a default comes
from: the field of the config dataclass the option sets.

::

    @setting(LoginConfig, "--handoff-timeout", type=click.FloatRange(min=0.05), help="...")

is ``--handoff-timeout`` with the default of ``LoginConfig.handoff_timeout``
(shown in ``--help`` and ``serverlink config example``), and
``build(ctx, LoginConfig, ...)`` makes the command's LoginConfig from the values
of its settings of that class, which click has taken from the flag, the
environment, the config file or that default. A command's own options
(``--standalone``, ``--quiet``) are plain click options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from serverlink import logs
from serverlink.cli.errors import ConfigError
from serverlink.net.server import ServerLimits
from serverlink.net.tls import TlsConfig, TlsConfigError
from serverlink.protocol.codec import NetCodec
from serverlink.runner import RunOptions
from serverlink.store import parse_db_url
from serverlink.store.config import StoreConfig

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    _HostPortBase = click.ParamType[tuple[str, int]]
else:  # click < 8.2 has no generic ParamType at run time
    _HostPortBase = click.ParamType


# --- defaults from the config dataclasses ------------------------------------------------------


def default_of(config: type[Any], name: str) -> Any:
    """The default of the field ``name`` of the dataclass ``config`` (its
    ``default_factory`` called). Read from the dataclass's fields: the class
    attribute of a slotted dataclass is a slot, not the default."""
    for found in dataclasses.fields(config):
        if found.name != name:
            continue
        if found.default is not dataclasses.MISSING:
            return found.default
        if callable(found.default_factory):
            return found.default_factory()
        raise TypeError(f"{config.__name__}.{name} has no default")
    raise AttributeError(f"{config.__name__} has no field {name!r}")


def _param_name(decls: Sequence[str]) -> str:
    """The parameter name click gives an option declared with ``decls``."""
    for decl in decls:
        if decl.isidentifier():
            return decl
    longest = max(decls, key=lambda d: (d.startswith("--"), len(d)))
    return longest.lstrip("-").replace("-", "_")


class Setting(click.Option):
    """An option that sets the field ``field`` (by default the option's name) of
    the dataclass ``config``; without a ``default=`` its default is the field's."""

    def __init__(
        self,
        param_decls: Sequence[str],
        *,
        config: type[Any],
        field: str | None = None,
        **attrs: Any,
    ) -> None:
        self.config = config
        self.field = field or _param_name(param_decls)
        if "default" not in attrs:
            attrs["default"] = default_of(config, self.field)
            attrs.setdefault("show_default", True)
        super().__init__(param_decls, **attrs)


def setting(config: type[Any], *decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option(*decls, **attrs)`` as a Setting of ``config``."""
    return click.option(*decls, cls=Setting, config=config, **attrs)


def build(ctx: click.Context, config: type[T], **given: Any) -> T:
    """``config`` from the values of the command's settings of that class, and
    the fields in ``given`` (parts the command makes itself)."""
    values = {
        p.field: ctx.params[p.name]
        for p in ctx.command.params
        if isinstance(p, Setting) and p.config is config and p.name in ctx.params
    }
    return config(**{**values, **given})


def host_port_default(config: type[Any], host: str, port: str) -> str:
    """``HOST:PORT`` from two fields' defaults, as a --help and a config file show it."""
    return f"{default_of(config, host)}:{default_of(config, port)}"


def apply(options: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    """The decorators ``options`` as one, in the order written."""

    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


# --- value types -------------------------------------------------------------------------------

PORT = click.IntRange(0, 65535)
BYTE = click.IntRange(0, 255)
LOG_LEVEL = click.Choice(logs.LEVELS, case_sensitive=False)


class HostPort(_HostPortBase):
    """``HOST:PORT`` (``[v6addr]:PORT`` for IPv6) -> (host, port)."""

    name = "HOST:PORT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            host, port = value
            return str(host), int(port)
        text = str(value).strip()
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or not port_text:
            self.fail(f"{text!r} is not HOST:PORT", param, ctx)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            self.fail(f"{text!r}: write an IPv6 address as [ADDR]:PORT", param, ctx)
        try:
            port = int(port_text)
        except ValueError:
            self.fail(f"{text!r}: port {port_text!r} is not a number", param, ctx)
        if not 0 < port < 65536:
            self.fail(f"{text!r}: port {port} is not in 1-65535", param, ctx)
        return host, port


# --- option groups -----------------------------------------------------------------------------


def listen_options(config: type[Any]) -> Callable[[F], F]:
    """--host and --port (the defaults of ``config``'s ``host`` and ``port``),
    --workers, and the ServerLimits of the listener."""
    return apply(
        [
            setting(config, "--host", help="Address to listen on (0.0.0.0: every IPv4 interface)."),
            setting(
                config,
                "--port",
                type=PORT,
                help="TCP port to listen on (0: a free port, shown in the log).",
            ),
            setting(
                RunOptions,
                "--workers",
                type=click.IntRange(1, 256),
                help="Worker processes sharing the port (SO_REUSEPORT), one event loop each.",
            ),
            setting(
                ServerLimits,
                "--max-sessions",
                type=click.IntRange(min=1),
                help="Concurrent sessions per worker; a connection over the cap is closed "
                "at once and counted.",
            ),
            setting(
                ServerLimits,
                "--idle-timeout",
                type=click.FloatRange(min=0),
                help="Seconds without a packet before a session is dropped (0: never).",
            ),
            setting(
                ServerLimits,
                "--send-buffer-limit",
                type=click.IntRange(min=1024),
                metavar="BYTES",
                help="Bytes queued for a peer that does not read before it is dropped.",
            ),
            setting(
                ServerLimits,
                "--login-deadline",
                type=click.FloatRange(min=0),
                metavar="SECONDS",
                help="A connection not logged in within this time is closed and counted "
                "(0: no limit).",
            ),
            setting(
                ServerLimits,
                "--max-sessions-per-ip",
                type=click.IntRange(min=0),
                help="Concurrent sessions from one client address (0: no limit).",
            ),
            setting(
                ServerLimits,
                "--backlog",
                type=click.IntRange(min=1),
                help="Connections the kernel queues before they are accepted.",
            ),
        ]
    )


codec_options = apply(
    [
        setting(
            NetCodec,
            "--code",
            type=BYTE,
            help="Net frame code byte (the original's PACKET_CODE).",
        ),
        setting(NetCodec, "--key1", type=BYTE, help="Net frame key 1 (PACKET_KEY1)."),
        setting(NetCodec, "--key2", type=BYTE, help="Net frame key 2 (PACKET_KEY2)."),
        setting(
            NetCodec,
            "--max-payload",
            type=click.IntRange(2, 65535),
            metavar="BYTES",
            help="Largest payload accepted; a longer frame drops the connection.",
        ),
    ]
)


def quiet_option(help: str) -> Callable[[F], F]:
    """--quiet: plain lines instead of the live screen (what they are: ``help``)."""
    return click.option("--quiet", is_flag=True, default=False, help=help)


console_options = apply(
    [
        quiet_option(
            "No live screen: a summary log line every --stats-interval seconds "
            "(for services and CI; also when stderr is not a terminal)."
        ),
        setting(
            RunOptions,
            "--stats-interval",
            type=click.FloatRange(min=0.5),
            metavar="SECONDS",
            help="Seconds between summary lines with --quiet.",
        ),
        click.option(
            "--log-level",
            type=LOG_LEVEL,
            default=None,
            help="Lowest level of the log lines shown (default: the root --log-level).",
        ),
        click.option(
            "--log-file",
            metavar="PATH",
            default=None,
            help="Also append the log lines to this file (default: the root --log-file).",
        ),
    ]
)


def db_option(
    help: str, *names: str, config: type[Any] = StoreConfig, **attrs: Any
) -> Callable[[F], F]:
    """--db URL, the account database: by default the ``url`` of a StoreConfig."""
    attrs.setdefault("field", "url")
    return setting(config, "--db", *names, metavar="URL", help=help, **attrs)


def store_options(db_help: str) -> Callable[[F], F]:
    """--db, --db-timeout, --db-pool-max: the StoreConfig of a server."""
    return apply(
        [
            db_option(db_help),
            setting(
                StoreConfig,
                "--db-timeout",
                field="timeout",
                type=click.FloatRange(min=0.1),
                metavar="SECONDS",
                help="Longest wait for one account query (retry included).",
            ),
            setting(
                StoreConfig,
                "--db-pool-max",
                field="pool_max",
                type=click.IntRange(min=1),
                help="Connections to a MySQL/MariaDB account database at most.",
            ),
        ]
    )


def checked_db_url(url: str, option: str = "--db") -> str:
    try:
        parse_db_url(url)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    return url


def store_from(ctx: click.Context) -> StoreConfig:
    config = build(ctx, StoreConfig)
    checked_db_url(config.url)
    return config


def login_timeout_option(config: type[Any], field: str) -> Callable[[F], F]:
    """--login-timeout, on the login server and on the linked servers that hold
    its handed-over keys (the two defaults are one constant)."""
    return setting(
        config,
        "--login-timeout",
        field=field,
        type=click.FloatRange(min=0.1),
        metavar="SECONDS",
        help="A login not completed within this time is dropped; handed-over keys expire after it.",
    )


tls_options = apply(
    [
        setting(
            TlsConfig,
            "--lan-tls-cert",
            field="cert",
            metavar="PEM",
            default=None,
            help="Mutual TLS on the server-to-server link: this server's certificate "
            "(with --lan-tls-key and --lan-tls-ca; serverlink servers only).",
        ),
        setting(
            TlsConfig,
            "--lan-tls-key",
            field="key",
            metavar="PEM",
            default=None,
            help="Its private key.",
        ),
        setting(
            TlsConfig,
            "--lan-tls-ca",
            field="ca",
            metavar="PEM",
            default=None,
            help="The CA that signed the other side's certificate.",
        ),
    ]
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
    """The codec and the limits of a server command (codec_options, listen_options)."""
    return {"codec": build(ctx, NetCodec), "limits": build(ctx, ServerLimits)}
