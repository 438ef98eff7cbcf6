"""``serverlink web``: the account web API (sign-up, sign-in for a session key)."""

from __future__ import annotations

from typing import Any

import click

from serverlink.cli import configs, options
from serverlink.cli.app import serve_command
from serverlink.cli.defaults import ADDRESS, Seconds, build, opt, options_of
from serverlink.monitor.screen import Row, ScreenSpec, breakdown, ms, process_row, rate, value
from serverlink.runner import ServerSpec
from serverlink.web.accounts import WebConfig, build_web_server

WEB_SCREEN = ScreenSpec(
    "web",
    (
        Row("Sign-ins", (value("signins"), rate("signins"), value("signin_failures", "refused"))),
        Row(
            "Sign-in time",
            (
                ms("signin_time_now_p50_ms", "p50 now"),
                ms("signin_time_p50_ms", "p50"),
                ms("signin_time_p99_ms", "p99"),
            ),
        ),
        Row("Sign-ups", (value("signups"), rate("signups"), value("signouts", "sign-outs"))),
        Row("Requests", (value("requests"), rate("requests"), value("rate_limited", "limited"))),
        Row("Hashing", (value("pending_hashes", "waiting"),)),
        process_row(),
        breakdown("Refused", "refused"),
        breakdown("Errors", "errors"),
    ),
)

KEY_TTL = opt(
    "--key-ttl",
    Seconds(min=1),
    "Seconds a session key works at the login server, and only once (a seeded key "
    "without it: for ever, and again).",
)
"""The web API's keys (``WebConfig.key_ttl``) and, when asked, ``db seed``'s."""

web_options = options_of(
    WebConfig,
    opt(
        "--login-address",
        ADDRESS,
        "The login server's client address, given with each session key.",
        field=("login_host", "login_port"),
    ),
    KEY_TTL,
    opt(
        "--key-store",
        options.KEY_STORE_URL,
        "Also put each issued session key in this key store (redis://host:6379/0), "
        "with its time-to-live.",
        metavar="URL",
    ),
    opt(
        "--max-body",
        click.IntRange(256, 1 << 20),
        "Bytes of a request body at most (413 beyond).",
        metavar="BYTES",
    ),
    opt(
        "--rate-limit-address",
        click.IntRange(min=0),
        "Sign-ins, and sign-ups, from one address per --rate-window (429 beyond; 0: no limit).",
    ),
    opt(
        "--rate-limit-userid",
        click.IntRange(min=0),
        "Sign-ins, and sign-ups, for one userid per --rate-window (429 beyond; 0: no limit).",
    ),
    opt("--rate-window", Seconds(min=1), "Window of the rate limits."),
    opt(
        "--max-pending-hashes",
        click.IntRange(min=1),
        "Password hashes waiting for a thread at most (503 busy beyond).",
    ),
)


@click.command("web")
@options.address_options(WebConfig)
@options.store_options("Account database (sqlite:///path.db or mysql://user@host:3306/accountdb).")
@web_options
@options.console_options
@click.pass_context
def web_command(ctx: click.Context, /, **_settings: Any) -> int:
    """The account web API: sign-up (POST /v1/accounts), sign-in for a session key
    that works once at the login server within --key-ttl (POST /v1/sessions),
    sign-out (DELETE /v1/sessions); OpenAPI at /openapi.json and /docs."""
    config = build(ctx, WebConfig, store=configs.store_from(ctx))
    return serve_command(ctx, ServerSpec("web", build_web_server, config), WEB_SCREEN)
