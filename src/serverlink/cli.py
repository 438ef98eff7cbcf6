"""The ``serverlink`` command.

::

    serverlink [--config FILE] [--log-level L] [--log-file PATH]
      game      the game (echo) server          (--standalone; linked mode: issue 3)
      demo      game server + dummy client, live dashboard, summary
      config    example | show COMMAND [ARGS]
      db        account database                (serverlink.store.cli:db_group)
      dummy     load client                     (serverlink.dummy.cli:dummy_command)

Every option is also a setting of the config file and an environment variable
(see ``serverlink.config``): defaults < file < environment < flags.

Adding a server command takes a few lines: a picklable config, a module-level
builder, and the shared option groups::

    @main_group.command("login")
    @click.option("--lan-port", type=PORT, default=8090, show_default=True, help="...")
    @listen_options(default_port=8091)
    @codec_options
    @console_options
    @click.pass_context
    def login_command(ctx: click.Context, lan_port: int, **opts: Any) -> int:
        config = LoginConfig(opts["host"], opts["port"], lan_port, codec=codec_from(opts),
                             limits=limits_from(opts))
        return serve_command(ctx, ServerSpec("login", build_login_server, config), opts,
                             screen=LOGIN_SCREEN)

or, from another module, one line in ``LAZY_COMMANDS`` (``"login":
"serverlink.servers.login_cli:login_command"``), imported only when used.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from rich.console import Console

from serverlink import __version__, logs
from serverlink.config import (
    CONFIG_PATH_KEY,
    ENV_PREFIX,
    PROG,
    ConfigError,
    OneLineError,
    assign_envvars,
    command_path,
    envvar_in_use,
    example_toml,
    explain_bad_parameter,
    load_config,
    settings_of,
    toml_value,
)
from serverlink.monitor.screen import (
    ScreenSpec,
)
from serverlink.net.server import ServerLimits
from serverlink.net.tls import TlsConfig, TlsConfigError
from serverlink.protocol.codec import DEFAULT_CODE, DEFAULT_KEY1, DEFAULT_KEY2, NetCodec
from serverlink.runner import RunOptions, ServeError, ServerSpec, serve
from serverlink.servers.game import GameConfig, build_game_server, game_screen
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LOGIN_SCREEN, LoginConfig, build_login_server
from serverlink.store import DEFAULT_DB_URL, DEFAULT_TIMEOUT, parse_db_url
from serverlink.store.config import StoreConfig

F = TypeVar("F", bound=Callable[..., Any])

#: Commands that live in other packages: imported when used (or listed), and
#: left out, without failing the CLI, while their module does not exist yet.
LAZY_COMMANDS: dict[str, str] = {
    "db": "serverlink.store.cli:db_group",
    "dummy": "serverlink.dummy.cli:dummy_command",
}

log = logging.getLogger("serverlink.cli")


# --- the root group ---------------------------------------------------------------------------


def _unavailable(name: str, reason: str) -> click.Command:
    def callback() -> None:
        raise OneLineError(f"{name} is unavailable: {reason}")

    return click.Command(name, callback=callback, help=f"(unavailable: {reason})")


class RootGroup(click.Group):
    """The root group: lazy subcommands, and every command's settings get their
    environment variable (``SERVERLINK_<COMMAND>_<SETTING>``)."""

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self._loaded: dict[str, click.Command | None] = {}
        self._prepared: set[str] = set()

    def _load(self, name: str) -> click.Command | None:
        if name in self._loaded:
            return self._loaded[name]
        module_name, _, attr = self.lazy[name].partition(":")
        cmd: click.Command | None
        try:
            module = importlib.import_module(module_name)
            found = getattr(module, attr)
            if not isinstance(found, click.Command):
                raise TypeError(f"{self.lazy[name]} is not a click command")
            cmd = found
        except ModuleNotFoundError as exc:
            # The module itself (or its package) not written yet: no such command.
            # A dependency it imports that is missing: say so when it is used.
            missing = exc.name or ""
            if module_name == missing or module_name.startswith(missing + "."):
                cmd = None
            else:
                cmd = _unavailable(name, f"{exc}")
        except Exception as exc:  # a module being written may be broken for a while
            cmd = _unavailable(name, f"{self.lazy[name]}: {type(exc).__name__}: {exc}")
        if cmd is not None:
            assign_envvars(cmd, (name,))
        self._loaded[name] = cmd
        return cmd

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(self.commands)
        names.update(n for n in self.lazy if n not in self.commands and self._load(n) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            cmd = self.commands[cmd_name]
            if cmd_name not in self._prepared:
                assign_envvars(cmd, (cmd_name,))
                self._prepared.add(cmd_name)
            return cmd
        if cmd_name in self.lazy:
            return self._load(cmd_name)
        return None


@dataclass
class AppState:
    console: Console
    log_level: str
    log_file: str | None


def _load_config_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if not value or ctx.resilient_parsing:
        return
    ctx.default_map = load_config(value, ctx.command)
    ctx.meta[CONFIG_PATH_KEY] = value


LOG_LEVEL = click.Choice(logs.LEVELS, case_sensitive=False)


@click.group(
    "serverlink",
    cls=RootGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=_load_config_option,
    help="TOML file of settings, one table per command ([game], [db], ...); "
    "see 'serverlink config example'. Env: SERVERLINK_CONFIG.",
)
@click.option(
    "--log-level",
    type=LOG_LEVEL,
    default="info",
    show_default=True,
    help="Lowest level of the log lines shown.",
)
@click.option(
    "--log-file",
    metavar="PATH",
    default=None,
    help="Also append the log lines to this file.",
)
@click.version_option(__version__, "-V", "--version", prog_name=PROG)
@click.pass_context
def main_group(ctx: click.Context, log_level: str, log_file: str | None) -> None:
    """Login, game (echo) and chat servers of a C++ IOCP server family, an
    account database and a load-testing dummy client.

    Every option can also come from the config file (--config) and from the
    environment (SERVERLINK_<COMMAND>_<OPTION>); flags win over the
    environment, which wins over the file."""
    console = logs.make_console()
    _setup_logging(log_level, log_file, console, "--log-file")
    ctx.obj = AppState(console, log_level, log_file)


assign_envvars(main_group)  # the root's own options; subcommands: in get_command


def _setup_logging(level: str, log_file: str | None, console: Console, flag: str) -> None:
    try:
        logs.setup_logging(level, log_file, console)
    except OSError as exc:
        raise ConfigError(f"{flag} {log_file}: cannot open: {exc.strerror or exc}") from None


def state(ctx: click.Context) -> AppState:
    obj = ctx.find_object(AppState)
    if obj is None:  # a command invoked without the root group (tests)
        obj = AppState(logs.make_console(), "info", None)
    return obj


# --- option groups shared by the server commands -------------------------------------------------

PORT = click.IntRange(0, 65535)


class HostPort(click.ParamType):  # type: ignore[type-arg]  # generic in click >= 8.3
    """``HOST:PORT`` -> (host, port)."""

    name = "HOST:PORT"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        host, sep, port = str(value).rpartition(":")
        if not sep or not host:
            self.fail(f"{value!r} is not HOST:PORT", param, ctx)
        try:
            number = int(port)
        except ValueError:
            self.fail(f"{value!r}: port {port!r} is not a number", param, ctx)
        if not 1 <= number <= 65535:
            self.fail(f"{value!r}: port {number} is not in 1-65535", param, ctx)
        return host.strip("[]"), number


def _apply(options: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def listen_options(default_port: int, default_host: str = "127.0.0.1") -> Callable[[F], F]:
    """--host --port --workers --max-sessions --idle-timeout --send-buffer-limit"""
    defaults = ServerLimits()
    return _apply(
        [
            click.option(
                "--host",
                default=default_host,
                show_default=True,
                help="Address to listen on (0.0.0.0: every IPv4 interface).",
            ),
            click.option(
                "--port",
                type=PORT,
                default=default_port,
                show_default=True,
                help="TCP port to listen on (0: a free port, shown in the log).",
            ),
            click.option(
                "--workers",
                type=click.IntRange(1, 256),
                default=1,
                show_default=True,
                help="Worker processes sharing the port (SO_REUSEPORT), one event loop each.",
            ),
            click.option(
                "--max-sessions",
                type=click.IntRange(min=1),
                default=defaults.max_sessions,
                show_default=True,
                help="Concurrent sessions per worker; a connection over the cap is closed "
                "at once and counted.",
            ),
            click.option(
                "--idle-timeout",
                type=click.FloatRange(min=0),
                default=defaults.idle_timeout,
                show_default=True,
                help="Seconds without a packet before a session is dropped (0: never).",
            ),
            click.option(
                "--send-buffer-limit",
                type=click.IntRange(min=1024),
                default=defaults.send_buffer_limit,
                show_default=True,
                metavar="BYTES",
                help="Bytes queued for a peer that does not read before it is dropped.",
            ),
            click.option(
                "--login-deadline",
                type=click.FloatRange(min=0),
                default=defaults.login_deadline,
                show_default=True,
                metavar="SECONDS",
                help="A connection not logged in within this time is closed and counted "
                "(0: no limit).",
            ),
            click.option(
                "--max-sessions-per-ip",
                type=click.IntRange(min=0),
                default=defaults.max_sessions_per_ip,
                show_default=True,
                help="Concurrent sessions from one client address (0: no limit).",
            ),
        ]
    )


tls_options = _apply(
    [
        click.option(
            "--lan-tls-cert",
            metavar="PEM",
            default=None,
            help="Mutual TLS on the server-to-server link: this server's certificate "
            "(with --lan-tls-key and --lan-tls-ca; serverlink servers only).",
        ),
        click.option("--lan-tls-key", metavar="PEM", default=None, help="Its private key."),
        click.option(
            "--lan-tls-ca",
            metavar="PEM",
            default=None,
            help="The CA that signed the other side's certificate.",
        ),
    ]
)


def tls_from(opts: Mapping[str, Any]) -> TlsConfig | None:
    given = [opts["lan_tls_cert"], opts["lan_tls_key"], opts["lan_tls_ca"]]
    if not any(given):
        return None
    if not all(given):
        raise ConfigError(
            "--lan-tls-cert, --lan-tls-key and --lan-tls-ca go together: give all three"
        )
    tls = TlsConfig(*given)
    try:  # checked now: a bad file is a config error, not a failure at the first link
        tls.client_context()
    except TlsConfigError as exc:
        raise ConfigError(str(exc)) from None
    return tls


codec_options = _apply(
    [
        click.option(
            "--code",
            type=click.IntRange(0, 255),
            default=DEFAULT_CODE,
            show_default=True,
            help="Net frame code byte (the original's PACKET_CODE).",
        ),
        click.option(
            "--key1",
            type=click.IntRange(0, 255),
            default=DEFAULT_KEY1,
            show_default=True,
            help="Net frame key 1 (PACKET_KEY1).",
        ),
        click.option(
            "--key2",
            type=click.IntRange(0, 255),
            default=DEFAULT_KEY2,
            show_default=True,
            help="Net frame key 2 (PACKET_KEY2).",
        ),
        click.option(
            "--max-payload",
            type=click.IntRange(2, 65535),
            default=NetCodec().max_payload,
            show_default=True,
            metavar="BYTES",
            help="Largest payload accepted; a longer frame drops the connection.",
        ),
    ]
)

console_options = _apply(
    [
        click.option(
            "--quiet",
            is_flag=True,
            default=False,
            help="No live screen: a summary log line every --stats-interval seconds "
            "(for services and CI; also when stderr is not a terminal).",
        ),
        click.option(
            "--stats-interval",
            type=click.FloatRange(min=0.5),
            default=5.0,
            show_default=True,
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


def codec_from(opts: Mapping[str, Any]) -> NetCodec:
    return NetCodec(opts["code"], opts["key1"], opts["key2"], opts["max_payload"])


def limits_from(opts: Mapping[str, Any]) -> ServerLimits:
    return ServerLimits(
        max_sessions=opts["max_sessions"],
        idle_timeout=opts["idle_timeout"],
        send_buffer_limit=opts["send_buffer_limit"],
        login_deadline=opts["login_deadline"],
        max_sessions_per_ip=opts["max_sessions_per_ip"],
    )


def apply_console_options(ctx: click.Context, opts: Mapping[str, Any]) -> AppState:
    """A command's own --log-level/--log-file override the root's."""
    app = state(ctx)
    level = opts.get("log_level") or app.log_level
    log_file = opts.get("log_file") or app.log_file
    if (level, log_file) != (app.log_level, app.log_file):
        _setup_logging(level, log_file, app.console, "--log-file")
        app.log_level, app.log_file = level, log_file
    return app


def serve_command(
    ctx: click.Context,
    spec: ServerSpec[Any],
    opts: Mapping[str, Any],
    screen: ScreenSpec | None = None,
) -> int:
    """Run a server command's server (``runner.serve``) with the shared
    console/worker options; a ServeError becomes one line and exit status 1."""
    app = apply_console_options(ctx, opts)
    options = RunOptions(
        workers=opts.get("workers", 1),
        live=not opts.get("quiet", False),
        stats_interval=opts.get("stats_interval", 5.0),
        screen=screen,
        log_level=logs.level_number(app.log_level),
    )
    log.debug("settings of %s: %s", spec.name, dict(opts))
    try:
        return serve(spec, options, app.console)
    except ServeError as exc:
        raise OneLineError(str(exc)) from None


# --- serverlink game ----------------------------------------------------------------------------


def game_config_from(opts: Mapping[str, Any]) -> GameConfig:
    return GameConfig(
        host=opts["host"],
        port=opts["port"],
        codec=codec_from(opts),
        limits=limits_from(opts),
        client_version=opts["client_version"],
    )


db_store_options = _apply(
    [
        click.option(
            "--db-timeout",
            type=click.FloatRange(min=0.1),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            metavar="SECONDS",
            help="Longest wait for one account query (retry included).",
        ),
        click.option(
            "--db-pool-max",
            type=click.IntRange(min=1),
            default=StoreConfig.__dataclass_fields__["pool_max"].default,
            show_default=True,
            help="Connections to a MySQL/MariaDB account database at most.",
        ),
    ]
)

login_timeout_option = click.option(
    "--login-timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="A login not completed within this time is dropped; handed-over keys expire after it.",
)


@main_group.command("game")
@click.option(
    "--standalone",
    is_flag=True,
    default=False,
    help="Run without a login server: every login is accepted (virtual login).",
)
@click.option(
    "--login-server",
    type=HostPort(),
    default=None,
    help="Linked mode: the login server's LAN address to register with.",
)
@click.option(
    "--db",
    metavar="URL",
    default=None,
    help="Linked mode: account database (sqlite:///path.db or mysql://user@host/db).",
)
@click.option(
    "--server-id",
    type=click.IntRange(1, 2**31 - 1024),
    default=1,
    show_default=True,
    help="Linked mode: the status value marking this server's accounts in game "
    "(workers add their index); a restart clears the accounts holding it.",
)
@click.option(
    "--server-name",
    default="game",
    show_default=True,
    help="Linked mode: name registered with the login server.",
)
@click.option(
    "--public-addr",
    type=HostPort(),
    default=None,
    help="Linked mode: address the login server gives clients (default: --host:--port).",
)
@click.option(
    "--link-heartbeat",
    type=click.FloatRange(min=0),
    default=LinkConfig.__dataclass_fields__["heartbeat"].default,
    show_default=True,
    metavar="SECONDS",
    help="Linked mode: seconds between status reports to the login server; the link is "
    "re-established after three without an answer (0: none, for an original login server).",
)
@db_store_options
@tls_options
@login_timeout_option
@click.option(
    "--client-version",
    type=click.IntRange(0, 2**31 - 1),
    default=1,
    show_default=True,
    help="CS_GAME_REQ_LOGIN Version a client must send (Status 3 otherwise).",
)
@listen_options(default_port=12211)
@codec_options
@console_options
@click.pass_context
def game_command(
    ctx: click.Context,
    /,
    standalone: bool,
    login_server: tuple[str, int] | None,
    db: str | None,
    **opts: Any,
) -> int:
    """The game (echo) server: login, echo and heartbeat packets of the
    original game dummy client, with a live console screen."""
    config = game_config_from(opts)
    if not standalone:
        return linked_game(ctx, config, login_server, db, opts)
    return serve_command(ctx, ServerSpec("game", build_game_server, config), opts)


def linked_game(
    ctx: click.Context,
    config: GameConfig,
    login_server: tuple[str, int] | None,
    db: str | None,
    opts: Mapping[str, Any],
) -> int:
    """Linked mode: register with the login server, accept only handed-over keys."""
    if login_server is None:
        raise ConfigError(
            "game: linked mode (the default) needs --login-server HOST:PORT; "
            "use --standalone to run without a login server"
        )
    linked = dataclasses.replace(
        config,
        link=LinkConfig(
            login_server=login_server,
            server_name=opts["server_name"],
            public_addr=opts["public_addr"],
            key_ttl=opts["login_timeout"],
            heartbeat=opts["link_heartbeat"],
            tls=tls_from(opts),
        ),
        store=StoreConfig(
            url=_checked_db_url(db or DEFAULT_DB_URL, "--db"),
            timeout=opts["db_timeout"],
            pool_max=opts["db_pool_max"],
        ),
        server_id=opts["server_id"],
    )
    return serve_command(
        ctx, ServerSpec("game", build_game_server, linked), opts, game_screen(linked)
    )


def _checked_db_url(url: str, option: str) -> str:
    try:
        parse_db_url(url)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    return url


# --- serverlink login -----------------------------------------------------------------------------


def _login_default(name: str) -> Any:
    return LoginConfig.__dataclass_fields__[name].default


@main_group.command("login")
@click.option(
    "--lan-host",
    default=None,
    help="Address of the server-to-server (LAN) port (default: --host).",
)
@click.option(
    "--lan-port",
    type=PORT,
    default=8090,
    show_default=True,
    help="Server-to-server port where game/chat servers register.",
)
@click.option(
    "--db",
    metavar="URL",
    default=DEFAULT_DB_URL,
    show_default=True,
    help="Account database (sqlite:///path.db or mysql://user@host:3306/accountdb).",
)
@click.option(
    "--game-addr",
    type=HostPort(),
    default=None,
    help="Game server address given to clients (default: the one each game server announces).",
)
@click.option(
    "--chat-addr",
    type=HostPort(),
    default=None,
    help="Chat server address given to clients (default: the one a chat server announces).",
)
@login_timeout_option
@db_store_options
@click.option(
    "--lan-allow-any",
    is_flag=True,
    default=False,
    help="Let servers link from any address while the whiteip table is empty "
    "(else loopback only). A linked server receives every login's session key.",
)
@click.option(
    "--handoff-timeout",
    type=click.FloatRange(min=0.05),
    default=_login_default("handoff_timeout"),
    show_default=True,
    metavar="SECONDS",
    help="A linked server that does not answer a hand-off in time is skipped for that login.",
)
@click.option(
    "--release-after",
    type=click.FloatRange(min=0),
    default=_login_default("release_after"),
    show_default=True,
    metavar="SECONDS",
    help="Accounts claimed by a server whose link is gone this long are released.",
)
@click.option(
    "--login-fail-limit",
    type=click.IntRange(min=0),
    default=_login_default("login_fail_limit"),
    show_default=True,
    help="Failed logins from one address within --login-fail-window before it cools off "
    "(0: no limit).",
)
@click.option(
    "--login-fail-window",
    type=click.FloatRange(min=0.1),
    default=_login_default("login_fail_window"),
    show_default=True,
    metavar="SECONDS",
    help="Window of --login-fail-limit.",
)
@click.option(
    "--login-cooldown",
    type=click.FloatRange(min=0),
    default=_login_default("login_cooldown"),
    show_default=True,
    metavar="SECONDS",
    help="How long a cooling address is answered Status 0 without a database read.",
)
@tls_options
@listen_options(default_port=8091)
@codec_options
@console_options
@click.pass_context
def login_command(
    ctx: click.Context,
    /,
    lan_host: str | None,
    lan_port: int,
    db: str,
    game_addr: tuple[str, int] | None,
    chat_addr: tuple[str, int] | None,
    login_timeout: float,
    **opts: Any,
) -> int:
    """The login (auth) server: checks each client's session key in the account
    database, hands it to every linked game/chat server, then answers with
    their addresses."""
    config = LoginConfig(
        host=opts["host"],
        port=opts["port"],
        lan_host=lan_host or opts["host"],
        lan_port=lan_port,
        store=StoreConfig(
            url=_checked_db_url(db, "--db"),
            timeout=opts["db_timeout"],
            pool_max=opts["db_pool_max"],
        ),
        codec=codec_from(opts),
        limits=limits_from(opts),
        login_timeout=login_timeout,
        game_addr=game_addr,
        chat_addr=chat_addr,
        lan_allow_any=opts["lan_allow_any"],
        lan_tls=tls_from(opts),
        handoff_timeout=opts["handoff_timeout"],
        release_after=opts["release_after"],
        login_fail_limit=opts["login_fail_limit"],
        login_fail_window=opts["login_fail_window"],
        login_cooldown=opts["login_cooldown"],
    )
    return serve_command(ctx, ServerSpec("login", build_login_server, config), opts, LOGIN_SCREEN)


# --- serverlink demo ------------------------------------------------------------------------------


@main_group.command("demo")
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="How long the dummy client runs.",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Virtual clients of the dummy.",
)
@click.option(
    "--echo-depth",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Echo requests each client keeps in flight (the original's ECHO_OVERLAP).",
)
@click.option(
    "--disconnect-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.02,
    show_default=True,
    metavar="P",
    help="Each second a client leaves with probability P and logs in again "
    "(login server, then game server).",
)
@click.option(
    "--db",
    metavar="URL",
    default="sqlite:///serverlink-demo.db",
    show_default=True,
    help="Account database of the demo (seeded on first run).",
)
@click.option(
    "--standalone",
    is_flag=True,
    default=False,
    help="Only a standalone game server and the dummy in echo mode (no login server).",
)
@click.option(
    "--quiet",
    is_flag=True,
    default=False,
    help="No live dashboard: one status line a second.",
)
@click.pass_context
def demo_command(
    ctx: click.Context,
    seconds: float,
    clients: int,
    echo_depth: int,
    disconnect_rate: float,
    db: str,
    standalone: bool,
    quiet: bool,
) -> int:
    """The linked system on the embedded database: a login server and a game
    server (worker processes, free ports) and the dummy client in login mode
    against them (login server, hand-off, game login, echo, random re-logins),
    with the live dashboard, then the summary. Exit status 0 when no side
    counted an error."""
    try:
        from serverlink.demo import DemoError, DemoOptions, run_demo
    except ImportError as exc:
        raise OneLineError(f"demo: the dummy client is unavailable: {exc}") from None

    app = state(ctx)
    options = DemoOptions(
        seconds=seconds,
        clients=clients,
        echo_depth=echo_depth,
        disconnect_rate=disconnect_rate,
        db=db if standalone else _checked_db_url(db, "--db"),
        standalone=standalone,
        quiet=quiet,
        log_level=logs.level_number(app.log_level),
    )
    try:
        return run_demo(options, app.console)
    except DemoError as exc:
        raise OneLineError(str(exc)) from None


# --- serverlink config ---------------------------------------------------------------------------


@main_group.group("config")
def config_group() -> None:
    """The config file: an example with every setting, the settings in effect."""


@config_group.command("example")
@click.pass_context
def config_example(ctx: click.Context) -> None:
    """Print a config file with every setting of every command, its default,
    its help and its environment variable."""
    click.echo(example_toml(ctx.find_root().command), nl=False)


_SOURCES = {
    ParameterSource.COMMANDLINE: "flag",
    ParameterSource.ENVIRONMENT: "environment",
    ParameterSource.DEFAULT_MAP: "config file",
    ParameterSource.DEFAULT: "default",
}


@config_group.command(
    "show",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="COMMAND [ARGS]...")
@click.pass_context
def config_show(ctx: click.Context, words: tuple[str, ...]) -> None:
    """Print the settings COMMAND would run with, and where each comes from,
    without running it: e.g. serverlink --config my.toml config show game --port 5."""
    root = ctx.find_root()
    cmd: click.Command = root.command
    parent = root
    rest = list(words)
    names: list[str] = []
    while isinstance(cmd, click.Group):
        if not rest or rest[0].startswith("-"):
            raise ConfigError(f"config show: name a command of '{' '.join([PROG, *names])}'")
        name = rest.pop(0)
        sub = cmd.get_command(parent, name)
        if sub is None:
            raise ConfigError(f"config show: no command '{' '.join([PROG, *names, name])}'")
        names.append(name)
        if isinstance(sub, click.Group):
            parent = click.Context(sub, info_name=name, parent=parent)
        else:
            parent = sub.make_context(name, rest, parent=parent)
        cmd = sub
    leaf = parent
    lines = [f"# {' '.join([PROG, *command_path(leaf)])}: settings in effect"]
    config_path = root.meta.get(CONFIG_PATH_KEY)
    if config_path:
        lines.append(f"# config file: {config_path}")
    for scope, scope_ctx in (("", root), (" ".join(names), leaf)):
        options = settings_of(scope_ctx.command)
        if not options:
            continue
        lines.append(f"[{scope.replace(' ', '.')}]" if scope else "# top level")
        for name, option in options.items():
            assert option.name is not None
            value = scope_ctx.params.get(option.name)
            source = scope_ctx.get_parameter_source(option.name)
            where = _SOURCES.get(source, str(source)) if source is not None else "default"
            if source is ParameterSource.ENVIRONMENT:
                where = f"environment {envvar_in_use(scope_ctx, command_path(scope_ctx), option)}"
            if value is None:
                lines.append(f"# {name} is not set  ({where})")
            else:
                lines.append(f"{name} = {toml_value(value)}  # {where}")
    click.echo("\n".join(lines))


# --- entry point ---------------------------------------------------------------------------------


def _usage_line(exc: click.UsageError) -> str:
    where = exc.ctx.command_path if exc.ctx is not None else PROG
    message = re.sub(r"not a valid (integer|float) range", r"not a valid \1", exc.format_message())
    message = message.rstrip(".")
    hint = f" (see '{where} --help')" if exc.ctx is not None else ""
    return f"{where}: {message}{hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``serverlink`` and ``python -m serverlink``: returns the
    exit status. Every failure is one line on stderr, never a traceback
    (``--log-level debug`` logs the traceback of an unexpected one)."""
    try:
        rv = main_group.main(
            args=list(argv) if argv is not None else None,
            prog_name=PROG,
            auto_envvar_prefix=ENV_PREFIX,
            standalone_mode=False,
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except click.BadParameter as exc:
        line = explain_bad_parameter(exc)
        click.echo(f"{PROG}: {line}" if line else _usage_line(exc), err=True)
        return 2
    except click.UsageError as exc:
        click.echo(_usage_line(exc), err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo(f"{PROG}: aborted", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except Exception as exc:
        logging.getLogger("serverlink").debug("unexpected error", exc_info=True)
        click.echo(
            f"{PROG}: internal error: {type(exc).__name__}: {exc} "
            "(--log-level debug logs the traceback)",
            err=True,
        )
        return 1
    return rv if isinstance(rv, int) else 0
