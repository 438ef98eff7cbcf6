"""The failure policy of a store on SQL, written once for every store over a
driver (the account store, ``store.sql``; the monitoring history,
``store.history``): the whole call under one deadline, a connection-level
error retried on a fresh connection as the store's ``Retry`` says, anything
else a one-line ``StoreError`` saying what to fix (see ``store.sql``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from serverlink.retry import STORE_RETRY, Retry
from serverlink.store.base import DEFAULT_TIMEOUT, StoreError, StoreUnavailable
from serverlink.store.driver import SqlConnection, SqlDriver

T = TypeVar("T")


class _Attempts:
    """What the retry loop of one call knows about its attempts."""

    __slots__ = ("conn", "in_statement", "maybe_applied")

    def __init__(self) -> None:
        self.conn: SqlConnection | None = None
        self.in_statement = False
        self.maybe_applied = False

    async def lost(self, exc: BaseException) -> None:
        # An attempt that lost its connection after getting it may have had its
        # statement applied by the server before the answer was lost.
        self.maybe_applied = self.maybe_applied or self.in_statement


class SqlCalls:
    """Store calls through ``driver`` under the failure policy."""

    def __init__(
        self,
        driver: SqlDriver,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: Retry | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.driver = driver
        self.engine = driver.engine
        self.timeout = timeout
        self.retry = retry if retry is not None else STORE_RETRY

    def schema_missing(self, detail: str) -> str:
        """What to say when a table is missing."""
        url = self.display_url
        return (
            f"the account schema is missing in {url} ({detail}): "
            f"run `serverlink db init --db {url}`"
        )

    @property
    def display_url(self) -> str:
        return self.driver.display_url

    # --- the failure policy (module docstring) ------------------------------------
    async def _run(
        self,
        what: str,
        op: Callable[[SqlConnection, bool], Awaitable[T]],
        timeout: float | None = None,
    ) -> T:
        """``op(connection, maybe_applied)`` under the deadline and the retry policy.
        ``maybe_applied`` is True on a retry after an earlier attempt lost its
        connection while its statement may have been running."""
        attempts = _Attempts()

        async def attempt() -> T:
            attempts.in_statement = False
            async with self.driver.connection() as conn:
                attempts.conn = conn
                attempts.in_statement = True
                return await op(conn, attempts.maybe_applied)

        return await self._call(what, attempt, timeout, attempts)

    async def _call(
        self,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        timeout: float | None = None,
        attempts: _Attempts | None = None,
    ) -> T:
        """One store call: ``attempt()`` under the deadline and the retry policy, an
        error that ends it translated (``_failure``)."""
        if self.driver.closed:
            raise StoreError(f"{what}: store for {self.display_url} is closed")
        timeout = self.timeout if timeout is None else timeout
        lost = attempts.lost if attempts is not None else None
        try:
            async with asyncio.timeout(timeout):
                try:
                    return await self.retry.call_with_retry(
                        attempt, self.driver.is_connection_lost, lost
                    )
                except StoreError:
                    raise
                except Exception as exc:  # the deadline is a CancelledError in here
                    raise self._failure(what, exc) from exc
        except TimeoutError as exc:
            if attempts is not None and attempts.conn is not None:
                await self.driver.interrupt(attempts.conn)
            raise StoreUnavailable(
                f"{what}: no answer from {self.driver.label} within {timeout:g} s"
            ) from exc

    def _failure(self, what: str, exc: BaseException) -> StoreError:
        """The error that ends a call, as a one-line ``StoreError`` saying what to fix."""
        driver, url = self.driver, self.display_url
        detail = driver.one_line(exc)
        if driver.is_connection_lost(exc):
            return StoreUnavailable(f"{what}: {driver.label} unavailable ({detail})")
        if driver.lacks_schema(exc):
            return StoreError(f"{what}: {self.schema_missing(detail)}")
        explained = driver.explain(exc)
        if explained is not None:
            error_class, message = explained
            return error_class(f"{what}: {message}")
        if self.driver.closed:  # e.g. the pool closed under a call in flight
            return StoreError(f"{what}: store for {url} is closed")
        return StoreError(f"{what} on {url} failed: {detail}")
