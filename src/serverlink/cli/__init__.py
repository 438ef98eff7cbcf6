"""The ``serverlink`` command.

::

    serverlink [--config FILE] [--log-level L] [--log-file FILE] [--log-format text|json]
      game      the game (echo) server, linked to a login server or --standalone
      chat      the chat server (sector grid), linked to a login server or --standalone
      login     the login (auth) server
      web       the account web API (sign-up, sign-in for session keys)
      monitor   the monitoring server (dashboard, history, /metrics) | history
      dummy     the load-testing client
      db        the account database
      demo      monitor + login + game + chat + web, dummy clients, live dashboard, summary
      config    example | show COMMAND [ARGS]
      up        the servers of a deployment file, supervised together

One module a command (``game``, ``chat``, ``login``, ``monitor``, ``web``,
``dummy``, ``db``, ``demo``, ``config_cmd``, ``up``); ``options`` declares the
options they share and the servers' settings, each reading its default from
the config dataclass it sets (``defaults``); ``configs`` builds the configs of
a command's parts; ``settings`` checks config files and names the environment
variables, ``example`` writes the example file. Every option is also a setting
of the config file and an environment variable: defaults < file < environment <
flags.

A server command is its option groups, wired to its config and the builder
beside its server (see ``cli/chat.py``), and one line below adds it to the
root group.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import click

from serverlink import __version__, logs
from serverlink.cli.app import AppState, setup_logging
from serverlink.cli.chat import chat_command
from serverlink.cli.config_cmd import config_group
from serverlink.cli.db import db_group
from serverlink.cli.defaults import assign_metavars
from serverlink.cli.demo import demo_command
from serverlink.cli.dummy import dummy_command
from serverlink.cli.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, PROG, error_line
from serverlink.cli.game import game_command
from serverlink.cli.login import login_command
from serverlink.cli.monitor import monitor_group
from serverlink.cli.options import log_options
from serverlink.cli.settings import (
    CONFIG_PATH_KEY,
    ENV_PREFIX,
    assign_envvars,
    check_environment,
    command_path,
    explain_bad_parameter,
    load_config,
)
from serverlink.cli.up import up_command
from serverlink.cli.web import web_command

__all__ = ["main", "main_group"]


def _load_config_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The config file (if any) and the shared database setting (``[database]``
    of the file, SERVERLINK_DATABASE_URL) as the defaults of every command."""
    if ctx.resilient_parsing:
        return
    default_map = load_config(value, ctx.command)
    if default_map:
        ctx.default_map = default_map
    if value:
        ctx.meta[CONFIG_PATH_KEY] = value


@click.group(
    "serverlink",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    no_args_is_help=True,
    epilog="Shell completion (bash; zsh and fish alike): "
    'eval "$(_SERVERLINK_COMPLETE=bash_source serverlink)" in ~/.bashrc.',
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
@log_options(root=True)
@click.version_option(
    __version__, "-V", "--version", prog_name=PROG, message="%(prog)s %(version)s"
)
@click.pass_context
def main_group(ctx: click.Context, log_level: str, log_file: str | None, log_format: str) -> None:
    """Login, game (echo) and chat servers of a C++ IOCP server family, an
    account database and a load-testing dummy client.

    Every option can also come from the config file (--config) and from the
    environment (SERVERLINK_<COMMAND>_<OPTION>); flags win over the
    environment, which wins over the file."""
    console = logs.make_console()
    setup_logging(log_level, log_file, console, log_format)
    ctx.obj = AppState(console, log_level, log_file, log_format)


for _command in (
    chat_command,
    config_group,
    db_group,
    demo_command,
    dummy_command,
    game_command,
    login_command,
    monitor_group,
    web_command,
    up_command,
):
    main_group.add_command(_command)
# Every setting's environment variable: SERVERLINK_<COMMAND>_<SETTING>.
assign_envvars(main_group)
# One metavar style: SECONDS, BYTES, HOST:PORT, URL, N, ...
assign_metavars(main_group)


def _usage_line(exc: click.UsageError) -> str:
    where = command_words(exc.ctx)
    message = re.sub(r"not a valid (integer|float) range", r"not a valid \1", exc.format_message())
    message = message.rstrip(".")
    hint = f" (see '{' '.join([PROG, *where])} --help')" if exc.ctx is not None else ""
    command = f"{' '.join(where)}: " if where else ""
    return error_line(f"{command}{message}{hint}")


def command_words(ctx: click.Context | None) -> list[str]:
    """The command's names below the root (``["db", "seed"]``)."""
    return list(command_path(ctx)) if ctx is not None else []


def _help_on_stderr(exc: click.exceptions.NoArgsIsHelpError) -> int:
    """A group run without a command (bare ``serverlink``): its help, on stderr,
    and exit status 2 (a usage error, as git and systemctl do)."""
    if exc.ctx is not None:
        click.echo(exc.ctx.get_help(), err=True)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``serverlink`` and ``python -m serverlink``: returns the
    exit status (errors.py: 2 usage/config, 1 runtime, 130 interrupted). Every
    failure is one line ``serverlink: ...`` on stderr, never a traceback
    (``--log-level debug`` logs the traceback of an unexpected one)."""
    try:
        check_environment(main_group, os.environ)
        rv = main_group.main(
            args=list(argv) if argv is not None else None,
            prog_name=PROG,
            auto_envvar_prefix=ENV_PREFIX,
            standalone_mode=False,
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        return _help_on_stderr(exc)
    except click.BadParameter as exc:
        line = explain_bad_parameter(exc)
        click.echo(error_line(line) if line else _usage_line(exc), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        click.echo(_usage_line(exc), err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        click.echo(error_line(exc.format_message()), err=True)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(error_line("interrupted"), err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        logging.getLogger("serverlink").debug("unexpected error", exc_info=True)
        click.echo(
            error_line(
                f"internal error: {type(exc).__name__}: {exc} "
                "(--log-level debug logs the traceback)"
            ),
            err=True,
        )
        return EXIT_RUNTIME
    return rv if isinstance(rv, int) else 0
