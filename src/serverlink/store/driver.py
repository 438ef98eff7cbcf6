"""What an engine gives the account store: a small driver.

As with redis-py's connection classes, a driver knows how to talk to one kind
of database and nothing about accounts: its SQL dialect (placeholders, upsert
syntax, IN lists), how to get a connection and run a statement on it, which of
its errors mean that the connection is gone, what to say about the others in its
own terms, and what to do when a call runs past its deadline. The store
(``store.sql.SqlAccountStore``) holds every query and the failure policy: the
deadline, the retry and the messages common to both engines.

A driver's ``connection()`` discards a connection that failed at the connection
level (and whatever else such a failure leaves dead, e.g. a pool's idle
connections after a database restart), so that the store's retry gets a fresh
one.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from serverlink.store.base import StoreError

Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """The connection pool of a networked engine (MySQL; SQLite uses one connection)."""

    min: int = 1
    max: int = 10
    #: Seconds a pooled connection serves before it is replaced.
    recycle: float = 600.0

    def __post_init__(self) -> None:
        if not 0 <= self.min <= self.max or self.max < 1:
            raise ValueError("need 0 <= pool min <= pool max and pool max >= 1")


DEFAULT_POOL = PoolLimits()


class SqlConnection(Protocol):
    """One connection, as the store uses it. Statements are in the driver's dialect
    (``SqlDriver.dialect``)."""

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it matched or wrote."""

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> Sequence[Row]:
        """Run one query; all its rows."""

    async def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one INSERT; the auto-numbered key of the row it wrote."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement for each of ``rows`` (as few round trips as the engine can)."""

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """``async with``: the statements inside commit together or not at all."""


class SqlDriver(abc.ABC):
    """One engine: dialect, connections, error meanings. Not shared between stores."""

    #: "mysql" or "sqlite"
    engine: ClassVar[str]
    #: what stands for a bound parameter in this engine's SQL
    placeholder: ClassVar[str]
    #: the database's clock, in seconds since the epoch (with a fraction)
    unix_now: ClassVar[str]
    #: after ``text = ?``: compare ignoring case (as MariaDB's default collation does)
    nocase: ClassVar[str] = ""

    def __init__(self, *, display_url: str, label: str, timeout: float) -> None:
        #: The database URL with any password masked, for logs.
        self.display_url = display_url
        #: How a message names the database, e.g. "MySQL at mysql://u@h:3306/db".
        self.label = label
        #: Seconds a store call may take (connect timeouts, waits on locks, close).
        self.timeout = timeout
        #: Set by ``close()``: no connection is made after it.
        self.closed = False

    # --- dialect ------------------------------------------------------------------
    def dialect(self, sql: str) -> str:
        """``sql`` written with ``?`` placeholders, in this engine's dialect."""
        return sql.replace("?", self.placeholder)

    def in_list(self, count: int) -> str:
        """The placeholders of an IN list of ``count`` values."""
        return ", ".join([self.placeholder] * count)

    @abc.abstractmethod
    def upsert(self, key: str, columns: Sequence[str]) -> str:
        """The clause after ``INSERT ... VALUES (...)`` that, when a row with the same
        ``key`` exists, updates its ``columns`` to the inserted values instead."""

    # --- connections --------------------------------------------------------------
    @abc.abstractmethod
    def connection(self) -> AbstractAsyncContextManager[SqlConnection]:
        """``async with``: a connection for one attempt of a call (connecting first if
        needed); discarded on the way out if it failed at the connection level."""

    async def interrupt(self, conn: SqlConnection) -> None:  # noqa: B027 - optional
        """The call using ``conn`` ran past its deadline: stop what it may still be
        running (where cancelling the waiting task does not)."""

    @abc.abstractmethod
    async def create_schema(self, statements: Sequence[str] | None = None) -> None:
        """Create what ``schema.py`` describes for this engine (or run the
        engine's ``statements`` of another store's schema), if missing."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every connection and set ``closed``: later ``connection()`` calls
        raise ``StoreError``."""

    def check_open(self) -> None:
        """Before making a connection: ``StoreError`` once ``close()`` has been called
        (a call still in flight must not reconnect a closed store)."""
        if self.closed:
            raise StoreError(f"store for {self.display_url} is closed")

    # --- errors -------------------------------------------------------------------
    @abc.abstractmethod
    def is_connection_lost(self, exc: BaseException) -> bool:
        """True for an error that a fresh connection may cure (worth a retry)."""

    @abc.abstractmethod
    def lacks_schema(self, exc: BaseException) -> bool:
        """True for an error that says a table or the view is missing."""

    @abc.abstractmethod
    def lacks_column(self, exc: BaseException) -> bool:
        """True for an error that says a column is missing (a schema to upgrade)."""

    @abc.abstractmethod
    def is_duplicate(self, exc: BaseException) -> bool:
        """True for an error that says a unique key already holds the value."""

    @abc.abstractmethod
    def explain(self, exc: BaseException) -> tuple[type[StoreError], str] | None:
        """For an error this engine knows (access denied, a locked file, ...): its
        class (``StoreUnavailable`` when it passes by itself) and a message that
        says what to fix, in this engine's terms. None for any other error."""

    @abc.abstractmethod
    def one_line(self, exc: BaseException) -> str:
        """The error's own text on one line, for a message."""
