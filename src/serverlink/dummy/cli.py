"""``serverlink dummy``: the load-testing client's command line.

Every option has a default (a config file may supply others through click's
``default_map``); bad values stop with a one-line click error, not a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from serverlink.dummy.config import MODES, DummyConfig
from serverlink.protocol.codec import DEFAULT_CODE, DEFAULT_KEY1, DEFAULT_KEY2, NetCodec

if TYPE_CHECKING:
    _HostPortBase = click.ParamType[tuple[str, int]]
else:  # click < 8.2 has no generic ParamType at run time
    _HostPortBase = click.ParamType


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


BYTE = click.IntRange(0, 255)


@click.command("dummy")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="echo",
    show_default=True,
    help="What each virtual client does. echo: log in to the game server, then echo. "
    "login: log in to the login server, follow its reply to the game server, log in "
    "there with the same key, then echo.",
)
@click.option(
    "--game",
    type=HostPort(),
    default="127.0.0.1:12211",
    show_default=True,
    help="Game server address (echo mode; in login mode the login server's reply gives it).",
)
@click.option(
    "--login",
    "login_server",
    type=HostPort(),
    default="127.0.0.1:8091",
    show_default=True,
    help="Login mode: the login server's client address.",
)
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Login mode: 'accountno key' lines (serverlink db seed --keys-out). "
    "Worker processes split the accounts; each needs one account per client.",
)
@click.option(
    "--relogin",
    is_flag=True,
    help="Login mode: every client repeats the flow back to back (login server, game "
    "login, one echo, disconnect), taking accounts in rotation; needs 2 × clients "
    "accounts. Measures login throughput.",
)
@click.option(
    "--account-reuse-delay",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    metavar="S",
    help="Login mode: an account is used again at the earliest S seconds after its "
    "game connection closed (the game server's logout write must land first). "
    "Caps the flow rate at accounts / S.",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Virtual clients (echo mode: AccountNo 1..N; login mode: accounts from --keys).",
)
@click.option(
    "--echo-depth",
    type=click.IntRange(0, 4096),
    default=1,
    show_default=True,
    help="Echo requests kept in flight per client (the original's ECHO_OVERLAP); "
    "0 = log in and send only heartbeats.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Run length; 0 = until Ctrl-C.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write every counter and the latency percentiles to this JSON file.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Worker processes the clients are split across; 0 = auto "
    "(1 below 100 clients, else up to min(CPU count, 4)).",
)
@click.option(
    "--quiet", is_flag=True, help="One plain status line per second instead of the dashboard."
)
@click.option(
    "--login-delay",
    "login_delay_ms",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="MS",
    help="Delay between a client's connect and its login request, in ms.",
)
@click.option(
    "--disconnect-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    metavar="P",
    help="Each second, each logged-in client leaves with probability P, "
    "then reconnects and logs in again.",
)
@click.option(
    "--ramp-up",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="S",
    help="Spread the initial connects evenly over S seconds.",
)
@click.option(
    "--version",
    "client_version",
    type=click.IntRange(-(2**31), 2**31 - 1),
    default=1,
    show_default=True,
    help="Client version sent in CS_GAME_REQ_LOGIN.",
)
@click.option(
    "--code", type=BYTE, default=DEFAULT_CODE, show_default=True, help="Net frame code byte."
)
@click.option("--key1", type=BYTE, default=DEFAULT_KEY1, show_default=True, help="Net frame key 1.")
@click.option("--key2", type=BYTE, default=DEFAULT_KEY2, show_default=True, help="Net frame key 2.")
@click.option(
    "--echo-interval",
    "echo_interval_ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="MS",
    help="Think time after each echo reply before the next request (0: at once, as the "
    "original). For connection-count tests at a chosen load.",
)
@click.option(
    "--late-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=500.0,
    show_default=True,
    help="An echo reply slower than this counts as an error.",
)
@click.option(
    "--reply-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds without a login or echo reply before a client counts a timeout and reconnects.",
)
@click.pass_context
def dummy_command(
    ctx: click.Context,
    mode: str,
    game: tuple[str, int],
    login_server: tuple[str, int],
    keys_file: Path | None,
    relogin: bool,
    account_reuse_delay: float,
    clients: int,
    echo_depth: int,
    seconds: float,
    report: Path | None,
    processes: int,
    quiet: bool,
    login_delay_ms: int,
    disconnect_rate: float,
    ramp_up: float,
    client_version: int,
    code: int,
    key1: int,
    key2: int,
    echo_interval_ms: float,
    late_ms: float,
    reply_timeout: float,
) -> None:
    """Load-testing client: N virtual clients log in and keep echo requests in
    flight, checking every reply. Exit status 0 when no error was counted."""
    # Imported here so that `--help` and option errors stay fast.
    from serverlink.dummy.dashboard import run_with_display
    from serverlink.dummy.worker import preflight
    from serverlink.supervise import SuperviseError

    try:
        config = DummyConfig(
            mode=mode,
            game_host=game[0],
            game_port=game[1],
            clients=clients,
            echo_depth=echo_depth,
            seconds=seconds,
            processes=processes,
            login_delay_ms=login_delay_ms,
            disconnect_rate=disconnect_rate,
            ramp_up=ramp_up,
            version=client_version,
            codec=NetCodec(code=code, key1=key1, key2=key2),
            echo_interval_ms=echo_interval_ms,
            late_ms=late_ms,
            reply_timeout=reply_timeout,
            login_host=login_server[0],
            login_port=login_server[1],
            keys_file=str(keys_file) if keys_file is not None else None,
            relogin=relogin,
            account_reuse_delay=account_reuse_delay,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        preflight(config)
    except ValueError as exc:  # the key file: unreadable, malformed, too few accounts
        raise click.BadParameter(str(exc), ctx, param_hint="'--keys'") from None
    try:
        result = run_with_display(config, quiet=quiet)
    except SuperviseError as exc:  # a worker process that could not start: its line
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # one line, no traceback
        raise click.ClickException(f"dummy: {type(exc).__name__}: {exc}") from None
    if report is not None:
        try:
            report.write_text(json.dumps(result.report(), indent=2) + "\n")
        except OSError as exc:
            raise click.ClickException(f"cannot write the report {report}: {exc}") from None
    # click.exceptions.Exit: sys.exit in standalone mode, the return value of
    # main() for a caller that runs click with standalone_mode=False.
    ctx.exit(result.exit_code)


if __name__ == "__main__":
    dummy_command()
