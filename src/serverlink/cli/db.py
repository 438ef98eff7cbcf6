"""``serverlink db ...``: create, seed and reset the account database.

``db_group`` is a click group; the root ``serverlink`` command registers it, and
``serverlink.store.admin`` does the work. Every failure (bad URL, database
unreachable, unwritable keys file) is one line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from serverlink.cli import options
from serverlink.store import admin
from serverlink.store.base import StoreError
from serverlink.store.url import DatabaseUrlError, mask_url

T = TypeVar("T")


class DbCommandError(click.ClickException):
    """One line on stderr ("Error: ..."), exit status 2."""

    exit_code = 2


db_option = options.db_option(
    "Account database: sqlite:///path.db or mysql://user[:pass]@host[:port]/dbname.",
    "db_url",
    envvar="SERVERLINK_DB",
    show_envvar=True,
)
"""The ``--db URL`` option of every ``db`` subcommand (env SERVERLINK_DB)."""


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one admin coroutine; every expected failure becomes a DbCommandError."""
    try:
        return asyncio.run(coro)
    except (DatabaseUrlError, StoreError) as exc:
        raise DbCommandError(str(exc)) from None
    except OSError as exc:  # keys file
        where = f" {exc.filename}" if exc.filename else ""
        raise DbCommandError(f"cannot write{where}: {exc.strerror or exc}") from None
    except ValueError as exc:  # argument checks in admin (one line)
        raise DbCommandError(str(exc)) from None


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
@db_option
def seed_cmd(
    count: int, keys_out: Path | None, password: str | None, first: int, db_url: str
) -> None:
    """Create or refresh test accounts, each with a status row of 0 and a new random
    64-character session key (re-seeding an account replaces its key)."""
    result = _run(admin.seed_db(db_url, count, keys_out=keys_out, password=password, first=first))
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
