"""Holding a write lock on an account's status row from outside the servers, as
another transaction or an operator's session would: what makes a status write
wait, time out, and (on MariaDB) still be applied once the lock goes."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncmy

from conftest import mysql_connect_kwargs
from serverlink.store.url import SqliteTarget, parse_db_url


@asynccontextmanager
async def status_row_locked(url: str, account_no: int) -> AsyncIterator[None]:
    """MariaDB: a transaction holding the row (SELECT ... FOR UPDATE); SQLite: an
    exclusive transaction on the file (SQLite locks whole files)."""
    target = parse_db_url(url)
    if isinstance(target, SqliteTarget):
        conn = sqlite3.connect(target.path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    my = await asyncmy.connect(**mysql_connect_kwargs(target, target.database))
    try:
        async with my.cursor() as cur:
            await cur.execute("BEGIN")
            await cur.execute(
                "SELECT status FROM status WHERE accountno = %s FOR UPDATE", (account_no,)
            )
        yield
    finally:
        await my.rollback()
        my.close()
