"""The file of ``serverlink up``: the servers of a deployment on this machine.

::

    [shared]                  # settings of every server whose command has them
    db = "mysql://serverlink@127.0.0.1:3306/serverlink"

    [[server]]
    kind = "login"            # login | game | chat | monitor
    name = "login-1"          # in its log lines and up's (default: kind-N)
    port = 8091               # any setting of `serverlink login` (--port 8091)

An entry's settings are its command's options, named as in a config file (the
flag without dashes, ``-`` or ``_``), checked by the options themselves: each
option is declared once, in ``cli/``. An entry becomes an ordinary command line
(``serverlink login --port 8091 ...``), the same a server on another machine
runs; a URL with a password (the account database's, the key store's) goes
in the child's environment instead, in the setting's own variable
(SERVERLINK_GAME_DB), where ``ps`` does not show it.

Every mistake is a ConfigError naming the file, the entry and what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click

from serverlink.cli.chat import chat_command
from serverlink.cli.errors import ConfigError
from serverlink.cli.game import game_command
from serverlink.cli.login import login_command
from serverlink.cli.monitor import monitor_group
from serverlink.cli.settings import (
    env_var,
    lookup_setting,
    make_context,
    read_toml,
    settings_of,
    suggest,
    value_problem,
)
from serverlink.supervise.command import ChildCommand

#: The commands a file may run, by ``kind``.
COMMANDS: dict[str, click.Command] = {
    "login": login_command,
    "game": game_command,
    "chat": chat_command,
    "monitor": monitor_group,
}
SHARED_TABLE = "shared"
SERVERS_TABLE = "server"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class ServerEntry:
    """One server of the file: its command (``kind``), its name, and its
    settings by setting name (their TOML values, checked)."""

    kind: str
    name: str
    settings: Mapping[str, Any]

    @property
    def command(self) -> click.Command:
        return COMMANDS[self.kind]

    def child(self) -> ChildCommand:
        """The process: ``serverlink <kind> --flag value ...``; a URL with a
        password in its environment instead (the setting's own variable)."""
        options = settings_of(self.command)
        args: list[str] = [self.kind]
        env: dict[str, str] = {}
        for name, value in self.settings.items():
            option = options[name]
            if has_password(value):
                env[env_var((self.kind,), option)] = str(value)
                continue
            args += option_args(option, value)
        return ChildCommand(self.name, args, env)


def has_password(value: Any) -> bool:
    """A URL with a password (``mysql://user:pass@...``, ``redis://:pass@...``)."""
    if not isinstance(value, str) or "://" not in value:
        return False
    try:
        return bool(urlsplit(value).password)
    except ValueError:
        return False


def option_args(option: click.Option, value: Any) -> list[str]:
    """The command-line words that give ``option`` the (checked) ``value``."""
    flag = next(f for f in option.opts if f.startswith("--"))
    if option.is_flag:
        if value:
            return [flag]
        return [option.secondary_opts[0]] if option.secondary_opts else []
    items = value if isinstance(value, list) else [value]
    words: list[str] = []
    for item in items:
        words += [flag, str(item)]
    return words


def load_cluster(path: str) -> list[ServerEntry]:
    """Read and check the file; ConfigError (one line, exit status 2) on any mistake."""
    data = read_toml(path, "cluster file", " (write one: serverlink up --example)")
    return parse_cluster(data, path)


def parse_cluster(data: Mapping[str, Any], source: str) -> list[ServerEntry]:
    for key in data:
        if key not in (SHARED_TABLE, SERVERS_TABLE):
            hint = suggest(key, [SHARED_TABLE, SERVERS_TABLE], lambda n: f"'{n}'")
            raise ConfigError(
                f"{source}: unknown key '{key}'{hint}: the file has [{SHARED_TABLE}] "
                f"and [[{SERVERS_TABLE}]] entries"
            )
    shared = data.get(SHARED_TABLE, {})
    if not isinstance(shared, dict):
        raise ConfigError(f"{source}: '{SHARED_TABLE}' must be a table: [{SHARED_TABLE}]")
    servers = data.get(SERVERS_TABLE)
    if not isinstance(servers, list) or not servers:
        raise ConfigError(
            f"{source}: no servers: add [[{SERVERS_TABLE}]] entries with kind = "
            f"{' | '.join(COMMANDS)} (see serverlink up --example)"
        )
    _check_shared(shared, source)
    entries: list[ServerEntry] = []
    counts: dict[str, int] = {}
    for number, table in enumerate(servers, 1):
        entry = _entry(table, number, shared, counts, source)
        if any(e.name == entry.name for e in entries):
            raise ConfigError(
                f"{source}: entry {number}: name {entry.name!r} is taken by an earlier "
                "server: give each server its own name"
            )
        entries.append(entry)
    _check_ports(entries, source)
    return entries


def _check_shared(shared: Mapping[str, Any], source: str) -> None:
    for key, value in shared.items():
        takers = [
            (kind, found)
            for kind, cmd in COMMANDS.items()
            if (found := lookup_setting(settings_of(cmd), key)) is not None
        ]
        if not takers:
            known = sorted({n for cmd in COMMANDS.values() for n in settings_of(cmd)})
            hint = suggest(key.replace("-", "_"), known, lambda n: f"'{n}'")
            raise ConfigError(
                f"{source}: [{SHARED_TABLE}] {key}: no server kind has this setting{hint}"
            )
        for kind, (name, option) in takers:
            problem = value_problem(option, COMMANDS[kind], value, (kind,))
            if problem is not None:
                raise ConfigError(f"{source}: [{SHARED_TABLE}] {name}: {problem}")


def _entry(
    table: Any, number: int, shared: Mapping[str, Any], counts: dict[str, int], source: str
) -> ServerEntry:
    where = f"{source}: entry {number}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table: [[{SERVERS_TABLE}]]")
    kind = table.get("kind")
    if kind not in COMMANDS:
        given = "missing" if kind is None else f"{kind!r} is not a server kind"
        raise ConfigError(f"{where}: kind {given}: kind = {' | '.join(map(repr, COMMANDS))}")
    counts[kind] = counts.get(kind, 0) + 1
    name = table.get("name", f"{kind}-{counts[kind]}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: name {name!r}: letters, digits, '.', '_' and '-', at most 32 characters"
        )
    where = f"{source}: server {name!r} (entry {number}, {kind})"
    command = COMMANDS[kind]
    options = settings_of(command)
    settings: dict[str, Any] = {}
    for key, value in shared.items():
        found = lookup_setting(options, key)
        if found is not None:
            settings[found[0]] = value
    for key, value in table.items():
        if key in ("kind", "name"):
            continue
        found = lookup_setting(options, key)
        if found is None:
            hint = suggest(key.replace("-", "_"), list(options), lambda n: f"'{n}'")
            raise ConfigError(
                f"{where}: unknown setting '{key}'{hint} (see serverlink {kind} --help)"
            )
        setting, option = found
        problem = value_problem(option, command, value, (kind,))
        if problem is not None:
            raise ConfigError(f"{where}: {setting}: {problem}")
        settings[setting] = value
    return ServerEntry(kind, name, settings)


def _ports(entry: ServerEntry) -> dict[str, int]:
    """The ports an entry listens on (its settings ``*port``, or their defaults), 0 left out."""
    ctx = make_context(entry.command, (entry.kind,))
    ports: dict[str, int] = {}
    for name, option in settings_of(entry.command).items():
        if not name.endswith("port"):
            continue
        value = entry.settings.get(name, option.get_default(ctx))
        if isinstance(value, int | str) and str(value).isdigit() and int(value):
            ports[name] = int(value)
    return ports


def _check_ports(entries: list[ServerEntry], source: str) -> None:
    """Two servers of one machine cannot listen on one port."""
    taken: dict[int, tuple[str, str]] = {}
    for entry in entries:
        for setting, port in _ports(entry).items():
            if port in taken:
                other, other_setting = taken[port]
                raise ConfigError(
                    f"{source}: server {entry.name!r}: {setting} {port} is also server "
                    f"{other!r}'s {other_setting}: give each server its own ports"
                )
            taken[port] = (entry.name, setting)
