"""``serverlink dummy``: the load-testing client's command line.

Every option's default is the DummyConfig field it sets; bad values stop with a
one-line click error, not a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from serverlink.cli.options import (
    HostPort,
    build,
    codec_options,
    host_port_default,
    quiet_option,
    setting,
)
from serverlink.dummy.config import MODES, DummyConfig
from serverlink.protocol.codec import NetCodec


@click.command("dummy")
@setting(
    DummyConfig,
    "--mode",
    type=click.Choice(MODES),
    help="What each virtual client does. echo: log in to the game server, then echo. "
    "login: log in to the login server, follow its reply to the game server, log in "
    "there with the same key, then echo.",
)
@click.option(
    "--game",
    type=HostPort(),
    default=host_port_default(DummyConfig, "game_host", "game_port"),
    show_default=True,
    help="Game server address (echo mode; in login mode the login server's reply gives it).",
)
@click.option(
    "--login",
    "login_server",
    type=HostPort(),
    default=host_port_default(DummyConfig, "login_host", "login_port"),
    show_default=True,
    help="Login mode: the login server's client address.",
)
@setting(
    DummyConfig,
    "--keys",
    "keys_file",
    type=click.Path(exists=True, dir_okay=False, readable=True),
    metavar="FILE",
    help="Login mode: 'accountno key' lines (serverlink db seed --keys-out). "
    "Worker processes split the accounts; each needs one account per client.",
)
@setting(
    DummyConfig,
    "--relogin",
    is_flag=True,
    help="Login mode: every client repeats the flow back to back (login server, game "
    "login, one echo, disconnect), taking accounts in rotation; needs 2 × clients "
    "accounts. Measures login throughput.",
)
@setting(
    DummyConfig,
    "--account-reuse-delay",
    type=click.FloatRange(min=0),
    metavar="S",
    help="Login mode: an account is used again at the earliest S seconds after its "
    "game connection closed (the game server's logout write must land first). "
    "Caps the flow rate at accounts / S.",
)
@setting(
    DummyConfig,
    "--clients",
    type=click.IntRange(min=1),
    help="Virtual clients (echo mode: AccountNo 1..N; login mode: accounts from --keys).",
)
@setting(
    DummyConfig,
    "--echo-depth",
    type=click.IntRange(0, 4096),
    help="Echo requests kept in flight per client (the original's ECHO_OVERLAP); "
    "0 = log in and send only heartbeats.",
)
@setting(
    DummyConfig, "--seconds", type=click.FloatRange(min=0), help="Run length; 0 = until Ctrl-C."
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write every counter and the latency percentiles to this JSON file.",
)
@setting(
    DummyConfig,
    "--processes",
    type=click.IntRange(min=0),
    help="Worker processes the clients are split across; 0 = auto "
    "(1 below 100 clients, else up to min(CPU count, 4)).",
)
@quiet_option("One plain status line per second instead of the dashboard.")
@setting(
    DummyConfig,
    "--login-delay",
    "login_delay_ms",
    type=click.IntRange(min=0),
    metavar="MS",
    help="Delay between a client's connect and its login request, in ms.",
)
@setting(
    DummyConfig,
    "--disconnect-rate",
    type=click.FloatRange(0.0, 1.0),
    metavar="P",
    help="Each second, each logged-in client leaves with probability P, "
    "then reconnects and logs in again.",
)
@setting(
    DummyConfig,
    "--ramp-up",
    type=click.FloatRange(min=0),
    metavar="S",
    help="Spread the initial connects evenly over S seconds.",
)
@setting(
    DummyConfig,
    "--version",
    "client_version",
    field="version",
    type=click.IntRange(-(2**31), 2**31 - 1),
    help="Client version sent in CS_GAME_REQ_LOGIN.",
)
@codec_options
@setting(
    DummyConfig,
    "--echo-interval",
    "echo_interval_ms",
    type=click.FloatRange(min=0),
    metavar="MS",
    help="Think time after each echo reply before the next request (0: at once, as the "
    "original). For connection-count tests at a chosen load.",
)
@setting(
    DummyConfig,
    "--late-ms",
    type=click.FloatRange(min=0, min_open=True),
    help="An echo reply slower than this counts as an error.",
)
@setting(
    DummyConfig,
    "--reply-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds without a login or echo reply before a client counts a timeout and reconnects.",
)
@click.pass_context
def dummy_command(
    ctx: click.Context,
    /,
    game: tuple[str, int],
    login_server: tuple[str, int],
    report: Path | None,
    quiet: bool,
    **_settings: Any,
) -> None:
    """Load-testing client: N virtual clients log in and keep echo requests in
    flight, checking every reply. Exit status 0 when no error was counted."""
    # Imported here so that `--help` and option errors stay fast.
    from serverlink.dummy.dashboard import run_with_display
    from serverlink.dummy.worker import preflight
    from serverlink.supervise import SuperviseError

    try:
        config = build(
            ctx,
            DummyConfig,
            game_host=game[0],
            game_port=game[1],
            login_host=login_server[0],
            login_port=login_server[1],
            codec=build(ctx, NetCodec),
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
