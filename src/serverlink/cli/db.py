"""``serverlink db ...``: create, seed and reset the account database.

``db_group`` is a click group; the root ``serverlink`` command registers it, and
``serverlink.store.admin`` does the work. Every failure is one line on stderr,
``serverlink: db <command>: ...``, never a traceback: a bad URL or argument exits
2 (usage), a database that cannot be reached or an unwritable keys file 1.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from serverlink.cli import options
from serverlink.cli.errors import ConfigError, OneLineError
from serverlink.cli.settings import command_path
from serverlink.cli.web import KEY_TTL
from serverlink.store import admin
from serverlink.store.base import StoreError
from serverlink.store.url import DatabaseUrlError, mask_url

T = TypeVar("T")


db_option = options.db_option(
    "Account database: sqlite:///path.db or mysql://user[:pass]@host[:port]/dbname "
    "(also [database] url in the config file, SERVERLINK_DATABASE_URL).",
    "db_url",
)
"""The ``--db URL`` option of every ``db`` subcommand (the shared database)."""

#: The store's own prefix of a message (the call that failed, e.g. "reset_statuses: ").
_CALL_NAME = re.compile(r"^[a-z_]+: ")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one admin coroutine; every expected failure becomes one line naming
    the command: a bad URL or argument exits 2, a database or file failure 1."""
    where = " ".join(command_path(click.get_current_context()))
    try:
        return asyncio.run(coro)
    except DatabaseUrlError as exc:
        raise ConfigError(f"{where}: --db: {exc}") from None
    except StoreError as exc:
        raise OneLineError(f"{where}: {_CALL_NAME.sub('', str(exc))}") from None
    except OSError as exc:  # keys file
        target = f" {exc.filename}" if exc.filename else ""
        raise OneLineError(f"{where}: cannot write{target}: {exc.strerror or exc}") from None
    except ValueError as exc:  # argument checks in admin (one line)
        raise ConfigError(f"{where}: {exc}") from None


@click.group("db")
def db_group() -> None:
    """Account database: create the schema, seed test accounts, reset statuses."""


@db_group.command("init")
@db_option
def init_cmd(db_url: str) -> None:
    """Create the tables and the v_account view (and the MySQL database) if missing.

    Safe to run again: existing data is kept."""
    _run(admin.init_db(db_url))
    click.echo(
        f"schema ready in {mask_url(db_url)} "
        "(tables account, sessionkey, status, whiteip; view v_account)"
    )


@db_group.command("seed")
@click.option(
    "--accounts",
    "count",
    type=click.IntRange(min=1),
    required=True,
    help="Number of accounts: 1..N, named ID_n / NICK_n.",
)
@click.option(
    "--keys-out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write one 'accountno key' line per account to this file (for the load tools).",
)
@click.option(
    "--password",
    default=None,
    help="Give every seeded account this password (stored as a scrypt hash).",
)
@click.option(
    "--first",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="First account number.",
)
@click.option(*KEY_TTL.decls, type=KEY_TTL.type, default=None, help=KEY_TTL.help)
@db_option
def seed_cmd(
    count: int,
    keys_out: Path | None,
    password: str | None,
    first: int,
    key_ttl: float | None,
    db_url: str,
) -> None:
    """Create or refresh test accounts, each with a status row of 0 and a new random
    64-character session key (re-seeding an account replaces its key)."""
    seeding = admin.seed_db(
        db_url, count, keys_out=keys_out, password=password, first=first, key_ttl=key_ttl
    )
    result = _run(seeding)
    where = f"; keys written to {result.keys_out}" if result.keys_out is not None else ""
    click.echo(
        f"seeded {result.count} accounts ({result.first}..{result.last}) "
        f"in {result.seconds:.2f} s into {mask_url(db_url)}{where}"
    )


@db_group.command("reset-status")
@db_option
def reset_status_cmd(db_url: str) -> None:
    """Set every account's status to 0 (no account in a game)."""
    changed = _run(admin.reset_status_db(db_url))
    click.echo(f"reset {changed} status row{'s' if changed != 1 else ''} to 0")


@db_group.command("add-whiteip")
@click.argument("ip")
@db_option
def add_whiteip_cmd(ip: str, db_url: str) -> None:
    """Trust IP for server-to-server links (adds it to the whiteip table)."""
    text, added = _run(admin.add_whiteip_db(db_url, ip))
    click.echo(f"added {text} to whiteip" if added else f"{text} is already in whiteip")
