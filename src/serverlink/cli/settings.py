"""Settings: defaults < config file < environment < flags.

Every option of every command is a setting. Its default is the click option's
default (for a setting of a config dataclass, that field's default: see
``cli.defaults``); a TOML file given with ``serverlink --config FILE`` (or
``SERVERLINK_CONFIG``) overrides it, one table per command::

    log_level = "info"          # options of the root command: top level

    [game]                      # serverlink game ...
    port = 12211
    max_sessions = 20000

    [db]                        # serverlink db ...: applies to every db subcommand
    db = "sqlite:///accounts.db"

    [db.seed]                   # serverlink db seed ...: only there
    accounts = 4000

then the environment (``SERVERLINK_<COMMAND>_<OPTION>``, e.g.
``SERVERLINK_GAME_PORT``, ``SERVERLINK_DB_SEED_ACCOUNTS``; root options:
``SERVERLINK_LOG_LEVEL``), then the command line.

The mechanism is click's own: the file becomes the context's ``default_map``,
the environment is click's ``auto_envvar_prefix``, and click resolves each
option as command line > environment > default_map > default. What this module
adds is checking the file against the commands *before* click sees it, so that a
bad file stops the program with one line naming the setting and the problem, and
the environment variable of each setting; ``cli.example`` writes the example
file (``serverlink config example``) from the commands themselves.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from typing import Any

import click
from click.core import ParameterSource

from serverlink.cli.errors import PROG, ConfigError

ENV_PREFIX = "SERVERLINK"

#: The option whose value is the config file itself (not a setting of the file).
CONFIG_OPTION = "config"
#: ``ctx.meta`` key of the root context holding the config file's path.
CONFIG_PATH_KEY = "serverlink.config_path"


# --- walking the command tree ------------------------------------------------------------


def make_context(cmd: click.Command, path: tuple[str, ...], **extra: Any) -> click.Context:
    return click.Context(cmd, info_name=path[-1] if path else PROG, **extra)


def subcommands(cmd: click.Command, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    """Subcommands of a group by name; {} for a command."""
    if not isinstance(cmd, click.Group):
        return {}
    ctx = make_context(cmd, path)
    found: dict[str, click.Command] = {}
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        if sub is not None:
            found[name] = sub
    return found


def iter_commands(
    cmd: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree, depth first, with its path of names."""
    yield path, cmd
    for name, sub in subcommands(cmd, path).items():
        if not sub.hidden:
            yield from iter_commands(sub, (*path, name))


def setting_name(option: click.Option) -> str:
    """The key of an option in a config file: its first long flag without the
    dashes, ``-`` turned to ``_`` (``--max-sessions`` -> ``max_sessions``), so
    keys read like the flags in ``--help``; the parameter name when it has no
    long flag. The parameter name is accepted as an alias."""
    for flag in option.opts:
        if flag.startswith("--"):
            return flag[2:].replace("-", "_")
    return option.name or ""


def settings_of(cmd: click.Command) -> dict[str, click.Option]:
    """The options of ``cmd`` that a config file may set, by setting name."""
    return {
        setting_name(p): p
        for p in cmd.params
        if isinstance(p, click.Option)
        and p.name
        and p.expose_value
        and not p.is_eager  # --help, --version, --config
        and p.name != CONFIG_OPTION
    }


def lookup_setting(
    options: Mapping[str, click.Option], key: str
) -> tuple[str, click.Option] | None:
    """Find a setting by its name or its parameter name (``-`` or ``_``)."""
    name = key.replace("-", "_")
    if name in options:
        return name, options[name]
    for setting, option in options.items():
        if option.name == name:
            return setting, option
    return None


def env_var(path: tuple[str, ...], option: click.Parameter) -> str:
    """The environment variable of ``option`` of the command at ``path``:
    ``SERVERLINK_<COMMAND PATH>_<SETTING>`` (an option's own envvar wins)."""
    if isinstance(option.envvar, str):
        return option.envvar
    if isinstance(option.envvar, list | tuple) and option.envvar:
        return str(option.envvar[0])
    name = setting_name(option) if isinstance(option, click.Option) else option.name or ""
    return "_".join((ENV_PREFIX, *path, name)).upper().replace("-", "_")


def assign_envvars(cmd: click.Command, path: tuple[str, ...] = ()) -> None:
    """Give every setting of ``cmd`` and its subcommands the environment
    variable named like its setting (``SERVERLINK_DB_SEED_ACCOUNTS`` for
    ``db seed --accounts``), unless it names its own. Click's automatic name
    (from the parameter name) still works as a fallback."""
    for option in settings_of(cmd).values():
        if not option.envvar:
            option.envvar = env_var(path, option)
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            assign_envvars(sub, (*path, name))


def section_label(path: tuple[str, ...]) -> str:
    return f"[{'.'.join(path)}]" if path else "at the top level"


# --- loading and checking a file ---------------------------------------------------------


def load_config(path: str | None, root: click.Command) -> dict[str, Any]:
    """Read and check a TOML config file (None: no file); return the
    ``default_map`` for ``root``, with the shared database URL (the file's
    ``[database] url``, overridden by SERVERLINK_DATABASE_URL) applied.

    Raises ConfigError (one line, exit status 2) on a missing or unreadable file,
    a TOML syntax error (with its line), an unknown section or setting (with a
    suggestion), or a value its option would not accept.
    """
    if path is None:
        return build_default_map({}, root, source="environment")
    return build_default_map(read_toml(path, "config file"), root, source=path)


def read_toml(path: str, what: str, missing_hint: str = "") -> dict[str, Any]:
    """A TOML file's tables; ConfigError (one line) when it cannot be read or
    parsed. ``what``: the kind of file, ``missing_hint``: how to make one."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found{missing_hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def build_default_map(
    data: Mapping[str, Any], root: click.Command, source: str = "config"
) -> dict[str, Any]:
    """Check a parsed config against the command tree and turn it into a click
    ``default_map``. Keys may use ``-`` or ``_``. Scalars of a group's table
    (``[db] url = ...``) also apply to its subcommands that have that option,
    unless the subcommand's own table (``[db.seed]``) sets it. ``[database]
    url`` (or SERVERLINK_DATABASE_URL) is the ``db`` of every command whose
    --db is the shared account database, unless its own table sets it."""
    data = dict(data)
    shared = shared_database(data.pop(DATABASE_TABLE, None), source)
    return _section(root, data, (), {}, source, shared)


def _descendant_settings(cmd: click.Command, path: tuple[str, ...]) -> dict[str, click.Option]:
    found: dict[str, click.Option] = {}
    for _, sub in iter_commands(cmd, path):
        if sub is not cmd:
            for name, option in settings_of(sub).items():
                found.setdefault(name, option)
    return found


def _section(
    cmd: click.Command,
    table: Mapping[str, Any],
    path: tuple[str, ...],
    inherited: Mapping[str, Any],
    source: str,
    shared: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    own = settings_of(cmd)
    subs = subcommands(cmd, path)
    # A group's table may hold settings of its subcommands (not the root's:
    # a top-level `port` would be too much magic).
    below = _descendant_settings(cmd, path) if path and subs else {}
    scalars: dict[str, Any] = {}  # by setting name
    tables: dict[str, Mapping[str, Any]] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            sub_name = next((n for n in (key, key.replace("_", "-")) if n in subs), None)
            if sub_name is not None:
                tables[sub_name] = value
                continue
            if lookup_setting(own, key) or lookup_setting(below, key):
                _fail(source, path, key, "expected a value, got a table")
            label = f"[{'.'.join((*path, key))}]"
            hint = suggest(key, list(subs), lambda n: f"[{'.'.join((*path, n))}]")
            raise ConfigError(f"{source}: unknown section {label}{hint}")
        found = lookup_setting(own, key)
        if found is not None:
            name, option = found
            _check_value(source, path, name, option, cmd, value)
        elif (found := lookup_setting(below, key)) is not None:
            name = found[0]
            for sub_path, sub in iter_commands(cmd, path):
                match = lookup_setting(settings_of(sub), name) if sub is not cmd else None
                if match is not None:
                    _check_value(source, path, name, match[1], sub, value, sub_path)
        else:
            where = section_label(path)
            where = f"in {where}" if path else where
            hint = suggest(key.replace("-", "_"), [*own, *below], lambda n: f"'{n}'")
            raise ConfigError(f"{source}: unknown setting '{key}' {where}{hint}")
        scalars[name] = value

    # default_map is keyed by parameter name
    merged = {**inherited, **scalars}
    result: dict[str, Any] = {
        option.name: merged[name] for name, option in own.items() if name in merged and option.name
    }
    for name, option in own.items():
        if shared and name in shared and name not in merged and getattr(option, SHARED, False):
            result[option.name or name] = shared[name]
    passed_down = merged if path else {}  # the root's settings are its own
    for sub_name, sub in subs.items():
        child = _section(
            sub, tables.get(sub_name, {}), (*path, sub_name), passed_down, source, shared
        )
        if child:
            result[sub_name] = child
    return result


#: The config file's table of the account database every command shares.
DATABASE_TABLE = "database"
#: Its environment variables (the first is the rule's name; SERVERLINK_DB an alias).
DATABASE_ENV = ("SERVERLINK_DATABASE_URL", "SERVERLINK_DB")
#: The attribute marking an option as the shared account database (``--db``).
SHARED = "shared_database"


def shared_database(table: Any, source: str) -> dict[str, Any]:
    """The shared settings (``{"db": url}``) from the file's ``[database]``
    table and the environment (which wins)."""
    url: Any = None
    if table is not None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: '{DATABASE_TABLE}' must be a table: [database] url = ...")
        for key, value in table.items():
            if key != "url":
                hint = suggest(key, ["url"], lambda n: f"'{n}'")
                raise ConfigError(f"{source}: unknown setting '{key}' in [database]{hint}")
            if not isinstance(value, str):
                _fail(source, (DATABASE_TABLE,), "url", "expected a database URL (a string)")
            url = value
    for var in DATABASE_ENV:
        if os.environ.get(var):
            url, source = os.environ[var], f"environment variable {var}"
            break
    if url is None:
        return {}
    from serverlink.store.url import parse_db_url

    try:
        parse_db_url(url)
    except ValueError as exc:
        raise ConfigError(f"{source}: [database] url: {exc}") from None
    return {"db": url}


def known_environment(root: click.Command) -> set[str]:
    """Every SERVERLINK_* variable the program reads."""
    names = {"SERVERLINK_CONFIG", *DATABASE_ENV}
    for path, cmd in iter_commands(root):
        for option in settings_of(cmd).values():
            envvars = [option.envvar] if isinstance(option.envvar, str) else option.envvar or []
            names.update(envvars)
            names.add("_".join((ENV_PREFIX, *path, option.name or "")).upper().replace("-", "_"))
    return names


#: SERVERLINK_TEST_*: the test suite's variables, not settings.
TEST_PREFIX = "SERVERLINK_TEST_"


def check_environment(root: click.Command, environ: Mapping[str, str]) -> None:
    """An unknown SERVERLINK_* variable is a mistake (a typo, a renamed
    setting): ConfigError with a suggestion, like an unknown key of a file."""
    known = known_environment(root)
    for var in sorted(environ):
        if (
            var.startswith(f"{ENV_PREFIX}_")
            and not var.startswith(TEST_PREFIX)
            and var not in known
        ):
            hint = suggest(var, sorted(known), lambda n: n)
            raise ConfigError(
                f"environment variable {var}: unknown setting{hint} "
                "(the rule: SERVERLINK_<COMMAND>_<SETTING>; 'serverlink config example' "
                "lists every one)"
            )


def suggest(word: str, candidates: list[str], show: Any) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {show(close[0])}?)" if close else ""


def _fail(source: str, path: tuple[str, ...], name: str, problem: str) -> None:
    where = f"[{'.'.join(path)}] " if path else ""
    raise ConfigError(f"{source} {where}{name}: {problem}")


def _check_value(
    source: str,
    path: tuple[str, ...],
    name: str,
    option: click.Option,
    cmd: click.Command,
    value: Any,
    cmd_path: tuple[str, ...] | None = None,
) -> None:
    """Convert ``value`` with the option's own type; raise ConfigError if it
    would not accept it."""
    problem = value_problem(option, cmd, value, cmd_path if cmd_path is not None else path)
    if problem is not None:
        _fail(source, path, name, problem)


def value_problem(
    option: click.Option, cmd: click.Command, value: Any, cmd_path: tuple[str, ...]
) -> str | None:
    """What is wrong with ``value`` (from a TOML file) as the value of
    ``option`` of ``cmd`` (converted with the option's own type); None: nothing."""
    many = option.multiple or option.nargs != 1
    if many:
        items = value if isinstance(value, list) else [value]
    elif isinstance(value, list):
        return "expected a single value, got a list"
    else:
        items = [value]
    is_bool = isinstance(option.type, click.types.BoolParamType)
    is_int = isinstance(option.type, click.types.IntParamType)
    ctx = make_context(cmd, cmd_path)
    for item in items:
        if isinstance(item, dict | list):
            return f"expected a single value, got {type(item).__name__}"
        if isinstance(item, bool) and not is_bool:
            return f"{str(item).lower()} is not a valid {option.type.name}"
        if is_int and isinstance(item, float):
            return f"{item!r} is not a valid integer"
        try:
            option.type.convert(item, option, ctx)
        except click.BadParameter as exc:
            return problem_text(exc)
    return None


def problem_text(exc: click.BadParameter) -> str:
    """Click's message for a bad value, as the tail of a line."""
    text = exc.message.rstrip(".")
    return re.sub(r"not a valid (integer|float) range", r"not a valid \1", text)


def explain_bad_parameter(exc: click.BadParameter) -> str | None:
    """One line for a bad value that came from the environment or the config
    file (click's own message names only the flag); None for a command-line value."""
    ctx, param = exc.ctx, exc.param
    if ctx is None or param is None or not param.name:
        return None
    source_kind = ctx.get_parameter_source(param.name)
    problem = problem_text(exc)
    path = command_path(ctx)
    if source_kind is ParameterSource.ENVIRONMENT:
        var = envvar_in_use(ctx, path, param)
        return f"environment variable {var}: {problem}"
    if source_kind is ParameterSource.DEFAULT_MAP:
        config = ctx.find_root().meta.get(CONFIG_PATH_KEY, "config file")
        where = f"[{'.'.join(path)}] " if path else ""
        name = setting_name(param) if isinstance(param, click.Option) else param.name
        return f"{config} {where}{name}: {problem}"
    return None


def envvar_in_use(ctx: click.Context, path: tuple[str, ...], param: click.Parameter) -> str:
    names: list[str] = []
    if isinstance(param.envvar, str):
        names.append(param.envvar)
    elif param.envvar:
        names.extend(param.envvar)
    if ctx.auto_envvar_prefix and param.name and getattr(param, "allow_from_autoenv", True):
        names.append(f"{ctx.auto_envvar_prefix}_{param.name.upper()}")
    for name in names:
        if os.environ.get(name):
            return name
    return names[0] if names else env_var(path, param)


def command_path(ctx: click.Context) -> tuple[str, ...]:
    """Names of the commands from the root down to ``ctx`` (root excluded)."""
    names: list[str] = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return tuple(reversed(names))
