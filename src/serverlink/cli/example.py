"""``serverlink config example``: a commented TOML file with every setting of
every command, its default, its help and its environment variable, generated
from the commands themselves so that it never goes stale."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import PurePath
from typing import Any

import click

from serverlink.cli.settings import env_var, iter_commands, make_context, settings_of


def toml_value(value: Any) -> str:
    """A Python value as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str | PurePath):
        return json.dumps(str(value), ensure_ascii=False)
    return json.dumps(str(value), ensure_ascii=False)


def has_value(value: Any) -> bool:
    """False for "no default" (None, click's UNSET sentinel, a callable)."""
    return isinstance(value, bool | int | float | str | list | tuple | PurePath)


def _comment(text: str, width: int = 96) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        wrapped = textwrap.wrap(paragraph, width - 2) or [""]
        lines.extend(f"# {w}".rstrip() for w in wrapped)
    return lines


def _first_paragraph(cmd: click.Command) -> str:
    text = cmd.short_help or (cmd.help or "").split("\n\n", 1)[0]
    return " ".join(text.split())


def _shared_settings(
    group: click.Command, path: tuple[str, ...]
) -> dict[str, tuple[click.Option, click.Command, tuple[str, ...]]]:
    """Settings that two or more subcommands of ``group`` have with the same
    default: the example writes them once, in the group's table."""
    seen: dict[str, list[tuple[click.Option, click.Command, tuple[str, ...], Any]]] = {}
    for sub_path, sub in iter_commands(group, path):
        if sub is group:
            continue
        ctx = make_context(sub, sub_path)
        for name, option in settings_of(sub).items():
            seen.setdefault(name, []).append((option, sub, sub_path, option.get_default(ctx)))
    shared = {}
    for name, found in seen.items():
        defaults = [d for *_, d in found]
        if len(found) >= 2 and all(d == defaults[0] for d in defaults):
            option, sub, sub_path, _ = found[0]
            shared[name] = (option, sub, sub_path)
    return shared


def _example_setting(
    out: list[str], name: str, option: click.Option, cmd: click.Command, path: tuple[str, ...]
) -> None:
    ctx = make_context(cmd, path, show_default=True)
    record = option.get_help_record(ctx)
    if record is not None:
        flags, help_text = record
        out.extend(_comment(f"{flags}: {help_text}" if help_text else flags))
    out.extend(_comment(f"env: {env_var(path, option)}"))
    default = option.get_default(ctx, call=True)
    if has_value(default):
        out.append(f"{name} = {toml_value(default)}")
    else:
        out.append(f"# {name} = ...  (no default)")


def example_toml(root: click.Command) -> str:
    """A commented TOML file with every setting of every command, its default,
    help text and environment variable, generated from the commands."""
    out: list[str] = [
        "# serverlink configuration file: serverlink --config FILE <command> ...",
        "# (or SERVERLINK_CONFIG=FILE). One table per command; keys are the long",
        "# option names with '_' (or '-'). Precedence: defaults < this file <",
        "# environment (SERVERLINK_<COMMAND>_<OPTION>) < command-line flags.",
        "# Settings without a default are commented out.",
    ]
    hoisted: dict[tuple[str, ...], set[str]] = {}
    for path, cmd in iter_commands(root):
        shared = _shared_settings(cmd, path) if path and isinstance(cmd, click.Group) else {}
        hoisted[path] = set(shared)
        above: set[str] = set()
        for n in range(len(path)):
            above |= hoisted.get(path[:n], set())
        options = {k: v for k, v in settings_of(cmd).items() if k not in above}
        if not options and not shared:
            continue
        out.append("")
        if path:
            out.append(f"[{'.'.join(path)}]")
            summary = _first_paragraph(cmd)
            if summary:
                out.extend(_comment(f"serverlink {' '.join(path)}: {summary}"))
        if shared:
            out.extend(
                _comment(
                    f"Settings of the {' '.join(path)} subcommands: a value here applies to "
                    f"every subcommand that has the setting; [{'.'.join(path)}.<subcommand>] "
                    "wins over it."
                )
            )
            for name, (option, sub, sub_path) in shared.items():
                _example_setting(out, name, option, sub, sub_path)
        for name, option in options.items():
            _example_setting(out, name, option, cmd, path)
    return "\n".join(out) + "\n"
