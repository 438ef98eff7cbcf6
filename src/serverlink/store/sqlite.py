"""SQLite engine: one aiosqlite connection (SQLite has one writer anyway), WAL
journal, ``synchronous=NORMAL``, autocommit statements; no ORM.

Each hot-path call is one hop to aiosqlite's worker thread. Failure policy, per call:

- the whole call runs under one deadline, ``timeout`` seconds; past it the running
  statement is interrupted and the call raises ``StoreUnavailable``. SQLite's own
  busy timeout (waiting for another process's write lock) is set a little shorter,
  so a locked database reports "database is locked" rather than a bare timeout;
- "database is locked" -> ``StoreUnavailable`` (the busy timeout already waited);
- a connection-level error (file cannot be opened, I/O error, connection closed)
  drops the connection, waits a short backoff, reopens and retries once; then
  ``StoreUnavailable``;
- a missing table is a ``StoreError`` that says to run ``serverlink db init``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiosqlite

from serverlink.store.base import (
    DEFAULT_TIMEOUT,
    AccountRecord,
    AdminStore,
    RetryPolicy,
    SeedAccount,
    StoreError,
    StoreUnavailable,
    check_batch,
    record_from_row,
)
from serverlink.store.schema import SCHEMA_PROBE, SQLITE_SCHEMA, V_ACCOUNT_SELECT
from serverlink.store.url import SqliteTarget

log = logging.getLogger("serverlink.store")

T = TypeVar("T")

_BULK_TIMEOUT = 60.0  # seconds for one seed batch or the schema

_SQL_GET_ACCOUNT = (
    "SELECT accountno, userid, usernick, sessionkey, status FROM v_account WHERE accountno = ?"
)
_SQL_SET_STATUS = "UPDATE status SET status = ? WHERE accountno = ?"
_SQL_SET_STATUS_IF = "UPDATE status SET status = ? WHERE accountno = ? AND status = ?"
_SQL_SET_STATUS_IF_RETRY = "UPDATE status SET status = ? WHERE accountno = ? AND status IN (?, ?)"
_SQL_RESET_ALL = "UPDATE status SET status = 0 WHERE status <> 0"
_SQL_RESET_ONLY = "UPDATE status SET status = 0 WHERE status = ? AND status <> 0"
_SQL_TRUSTED_IPS = "SELECT ip FROM whiteip ORDER BY no"

_SQL_UPSERT_ACCOUNT_KEEP_PASS = (
    "INSERT INTO account (accountno, userid, userpass, usernick) VALUES (?, ?, '', ?) "
    "ON CONFLICT (accountno) DO UPDATE SET userid = excluded.userid, "
    "usernick = excluded.usernick"
)
_SQL_UPSERT_ACCOUNT_SET_PASS = (
    "INSERT INTO account (accountno, userid, userpass, usernick) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (accountno) DO UPDATE SET userid = excluded.userid, "
    "userpass = excluded.userpass, usernick = excluded.usernick"
)
_SQL_UPSERT_KEY = (
    "INSERT INTO sessionkey (accountno, sessionkey) VALUES (?, ?) "
    "ON CONFLICT (accountno) DO UPDATE SET sessionkey = excluded.sessionkey"
)
_SQL_UPSERT_STATUS = (
    "INSERT INTO status (accountno, status) VALUES (?, 0) "
    "ON CONFLICT (accountno) DO UPDATE SET status = 0"
)
_SQL_FIND_IP = "SELECT 1 FROM whiteip WHERE ip = ? LIMIT 1"
_SQL_ADD_IP = "INSERT INTO whiteip (ip) VALUES (?)"

# sqlite3.OperationalError texts that a fresh connection may cure.
_REOPEN_MESSAGES = ("unable to open database file", "disk i/o error")


def is_connection_error(exc: BaseException) -> bool:
    """True for failures that reopening the connection may cure."""
    if isinstance(exc, sqlite3.ProgrammingError):
        return "closed" in str(exc).lower()  # "Cannot operate on a closed database."
    if isinstance(exc, ValueError):  # aiosqlite: "Connection closed" / "no active connection"
        text = str(exc).lower()
        return "connection closed" in text or "no active connection" in text
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(m in text for m in _REOPEN_MESSAGES)
    return False


class SqliteStore(AdminStore):
    """Account store on a SQLite file (or ``:memory:``) through aiosqlite."""

    engine = "sqlite"

    def __init__(
        self,
        target: SqliteTarget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.target = target
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self._conn: aiosqlite.Connection | None = None
        self._open_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def display_url(self) -> str:
        return self.target.display

    # --- connection ---------------------------------------------------------------
    async def _get_conn(self) -> aiosqlite.Connection:
        conn = self._conn
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError(f"store for {self.display_url} is closed")
        async with self._open_lock:
            if self._conn is None:
                # Open the sqlite3 connection in a helper thread first and hand it to
                # aiosqlite ready-made: when the open fails (no such directory, no
                # permission) aiosqlite's worker thread is then never started, rather
                # than left to outlive the event loop.
                raw = await asyncio.to_thread(
                    sqlite3.connect,
                    self.target.path,
                    timeout=self.timeout * 0.8,  # busy timeout, see module docstring
                    isolation_level=None,  # autocommit; transactions are explicit
                    check_same_thread=False,  # used only from aiosqlite's thread
                )
                conn = await aiosqlite.Connection(lambda: raw, iter_chunk_size=64)
                try:
                    if self.target.path != ":memory:":
                        await conn.execute("PRAGMA journal_mode=WAL")
                    await conn.execute("PRAGMA synchronous=NORMAL")
                except BaseException:
                    await conn.close()
                    raise
                self._conn = conn
            return self._conn

    def _drop(self, conn: aiosqlite.Connection) -> None:
        """Forget ``conn`` and close it in the background (an open transaction on it is
        rolled back by SQLite when it closes). Safe to call from a cancelled task."""
        if self._conn is conn:
            self._conn = None

        async def closer() -> None:
            try:
                await conn.close()
            except Exception as exc:
                log.debug("closing SQLite connection to %s: %s", self.display_url, exc)

        task = asyncio.get_running_loop().create_task(closer())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _translate(self, exc: BaseException, what: str) -> StoreError:
        text = " ".join(str(exc).split()) or type(exc).__name__
        lowered = text.lower()
        if "no such table" in lowered or "no such view" in lowered:
            return StoreError(
                f"{what}: the account schema is missing in {self.display_url} ({text}): "
                f"run `serverlink db init --db {self.display_url}`"
            )
        if "locked" in lowered or "busy" in lowered:
            return StoreUnavailable(
                f"{what}: SQLite database {self.target.path!r} is locked by another writer ({text})"
            )
        return StoreError(f"{what} on {self.display_url} failed: {text}")

    async def _run(
        self,
        what: str,
        op: Callable[[aiosqlite.Connection, bool], Awaitable[T]],
        timeout: float | None = None,
    ) -> T:
        """Run ``op(connection, maybe_applied)`` under the deadline with the retry policy
        (``maybe_applied``: see ``MySqlStore._run``)."""
        if self._closed:
            raise StoreError(f"{what}: store for {self.display_url} is closed")
        timeout = self.timeout if timeout is None else timeout
        attempt = 0
        maybe_applied = False
        conn: aiosqlite.Connection | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    in_op = False
                    try:
                        conn = self._conn if self._conn is not None else await self._get_conn()
                        in_op = True
                        return await op(conn, maybe_applied)
                    except StoreError:
                        raise
                    except Exception as exc:
                        if not is_connection_error(exc):
                            raise self._translate(exc, what) from exc
                        attempt += 1
                        maybe_applied = maybe_applied or in_op
                        if attempt > self.retry.retries:
                            detail = " ".join(str(exc).split())
                            if "unable to open" in detail:
                                detail += ": does its directory exist, and is it writable?"
                            raise StoreUnavailable(
                                f"{what}: cannot use SQLite database {self.target.path!r} "
                                f"({detail})"
                            ) from exc
                        if conn is not None:
                            self._drop(conn)
                            conn = None
                        await asyncio.sleep(self.retry.backoff(attempt))
        except TimeoutError as exc:
            if conn is not None and self._conn is conn:
                try:
                    await conn.interrupt()  # stop the statement still running in the thread
                except Exception as interrupt_exc:
                    log.debug("interrupting SQLite statement: %s", interrupt_exc)
            raise StoreUnavailable(
                f"{what}: no answer from SQLite database {self.target.path!r} within {timeout:g} s"
            ) from exc

    # --- AccountStore -------------------------------------------------------------
    async def connect(self) -> None:
        async def probe(conn: aiosqlite.Connection, maybe_applied: bool) -> None:
            await conn.execute_fetchall(SCHEMA_PROBE)

        await self._run("connect", probe)

    async def get_account(self, account_no: int) -> AccountRecord | None:
        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> AccountRecord | None:
            rows = list(await conn.execute_fetchall(_SQL_GET_ACCOUNT, (account_no,)))
            if not rows:
                return None
            return record_from_row(rows[0])

        return await self._run("get_account", op)

    async def get_accounts(self, account_nos: Sequence[int]) -> dict[int, AccountRecord]:
        check_batch(account_nos)
        sql = f"{V_ACCOUNT_SELECT} WHERE a.accountno IN ({', '.join('?' * len(account_nos))})"

        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> dict[int, AccountRecord]:
            found: dict[int, AccountRecord] = {}
            for row in await conn.execute_fetchall(sql, tuple(account_nos)):
                record = record_from_row(row)
                found[record.account_no] = record
            return found

        return await self._run("get_accounts", op)

    async def set_status(self, account_no: int, status: int) -> None:
        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> None:
            await conn.execute(_SQL_SET_STATUS, (status, account_no))

        await self._run("set_status", op)

    async def set_status_if(self, account_no: int, expected: int, status: int) -> bool:
        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> bool:
            if not maybe_applied:
                cur = await conn.execute(_SQL_SET_STATUS_IF, (status, account_no, expected))
            else:
                cur = await conn.execute(
                    _SQL_SET_STATUS_IF_RETRY, (status, account_no, expected, status)
                )
            return cur.rowcount > 0

        return await self._run("set_status_if", op)

    async def set_statuses(self, account_nos: Sequence[int], status: int) -> None:
        check_batch(account_nos)
        sql = (
            f"UPDATE status SET status = ? WHERE accountno IN ({', '.join('?' * len(account_nos))})"
        )

        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> None:
            await conn.execute(sql, (status, *account_nos))

        await self._run("set_statuses", op)

    async def clear_statuses_if(self, account_nos: Sequence[int], expected: int) -> int:
        check_batch(account_nos)
        sql = (
            "UPDATE status SET status = 0 WHERE status = ? "
            f"AND accountno IN ({', '.join('?' * len(account_nos))})"
        )

        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> int:
            cur = await conn.execute(sql, (expected, *account_nos))
            return int(cur.rowcount)

        return await self._run("clear_statuses_if", op)

    async def reset_statuses(self, only: int | None = None) -> int:
        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> int:
            if only is None:
                cur = await conn.execute(_SQL_RESET_ALL)
            else:
                cur = await conn.execute(_SQL_RESET_ONLY, (only,))
            return max(cur.rowcount, 0)

        return await self._run("reset_statuses", op)

    async def claim_statuses(self, account_nos: Sequence[int], status: int) -> set[int]:
        check_batch(account_nos)
        marks = ", ".join("?" * len(account_nos))
        upd = f"UPDATE status SET status = ? WHERE accountno IN ({marks}) AND status IN (0, ?)"
        sel = f"SELECT accountno FROM status WHERE accountno IN ({marks}) AND status = ?"

        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> set[int]:
            await conn.execute(upd, (status, *account_nos, status))
            rows = await conn.execute_fetchall(sel, (*account_nos, status))
            return {int(r[0]) for r in rows}

        return await self._run("claim_statuses", op)

    async def get_statuses(self, account_nos: Sequence[int]) -> dict[int, int]:
        check_batch(account_nos)
        marks = ", ".join("?" * len(account_nos))
        sql = f"SELECT accountno, status FROM status WHERE accountno IN ({marks})"

        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> dict[int, int]:
            rows = await conn.execute_fetchall(sql, tuple(account_nos))
            return {int(r[0]): int(r[1]) for r in rows}

        return await self._run("get_statuses", op)

    async def held_status_ids(self) -> list[int]:
        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> list[int]:
            rows = await conn.execute_fetchall(
                "SELECT DISTINCT status FROM status WHERE status <> 0"
            )
            return [int(r[0]) for r in rows]

        return await self._run("held_status_ids", op)

    async def trusted_ips(self) -> list[str]:
        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> list[str]:
            rows = await conn.execute_fetchall(_SQL_TRUSTED_IPS)
            return [str(r[0]).strip() for r in rows]

        return await self._run("trusted_ips", op)

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await conn.close()
            except (TimeoutError, sqlite3.Error, ValueError) as exc:
                log.warning("%s: close: %s", self.display_url, exc)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- AdminStore ---------------------------------------------------------------
    async def _transaction(
        self, conn: aiosqlite.Connection, steps: Sequence[tuple[str, Sequence[Sequence[object]]]]
    ) -> None:
        """Run (sql, rows) steps in one transaction: ``executemany`` per step, or a plain
        ``execute`` when rows is empty. On an error the transaction is rolled back; if
        that is impossible (cancelled, connection broken) the connection is dropped,
        which rolls back too."""
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for sql, rows in steps:
                if rows:
                    await conn.executemany(sql, rows)
                else:
                    await conn.execute(sql)
            await conn.execute("COMMIT")
        except Exception:
            try:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
            except BaseException:
                self._drop(conn)
            raise
        except BaseException:
            self._drop(conn)
            raise

    async def create_schema(self) -> None:
        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> None:
            await self._transaction(conn, [(statement, ()) for statement in SQLITE_SCHEMA])

        await self._run("create schema", op, timeout=max(self.timeout, _BULK_TIMEOUT))

    async def upsert_accounts(self, accounts: Sequence[SeedAccount]) -> None:
        keep = [(a.account_no, a.user_id, a.nickname) for a in accounts if a.userpass is None]
        setp = [
            (a.account_no, a.user_id, a.userpass, a.nickname)
            for a in accounts
            if a.userpass is not None
        ]
        keys = [(a.account_no, a.session_key) for a in accounts]
        statuses = [(a.account_no,) for a in accounts]

        steps: list[tuple[str, Sequence[Sequence[object]]]] = [
            (_SQL_UPSERT_KEY, keys),
            (_SQL_UPSERT_STATUS, statuses),
        ]
        if setp:
            steps.insert(0, (_SQL_UPSERT_ACCOUNT_SET_PASS, setp))
        if keep:
            steps.insert(0, (_SQL_UPSERT_ACCOUNT_KEEP_PASS, keep))

        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> None:
            if accounts:
                await self._transaction(conn, steps)

        await self._run("seed accounts", op, timeout=max(self.timeout, _BULK_TIMEOUT))

    async def add_trusted_ip(self, ip: str) -> bool:
        async def op(conn: aiosqlite.Connection, maybe_applied: bool) -> bool:
            if list(await conn.execute_fetchall(_SQL_FIND_IP, (ip,))):
                return False
            await conn.execute(_SQL_ADD_IP, (ip,))
            return True

        return await self._run("add whiteip", op)
