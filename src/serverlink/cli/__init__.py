"""The ``serverlink`` command.

::

    serverlink [--config FILE] [--log-level L] [--log-file PATH]
      game      the game (echo) server, linked to a login server or --standalone
      login     the login (auth) server
      monitor   the monitoring server (dashboard, history, /metrics) | history
      dummy     the load-testing client
      db        the account database
      demo      login + game server + dummy client, live dashboard, summary
      config    example | show COMMAND [ARGS]

One module a command (``game``, ``login``, ``dummy``, ``db``, ``demo``,
``config_cmd``); ``options`` declares the options they share and the servers'
settings, each reading its default from the config dataclass it sets
(``defaults``); ``settings`` checks config files and names the environment
variables, ``example`` writes the example file. Every option is also a setting
of the config file and an environment variable: defaults < file < environment <
flags.

A server command is its option groups, wired to its config and the builder
beside its server::

    @click.command("chat")
    @chat_options                       # options_of(ChatConfig, opt("--rooms", ...), ...)
    @options.listen_options(ChatConfig)
    @options.codec_options
    @options.console_options
    @click.pass_context
    def chat_command(ctx: click.Context, /, **_settings: Any) -> int:
        config = build(ctx, ChatConfig, **options.server_parts(ctx))
        return serve_command(ctx, ServerSpec("chat", build_chat_server, config), CHAT_SCREEN)

and one line below adds it to the root group.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import click

from serverlink import __version__, logs
from serverlink.cli.app import AppState, setup_logging
from serverlink.cli.config_cmd import config_group
from serverlink.cli.db import db_group
from serverlink.cli.demo import demo_command
from serverlink.cli.dummy import dummy_command
from serverlink.cli.errors import PROG
from serverlink.cli.game import game_command
from serverlink.cli.login import login_command
from serverlink.cli.monitor import monitor_group
from serverlink.cli.options import log_options
from serverlink.cli.settings import (
    CONFIG_PATH_KEY,
    ENV_PREFIX,
    assign_envvars,
    explain_bad_parameter,
    load_config,
)

__all__ = ["main", "main_group"]


def _load_config_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if not value or ctx.resilient_parsing:
        return
    ctx.default_map = load_config(value, ctx.command)
    ctx.meta[CONFIG_PATH_KEY] = value


@click.group(
    "serverlink", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
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
@click.version_option(__version__, "-V", "--version", prog_name=PROG)
@click.pass_context
def main_group(ctx: click.Context, log_level: str, log_file: str | None) -> None:
    """Login, game (echo) and chat servers of a C++ IOCP server family, an
    account database and a load-testing dummy client.

    Every option can also come from the config file (--config) and from the
    environment (SERVERLINK_<COMMAND>_<OPTION>); flags win over the
    environment, which wins over the file."""
    console = logs.make_console()
    setup_logging(log_level, log_file, console)
    ctx.obj = AppState(console, log_level, log_file)


for _command in (
    config_group,
    db_group,
    demo_command,
    dummy_command,
    game_command,
    login_command,
    monitor_group,
):
    main_group.add_command(_command)
# Every setting's environment variable: SERVERLINK_<COMMAND>_<SETTING>.
assign_envvars(main_group)


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
