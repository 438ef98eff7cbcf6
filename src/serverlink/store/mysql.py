"""MariaDB/MySQL driver: an asyncmy connection pool, no ORM.

Connections are autocommit, speak utf8mb4, and use CLIENT_FOUND_ROWS so that an
UPDATE's row count is the number of rows *matched* (as SQLite counts them), which
makes ``set_status_if(acc, 0, 0)`` report a match.

Failure policy (the store's, ``store.sql``, in this engine's terms):

- a connection-level error (refused, reset, server gone/lost, server shutting down,
  too many connections, connection killed) closes the connection it happened on
  and drops the pool's idle connections (after a database restart they are all
  dead), so the store's retry runs on a fresh connection. The pool itself stays,
  so a later call reconnects without restarting the process;
- a connection that a call leaves in an unknown state (cancelled at its deadline,
  any error that is not the server's answer) is closed, never given back;
- access denied and an unknown database are ``StoreError`` messages that say what
  to fix in the URL or to run ``serverlink db init``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncmy
from asyncmy import errors as my_errors
from asyncmy.connection import Connection
from asyncmy.constants import CLIENT
from asyncmy.pool import Pool

from serverlink.store.base import DEFAULT_TIMEOUT, StoreError
from serverlink.store.driver import DEFAULT_POOL, PoolLimits, Row, SqlConnection, SqlDriver
from serverlink.store.schema import MYSQL_SCHEMA, mysql_create_database
from serverlink.store.url import MysqlTarget

log = logging.getLogger("serverlink.store")

# Client (CR_*) and server (ER_*) error numbers that mean "this connection, or the
# server behind it, is gone": worth a retry on a fresh connection.
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
_ER_BAD_FIELD = 1054
_ER_DUP_ENTRY = 1062


def _errno(exc: BaseException) -> int | None:
    if isinstance(exc, my_errors.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


class MySqlConnection:
    """A pooled asyncmy connection as the store uses it (``driver.SqlConnection``)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Connection) -> None:
        self.raw = raw

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return int(await self.raw.cursor().execute(sql, params))

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> Sequence[Row]:
        cursor = self.raw.cursor()
        await cursor.execute(sql, params)
        rows: Sequence[Row] = await cursor.fetchall()
        return rows

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        await self.raw.cursor().executemany(sql, rows)

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        cursor = self.raw.cursor()
        await cursor.execute(sql, params)
        return int(cursor.lastrowid)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        # No rollback on failure: the pool closes a connection given back inside a
        # transaction, so the server rolls it back.
        await self.raw.begin()
        yield
        await self.raw.commit()


class MySqlDriver(SqlDriver):
    """MariaDB/MySQL through an asyncmy pool, created on first use."""

    engine = "mysql"
    placeholder = "%s"  # asyncmy formats parameters in with %, so SQL holds no other %
    unix_now = "UNIX_TIMESTAMP(NOW(6))"

    def __init__(
        self,
        target: MysqlTarget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        pool: PoolLimits = DEFAULT_POOL,
    ) -> None:
        super().__init__(
            display_url=target.display, label=f"MySQL at {target.display}", timeout=timeout
        )
        self.target = target
        self.pool_limits = pool
        self._pool: Pool | None = None
        self._pool_lock = asyncio.Lock()

    def upsert(self, key: str, columns: Sequence[str]) -> str:
        # MySQL finds the conflicting key itself (the primary key here).
        updates = ", ".join(f"{column} = VALUES({column})" for column in columns)
        return f"ON DUPLICATE KEY UPDATE {updates}"

    # --- connections --------------------------------------------------------------
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
        self.check_open()
        async with self._pool_lock:
            if self._pool is None:
                # With minsize > 0 this connects now, so a down server fails here.
                self._pool = await asyncmy.create_pool(
                    minsize=self.pool_limits.min,
                    maxsize=self.pool_limits.max,
                    pool_recycle=int(self.pool_limits.recycle),
                    db=self.target.database,
                    **self._connect_kwargs(),
                )
            return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[SqlConnection]:
        pool = self._pool if self._pool is not None else await self._get_pool()
        try:
            async with pool.acquire() as raw:
                try:
                    yield MySqlConnection(raw)
                except BaseException as exc:
                    # Never give a connection in an unknown state back to the pool.
                    if not isinstance(exc, my_errors.MySQLError) or self.is_connection_lost(exc):
                        raw.close()
                    raise
        except Exception as exc:
            if self.is_connection_lost(exc):
                await self._discard_idle()
            raise

    async def _discard_idle(self) -> None:
        pool = self._pool
        if pool is not None:
            try:
                await pool.clear()
            except Exception as exc:  # the idle sockets may be half dead: still gone
                log.debug("clearing idle connections of %s: %s", self.display_url, exc)

    async def create_schema(self, statements: Sequence[str] | None = None) -> None:
        # A connection of its own, without a database: the database may not exist
        # yet, and the pool's connections select it when they connect.
        conn = await asyncmy.connect(**self._connect_kwargs())
        try:
            async with conn.cursor() as cur:
                # IF NOT EXISTS on an existing object is a "note"; asyncmy would
                # log each one as a warning.
                await cur.execute("SET SESSION sql_notes = 0")
                await cur.execute(mysql_create_database(self.target.database))
                await conn.select_db(self.target.database)
                for statement in MYSQL_SCHEMA if statements is None else statements:
                    await cur.execute(statement)
        finally:
            conn.close()

    async def close(self) -> None:
        self.closed = True
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

    # --- errors -------------------------------------------------------------------
    def is_connection_lost(self, exc: BaseException) -> bool:
        if isinstance(exc, OSError | my_errors.InterfaceError):  # incl. ConnectionError
            return True
        return isinstance(exc, my_errors.OperationalError) and _errno(exc) in _CONNECTION_ERRNOS

    def lacks_schema(self, exc: BaseException) -> bool:
        return _errno(exc) == _ER_NO_SUCH_TABLE

    def lacks_column(self, exc: BaseException) -> bool:
        return _errno(exc) == _ER_BAD_FIELD

    def is_duplicate(self, exc: BaseException) -> bool:
        return _errno(exc) == _ER_DUP_ENTRY

    def explain(self, exc: BaseException) -> tuple[type[StoreError], str] | None:
        t, errno = self.target, _errno(exc)
        if errno in _ER_ACCESS_DENIED:
            return StoreError, (
                f"access denied for user {t.user!r} on {t.host}:{t.port} "
                f"({self.one_line(exc)}): check the user and password in the database URL"
            )
        if errno == _ER_BAD_DB:
            return StoreError, (
                f"database {t.database!r} does not exist on {t.host}:{t.port}: "
                f"run `serverlink db init --db {self.display_url}`"
            )
        return None

    def one_line(self, exc: BaseException) -> str:
        text = str(exc.args[1]) if _errno(exc) is not None and len(exc.args) >= 2 else str(exc)
        return " ".join(text.split()) or type(exc).__name__
