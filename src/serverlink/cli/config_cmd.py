"""``serverlink config example | show``: the config file of every command, and the
settings a command would run with."""

from __future__ import annotations

import os
from typing import Any

import click
from click.core import ParameterSource

from serverlink.cli.defaults import HostPorts
from serverlink.cli.errors import PROG, ConfigError
from serverlink.cli.example import example_toml, toml_value
from serverlink.cli.options import HostPort
from serverlink.cli.settings import (
    CONFIG_PATH_KEY,
    DATABASE_ENV,
    SHARED,
    command_path,
    envvar_in_use,
    settings_of,
)
from serverlink.store.url import mask_url


@click.group("config")
def config_group() -> None:
    """The config file: an example with every setting, the settings in effect."""


@config_group.command("example")
@click.pass_context
def config_example(ctx: click.Context) -> None:
    """Print a config file with every setting of every command, its default,
    its help and its environment variable."""
    click.echo(example_toml(ctx.find_root().command), nl=False)


_SOURCES = {
    ParameterSource.COMMANDLINE: "flag",
    ParameterSource.ENVIRONMENT: "environment",
    ParameterSource.DEFAULT_MAP: "config file",
    ParameterSource.DEFAULT: "default",
}


def _resolve(root: click.Context, words: tuple[str, ...]) -> tuple[list[str], click.Context]:
    """The names and the parsed context of the command ``words`` name."""
    cmd: click.Command = root.command
    parent = root
    rest = list(words)
    names: list[str] = []
    while isinstance(cmd, click.Group):
        if not rest or rest[0].startswith("-"):
            raise ConfigError(f"config show: name a command of '{' '.join([PROG, *names])}'")
        name = rest.pop(0)
        sub = cmd.get_command(parent, name)
        if sub is None:
            raise ConfigError(f"config show: no command '{' '.join([PROG, *names, name])}'")
        names.append(name)
        if isinstance(sub, click.Group):
            parent = click.Context(sub, info_name=name, parent=parent)
        else:
            parent = sub.make_context(name, rest, parent=parent)
        cmd = sub
    return names, parent


def shared_source(value: Any) -> str:
    """Where a shared database URL came from: its environment variable, or the file."""
    for var in DATABASE_ENV:
        if os.environ.get(var) == value:
            return f"environment {var} (the shared database)"
    return "config file"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def as_written(option: click.Option, value: Any) -> Any:
    """A setting's value as a config file writes it (so the printed file loads
    back): ``HOST:PORT`` for an address, a database URL with its password masked."""
    if isinstance(option.type, HostPort) and isinstance(value, tuple):
        return _address(*value)
    if isinstance(option.type, HostPorts) and isinstance(value, tuple):
        return ",".join(_address(*one) for one in value)
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


@config_group.command(
    "show",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="COMMAND [ARGS]...")
@click.pass_context
def config_show(ctx: click.Context, words: tuple[str, ...]) -> None:
    """Print the settings COMMAND would run with, and where each comes from,
    without running it: e.g. serverlink --config my.toml config show game --port 5."""
    root = ctx.find_root()
    names, leaf = _resolve(root, words)
    lines = [f"# {' '.join([PROG, *command_path(leaf)])}: settings in effect"]
    config_path = root.meta.get(CONFIG_PATH_KEY)
    if config_path:
        lines.append(f"# config file: {config_path}")
    for scope, scope_ctx in (("", root), (" ".join(names), leaf)):
        options = settings_of(scope_ctx.command)
        if not options:
            continue
        lines.append(f"[{scope.replace(' ', '.')}]" if scope else "# top level")
        for name, option in options.items():
            assert option.name is not None
            value = scope_ctx.params.get(option.name)
            source = scope_ctx.get_parameter_source(option.name)
            where = _SOURCES.get(source, str(source)) if source is not None else "default"
            if source is ParameterSource.ENVIRONMENT:
                where = f"environment {envvar_in_use(scope_ctx, command_path(scope_ctx), option)}"
            elif source is ParameterSource.DEFAULT_MAP and getattr(option, SHARED, False):
                where = shared_source(value)
            if value is None:
                lines.append(f"# {name} is not set  ({where})")
            else:
                shown = as_written(option, value)
                if isinstance(shown, str) and shown != value and "***" in shown:
                    where += ", password masked"
                lines.append(f"{name} = {toml_value(shown)}  # {where}")
    click.echo("\n".join(lines))
