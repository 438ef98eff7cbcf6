"""The errors of the command line: each is one line on stderr, never a traceback.

One prefix and one exit status scheme for every command (``db`` included)::

    serverlink: <command>: <what is wrong and what to do>

- 2  usage or configuration: a bad flag, config file, environment variable,
     a missing or contradictory setting (fix the command line and run again);
- 1  a runtime failure: a port in use, a database or server that cannot be
     reached, a run that counted errors;
- 130  interrupted (Ctrl-C, SIGTERM) before the run was over.
"""

from __future__ import annotations

from typing import IO, Any

import click

PROG = "serverlink"

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def error_line(message: str) -> str:
    """``serverlink: message``: the one line of every error."""
    return f"{PROG}: {message}"


class OneLineError(click.ClickException):
    """An error shown as ``serverlink: <message>``, one line, no usage text;
    exit status 1 (a runtime failure)."""

    exit_code = EXIT_RUNTIME

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(error_line(self.format_message()), file=file, err=file is None)


class ConfigError(OneLineError):
    """A bad setting (file, environment, flag): exit status 2."""

    exit_code = EXIT_USAGE


class Interrupted(OneLineError):
    """A run stopped by a signal before its end: exit status 130."""

    exit_code = EXIT_INTERRUPTED
