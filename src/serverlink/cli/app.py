"""What the commands share at run time: the console and the logging the root
group set up, and running a server command's server."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console

from serverlink import logs
from serverlink.cli.defaults import build
from serverlink.cli.errors import ConfigError, OneLineError
from serverlink.monitor.screen import ScreenSpec
from serverlink.runner import RunOptions, ServeError, ServerSpec, serve
from serverlink.servers.reporter import ObserveConfig

log = logging.getLogger("serverlink.cli")


@dataclass
class AppState:
    console: Console
    log_level: str
    log_file: str | None
    log_format: str = "text"


def setup_logging(level: str, log_file: str | None, console: Console, fmt: str = "text") -> None:
    try:
        logs.setup_logging(level, log_file, console, fmt)
    except OSError as exc:
        raise ConfigError(f"--log-file {log_file}: cannot open: {exc.strerror or exc}") from None


def state(ctx: click.Context) -> AppState:
    obj = ctx.find_object(AppState)
    if obj is None:  # a command invoked without the root group (tests)
        obj = AppState(logs.make_console(), "info", None)
    return obj


def apply_console_options(ctx: click.Context, opts: Mapping[str, Any]) -> AppState:
    """A command's own --log-level/--log-file/--log-format override the root's."""
    app = state(ctx)
    level = opts.get("log_level") or app.log_level
    log_file = opts.get("log_file") or app.log_file
    fmt = opts.get("log_format") or app.log_format
    if (level, log_file, fmt) != (app.log_level, app.log_file, app.log_format):
        setup_logging(level, log_file, app.console, fmt)
        app.log_level, app.log_file, app.log_format = level, log_file, fmt
    return app


def serve_command(
    ctx: click.Context,
    spec: ServerSpec[Any],
    screen: ScreenSpec | None = None,
) -> int:
    """Run a server command's server (``runner.serve``) with the shared
    console/worker options; a ServeError becomes one line and exit status 1."""
    opts = ctx.params
    app = apply_console_options(ctx, opts)
    options = build(
        ctx,
        RunOptions,
        live=not opts.get("quiet", False),
        screen=screen,
        log_level=logs.level_number(app.log_level),
        observe=build(ctx, ObserveConfig),
    )
    log.debug("settings of %s: %s", spec.name, dict(opts))
    try:
        return serve(spec, options, app.console)
    except ServeError as exc:
        raise OneLineError(str(exc)) from None
