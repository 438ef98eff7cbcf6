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

from serverlink import logs
from serverlink.cli import options
from serverlink.cli.defaults import IntPairType, Seconds, apply, build, opt, options_of
from serverlink.cli.errors import Interrupted, OneLineError
from serverlink.dummy.config import MODES, DummyConfig
from serverlink.protocol.codec import NetCodec


class Sector(IntPairType):
    """``X,Y``: a sector of the chat grid."""

    name = "X,Y"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple | list) and len(value) == 2:
            return int(value[0]), int(value[1])
        x, comma, y = str(value).partition(",")
        if not comma or not x.strip().isdigit() or not y.strip().isdigit():
            self.fail(f"{value!r} is not X,Y (two numbers, e.g. 25,25)", param, ctx)
        return int(x), int(y)


SECTOR = Sector()

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
                "there with the same key, then echo. chat: log in to the chat server (standalone, "
                "or through the login server with --keys), move between sectors, send messages, "
                "check every delivery.",
            ),
            opt(
                ("--game-server", "--game", "game"),
                options.ADDRESS,
                "Echo mode: the game server's address (login mode: the login server's reply "
                "gives it).",
                field=("game_host", "game_port"),
            ),
            opt(
                ("--login-server", "--login", "login_server"),
                options.ADDRESSES,
                "Login mode: the login server's client address; several separated by "
                "commas (A:8091,B:8091): clients take them in turn.",
                field=("login_host", "login_port", "more_login_servers"),
            ),
            opt(
                ("--keys", "keys_file"),
                click.Path(exists=True, dir_okay=False, readable=True),
                "Login mode: 'accountno key' lines (serverlink db seed --keys-out). "
                "Worker processes split the accounts; each needs one account per client.",
                metavar="FILE",
            ),
            opt(
                "--chat-server",
                options.ADDRESS,
                "Chat mode without --keys: the chat server's address (through the login server, "
                "its reply gives it).",
                field=("chat_host", "chat_port"),
            ),
            opt(
                "--message-interval",
                Seconds(min=0, min_open=True),
                "Chat mode: seconds between a client's messages.",
            ),
            opt(
                "--move-interval",
                Seconds(min=0),
                "Chat mode: a client moves to a random sector about this often (0: never again).",
            ),
            opt(
                "--sector",
                SECTOR,
                "Chat mode: every client in this sector, never moving (crowd tests).",
            ),
            opt(
                "--attack",
                click.FloatRange(0.0, 1.0),
                "Chat mode: this share of the clients send malformed or hostile packets; the "
                "report counts how the server answered (keys beginning attack), not as errors.",
                metavar="PROBABILITY",
            ),
            opt(
                "--chat-flood-limit",
                click.IntRange(min=0),
                "Chat mode: the chat server's --flood-messages (fair clients stay under it, "
                "attackers flood past it).",
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
                Seconds(min=0),
                "Login mode: an account is used again at the earliest S seconds after its "
                "game connection closed (the game server's logout write must land first). "
                "Caps the flow rate at accounts / SECONDS.",
                metavar="SECONDS",
            ),
            opt(
                "--release-wait",
                Seconds(min=0),
                "Login mode: after a game server went away with an account in game, Status GAME "
                "for that account is waited out this long (account_locked, not an error): the "
                "login server releases it after its --release-after.",
                metavar="SECONDS",
            ),
            opt(
                "--processes",
                click.IntRange(min=0),
                "Worker processes the clients are split across; 0 = auto "
                "(1 below 100 clients, else up to min(CPU count, 4)).",
            ),
            opt(
                "--login-delay",
                Seconds(min=0),
                "Seconds between a client's connect and its login request.",
            ),
            opt(
                "--ramp-up",
                Seconds(min=0),
                "Spread the initial connects evenly over this many seconds.",
            ),
            opt(
                "--client-version",
                click.IntRange(-(2**31), 2**31 - 1),
                "Client version sent in CS_GAME_REQ_LOGIN (the game server's --client-version "
                "must match).",
                field="version",
            ),
            opt(
                "--echo-interval",
                Seconds(min=0),
                "Think time after each echo reply before the next request (0: at once, as the "
                "original; 1.0: one echo a second per client). For connection-count tests at a "
                "chosen load.",
            ),
            opt(
                "--late",
                Seconds(min=0, min_open=True),
                "An echo reply slower than this counts as an error (echo_late).",
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
                Seconds(min=0, min_open=True),
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
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default=None,
    metavar="FILE",
    help="Write the JSON report (when, where, what ran; every counter, latency percentiles, "
    "per-second series) to this file; '-': standard output (the dashboard then goes to "
    "standard error).",
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
    report: str | None,
    html_report: Path | None,
    compare: Path | None,
    quiet: bool,
    **_settings: Any,
) -> None:
    """Load-testing client: N virtual clients log in and keep echo requests in
    flight, checking every reply. Exit status 0 when no error was counted, 1
    when one was (or nothing could be measured), 130 when interrupted before
    --seconds were over."""
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
    # With the report on stdout, everything else goes to stderr.
    console = logs.make_console() if report == "-" else None
    try:
        result = run_with_display(config, quiet=quiet, console=console)
    except SuperviseError as exc:  # a worker process that could not start: its line
        raise OneLineError(str(exc)) from None
    except OSError as exc:  # one line, no traceback
        raise OneLineError(f"dummy: {type(exc).__name__}: {exc}") from None
    if report is not None or html_report is not None or earlier is not None:
        write_reports(result.report(), report, html_report, earlier)
    if result.end.stopped_early:
        raise OneLineError(f"dummy: {result.end.stopped_early}")
    if result.end.interrupted:
        raise Interrupted(
            f"dummy: interrupted after {result.duration:.1f} s of {config.seconds:g} s"
            + (" (the report says interrupted: true)" if report is not None else "")
        )
    # click.exceptions.Exit: sys.exit in standalone mode, the return value of
    # main() for a caller that runs click with standalone_mode=False.
    ctx.exit(result.exit_code)


def write_reports(
    document: dict[str, Any],
    report: str | None,
    html_report: Path | None,
    earlier: dict[str, Any] | None,
) -> None:
    """--report (JSON; "-": standard output), --html-report (the page), --compare
    (lines on standard output)."""
    from serverlink.dummy.compare import compare
    from serverlink.web.report import html_report as page

    if report == "-":
        click.echo(json.dumps(document, indent=2))
        report = None
    writers: list[tuple[str | Path | None, Callable[[], str]]] = [
        (report, lambda: json.dumps(document, indent=2) + "\n"),
        (html_report, lambda: page(document)),
    ]
    for path, text in writers:
        if path is not None:
            try:
                Path(path).write_text(text())
            except OSError as exc:
                raise OneLineError(
                    f"dummy: cannot write the report {path}: {exc.strerror or exc}"
                ) from None
    if earlier is not None:
        click.echo("change against the earlier report:")
        for line in compare(earlier, document):
            click.echo("  " + line)
