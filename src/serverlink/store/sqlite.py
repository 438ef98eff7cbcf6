"""SQLite driver: one aiosqlite connection (SQLite has one writer anyway), WAL
journal, ``synchronous=NORMAL``, autocommit statements; no ORM.

Each statement is one hop to aiosqlite's worker thread. Failure policy (the
store's, ``store.sql``, in this engine's terms):

- past a call's deadline the running statement is interrupted (cancelling the
  waiting task does not stop the worker thread). SQLite's own busy timeout
  (waiting for another process's write lock) is set a little shorter than the
  deadline, so a locked database reports "database is locked" rather than a bare
  timeout;
- "database is locked" -> ``StoreUnavailable`` (the busy timeout already waited),
  not retried;
- a connection-level error (file cannot be opened, I/O error, connection closed)
  drops the connection, so the store's retry reopens it;
- a missing table is the store's "run ``serverlink db init``" message.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiosqlite

from serverlink.store.base import DEFAULT_TIMEOUT, StoreError, StoreUnavailable
from serverlink.store.driver import Row, SqlConnection, SqlDriver
from serverlink.store.schema import SQLITE_ADD_EXPIRES, SQLITE_SCHEMA
from serverlink.store.url import SqliteTarget

log = logging.getLogger("serverlink.store")

# sqlite3.OperationalError texts that a fresh connection may cure.
_REOPEN_MESSAGES = ("unable to open database file", "disk i/o error")


class SqliteConnection:
    """The driver's aiosqlite connection as the store uses it (``driver.SqlConnection``).

    Every task's statements share the one connection, so a transaction has it to
    itself: another task's transaction waits for it, and so does another task's
    statement (else it would run inside, and go with its rollback)."""

    __slots__ = ("_driver", "_tx_lock", "_tx_task", "raw")

    def __init__(self, raw: aiosqlite.Connection, driver: SqliteDriver) -> None:
        self.raw = raw
        self._driver = driver
        self._tx_lock = asyncio.Lock()
        self._tx_task: asyncio.Task[object] | None = None

    async def _turn(self) -> None:
        """Wait while another task's transaction holds the connection. Once this
        returns, the statement is queued before a waiting transaction's BEGIN
        (aiosqlite runs them in order; the woken transaction runs a turn later)."""
        while self._tx_task is not None and self._tx_task is not asyncio.current_task():
            async with self._tx_lock:
                pass

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        if self._tx_task is not None:
            await self._turn()
        cursor = await self.raw.execute(sql, params)
        return max(cursor.rowcount, 0)  # -1 for statements that count no rows

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> Sequence[Row]:
        if self._tx_task is not None:
            await self._turn()
        return list(await self.raw.execute_fetchall(sql, params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if self._tx_task is not None:
            await self._turn()
        await self.raw.executemany(sql, rows)

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        if self._tx_task is not None:
            await self._turn()
        cursor = await self.raw.execute(sql, params)
        return int(cursor.lastrowid or 0)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """On an error the transaction is rolled back; if that is impossible
        (cancelled, connection broken) the connection is dropped, which rolls back
        too."""
        async with self._tx_lock:
            self._tx_task = asyncio.current_task()
            try:
                async with self._begun():
                    yield
            finally:
                self._tx_task = None

    @asynccontextmanager
    async def _begun(self) -> AsyncIterator[None]:
        try:
            await self.raw.execute("BEGIN IMMEDIATE")
            yield
            await self.raw.execute("COMMIT")
        except Exception:
            try:
                if self.raw.in_transaction:
                    await self.raw.execute("ROLLBACK")
            except BaseException:
                self._driver.drop(self)
            raise
        except BaseException:
            self._driver.drop(self)
            raise


class SqliteDriver(SqlDriver):
    """A SQLite file (or ``:memory:``) through one aiosqlite connection."""

    engine = "sqlite"
    placeholder = "?"
    # julianday has milliseconds on every SQLite (unixepoch('subsec') needs 3.42).
    unix_now = "((julianday('now') - 2440587.5) * 86400.0)"
    nocase = " COLLATE NOCASE"

    def __init__(self, target: SqliteTarget, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(
            display_url=target.display, label=f"SQLite database {target.path!r}", timeout=timeout
        )
        self.target = target
        self.busy_timeout = timeout * 0.8  # see the module docstring
        self._conn: SqliteConnection | None = None
        self._open_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def upsert(self, key: str, columns: Sequence[str]) -> str:
        updates = ", ".join(f"{column} = excluded.{column}" for column in columns)
        return f"ON CONFLICT ({key}) DO UPDATE SET {updates}"

    # --- connection ---------------------------------------------------------------
    async def _open(self) -> SqliteConnection:
        self.check_open()
        async with self._open_lock:
            if self._conn is None:
                # Open the sqlite3 connection in a helper thread first and hand it to
                # aiosqlite ready-made: when the open fails (no such directory, no
                # permission) aiosqlite's worker thread is then never started, rather
                # than left to outlive the event loop.
                raw = await asyncio.to_thread(
                    sqlite3.connect,
                    self.target.path,
                    timeout=self.busy_timeout,
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
                self._conn = SqliteConnection(conn, self)
            return self._conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[SqlConnection]:
        conn = self._conn if self._conn is not None else await self._open()
        try:
            yield conn
        except Exception as exc:
            if self.is_connection_lost(exc):
                self.drop(conn)
            raise

    def drop(self, conn: SqliteConnection) -> None:
        """Forget ``conn`` and close it in the background (an open transaction on it is
        rolled back by SQLite when it closes). Safe to call from a cancelled task."""
        if self._conn is conn:
            self._conn = None

        async def closer() -> None:
            try:
                await conn.raw.close()
            except Exception as exc:
                log.debug("closing SQLite connection to %s: %s", self.display_url, exc)

        task = asyncio.get_running_loop().create_task(closer())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def interrupt(self, conn: SqlConnection) -> None:
        if isinstance(conn, SqliteConnection) and conn is self._conn:
            try:
                await conn.raw.interrupt()  # stop the statement still running
            except Exception as exc:
                log.debug("interrupting SQLite statement: %s", exc)

    async def create_schema(self, statements: Sequence[str] | None = None) -> None:
        async with self.connection() as conn, conn.transaction():
            for statement in SQLITE_SCHEMA if statements is None else statements:
                await conn.execute(statement)
            if statements is None:
                columns = await conn.fetch("PRAGMA table_info(sessionkey)")
                if not any(column[1] == "expires" for column in columns):
                    await conn.execute(SQLITE_ADD_EXPIRES)

    async def close(self) -> None:
        self.closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await conn.raw.close()
            except (TimeoutError, sqlite3.Error, ValueError) as exc:
                log.warning("%s: close: %s", self.display_url, exc)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- errors -------------------------------------------------------------------
    def is_connection_lost(self, exc: BaseException) -> bool:
        if isinstance(exc, sqlite3.ProgrammingError):
            return "closed" in str(exc).lower()  # "Cannot operate on a closed database."
        if isinstance(exc, ValueError):  # aiosqlite: "Connection closed" / "no active connection"
            text = str(exc).lower()
            return "connection closed" in text or "no active connection" in text
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc).lower()
            return any(m in text for m in _REOPEN_MESSAGES)
        return False

    def lacks_schema(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.Error) and (
            "no such table" in text or "no such view" in text
        )

    def lacks_column(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no such column" in str(exc).lower()

    def is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "unique" in str(exc).lower()

    def explain(self, exc: BaseException) -> tuple[type[StoreError], str] | None:
        text = self.one_line(exc)
        lowered = text.lower()
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in lowered or "busy" in lowered):
            return StoreUnavailable, (
                f"SQLite database {self.target.path!r} is locked by another writer ({text})"
            )
        return None

    def one_line(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if "unable to open" in text:
            text += ": does its directory exist, and is it writable?"
        return text
