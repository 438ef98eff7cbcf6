"""``serverlink dummy``: the load-testing client's command line.

Every option's default is the DummyConfig field it sets; bad values stop with a
one-line click error, not a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from serverlink.cli import options
from serverlink.cli.defaults import Seconds, apply, build, opt, options_of
from serverlink.dummy.config import MODES, DummyConfig
from serverlink.protocol.codec import NetCodec

dummy_options = apply(
    [
        options.load_options(DummyConfig),
        options_of(
            DummyConfig,
            opt(
                "--mode",
                click.Choice(MODES),
                "What each virtual client does. echo: log in to the game server, then echo. "
                "login: log in to the login server, follow its reply to the game server, log in "
                "there with the same key, then echo.",
            ),
            opt(
                "--game",
                options.ADDRESS,
                "Game server address (echo mode; in login mode the login server's reply gives it).",
                field=("game_host", "game_port"),
            ),
            opt(
                ("--login", "login_server"),
                options.ADDRESS,
                "Login mode: the login server's client address.",
                field=("login_host", "login_port"),
            ),
            opt(
                ("--keys", "keys_file"),
                click.Path(exists=True, dir_okay=False, readable=True),
                "Login mode: 'accountno key' lines (serverlink db seed --keys-out). "
                "Worker processes split the accounts; each needs one account per client.",
                metavar="FILE",
            ),
            opt(
                "--relogin",
                None,
                "Login mode: every client repeats the flow back to back (login server, game "
                "login, one echo, disconnect), taking accounts in rotation; needs 2 × clients "
                "accounts. Measures login throughput.",
                is_flag=True,
            ),
            opt(
                "--account-reuse-delay",
                click.FloatRange(min=0),
                "Login mode: an account is used again at the earliest S seconds after its "
                "game connection closed (the game server's logout write must land first). "
                "Caps the flow rate at accounts / S.",
                metavar="S",
            ),
            opt(
                "--release-wait",
                click.FloatRange(min=0),
                "Login mode: after a game server went away with an account in game, Status GAME "
                "for that account is waited out this long (account_locked, not an error): the "
                "login server releases it after its --release-after.",
                metavar="S",
            ),
            opt(
                "--processes",
                click.IntRange(min=0),
                "Worker processes the clients are split across; 0 = auto "
                "(1 below 100 clients, else up to min(CPU count, 4)).",
            ),
            opt(
                ("--login-delay", "login_delay_ms"),
                click.IntRange(min=0),
                "Delay between a client's connect and its login request, in ms.",
                metavar="MS",
            ),
            opt(
                "--ramp-up",
                click.FloatRange(min=0),
                "Spread the initial connects evenly over S seconds.",
                metavar="S",
            ),
            opt(
                ("--version", "client_version"),
                click.IntRange(-(2**31), 2**31 - 1),
                "Client version sent in CS_GAME_REQ_LOGIN.",
                field="version",
            ),
            opt(
                ("--echo-interval", "echo_interval_ms"),
                click.FloatRange(min=0),
                "Think time after each echo reply before the next request (0: at once, as the "
                "original). For connection-count tests at a chosen load.",
                metavar="MS",
            ),
            opt(
                "--late-ms",
                click.FloatRange(min=0, min_open=True),
                "An echo reply slower than this counts as an error.",
            ),
            opt(
                "--connect-timeout",
                Seconds(min=0, min_open=True),
                "Longest wait for a connection to be accepted before it counts as an error.",
            ),
            opt(
                "--reconnect-backoff",
                Seconds(min=0),
                "Pause before a client connects again after a failure (refused, closed, "
                "protocol error).",
            ),
            opt(
                "--heartbeat-interval",
                Seconds(min=0, min_open=True),
                "Seconds between the heartbeats of a logged-in client (the original's 30 s).",
            ),
            opt(
                "--reply-timeout",
                click.FloatRange(min=0, min_open=True),
                "Seconds without a login or echo reply before a client counts a timeout and "
                "reconnects.",
            ),
        ),
        options.codec_options,
    ]
)


@click.command("dummy")
@dummy_options
@click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write every counter and the latency percentiles to this JSON file.",
)
@click.option(
    "--html-report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write a self-contained HTML page of the run: throughput and latency over time, "
    "counters, errors, settings.",
)
@click.option(
    "--compare",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Print the change of each headline figure against an earlier --report JSON file.",
)
@options.flag("--quiet", "One plain status line per second instead of the dashboard.")
@click.pass_context
def dummy_command(
    ctx: click.Context,
    /,
    report: Path | None,
    html_report: Path | None,
    compare: Path | None,
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
        config = build(ctx, DummyConfig, codec=build(ctx, NetCodec))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        preflight(config)
    except ValueError as exc:  # the key file: unreadable, malformed, too few accounts
        raise click.BadParameter(str(exc), ctx, param_hint="'--keys'") from None
    from serverlink.dummy.compare import load_report

    try:
        earlier = load_report(compare) if compare is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param_hint="'--compare'") from None
    try:
        result = run_with_display(config, quiet=quiet)
    except SuperviseError as exc:  # a worker process that could not start: its line
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # one line, no traceback
        raise click.ClickException(f"dummy: {type(exc).__name__}: {exc}") from None
    if report is not None or html_report is not None or earlier is not None:
        write_reports(result.report(), report, html_report, earlier)
    # click.exceptions.Exit: sys.exit in standalone mode, the return value of
    # main() for a caller that runs click with standalone_mode=False.
    ctx.exit(result.exit_code)


def write_reports(
    document: dict[str, Any],
    report: Path | None,
    html_report: Path | None,
    earlier: dict[str, Any] | None,
) -> None:
    """--report (JSON), --html-report (the page), --compare (lines on stdout)."""
    from serverlink.dummy.compare import compare
    from serverlink.web.report import html_report as page

    writers: list[tuple[Path | None, Callable[[], str]]] = [
        (report, lambda: json.dumps(document, indent=2) + "\n"),
        (html_report, lambda: page(document)),
    ]
    for path, text in writers:
        if path is not None:
            try:
                path.write_text(text())
            except OSError as exc:
                raise click.ClickException(f"cannot write the report {path}: {exc}") from None
    if earlier is not None:
        click.echo("change against the earlier report:")
        for line in compare(earlier, document):
            click.echo("  " + line)
