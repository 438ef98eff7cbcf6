"""The errors of the command line: each is one line on stderr, never a traceback."""

from __future__ import annotations

from typing import IO, Any

import click

PROG = "serverlink"


class OneLineError(click.ClickException):
    """An error shown as ``serverlink: <message>``, one line, no usage text."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PROG}: {self.format_message()}", file=file, err=file is None)


class ConfigError(OneLineError):
    """A bad setting (file, environment, flag): exit status 2."""

    exit_code = 2
