"""Account database: one small interface (``AccountStore``) over MariaDB/MySQL
(asyncmy pool) or SQLite (aiosqlite), chosen by URL: one ``SqlAccountStore``
(``store.sql``) over the engine's driver (``store.mysql``, ``store.sqlite``).

    async with open_store("mysql://root@127.0.0.1:3306/accountdb") as store:
        record = await store.get_account(1)

The driver modules are imported on first use, so a SQLite deployment never loads
the MySQL driver and vice versa.
"""

from __future__ import annotations

from collections.abc import Callable

from serverlink.retry import Retry
from serverlink.store.base import (
    DEFAULT_TIMEOUT,
    AccountRecord,
    AccountStore,
    AdminStore,
    SeedAccount,
    StoreError,
    StoreUnavailable,
)
from serverlink.store.driver import DEFAULT_POOL, PoolLimits, SqlDriver
from serverlink.store.passwords import hash_password, verify_password
from serverlink.store.url import (
    DEFAULT_DB_URL,
    DatabaseUrlError,
    SqliteTarget,
    parse_db_url,
)

__all__ = [
    "DEFAULT_DB_URL",
    "DEFAULT_TIMEOUT",
    "AccountRecord",
    "AccountStore",
    "AdminStore",
    "DatabaseUrlError",
    "PoolLimits",
    "SeedAccount",
    "StoreError",
    "StoreUnavailable",
    "hash_password",
    "open_admin_store",
    "open_driver",
    "open_store",
    "parse_db_url",
    "verify_password",
]


def open_admin_store(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    pool: PoolLimits = DEFAULT_POOL,
    retry: Retry | None = None,
) -> AdminStore:
    """The store for ``url`` (see ``store.url``), not yet connected: use it with
    ``async with`` (connects and checks the schema) or ``await store.connect()``,
    the admin operations (schema, seeding, whiteip) included.

    ``timeout`` bounds every call, retry included (then ``StoreUnavailable``).
    ``pool`` applies to MySQL only (SQLite uses one connection). ``retry`` defaults
    to ``serverlink.retry.STORE_RETRY``: one retry after a connection-level error.
    A bad URL raises ``DatabaseUrlError`` (a ``ValueError``) whose message says
    what to fix.
    """
    from serverlink.store.sql import SqlAccountStore

    driver = open_driver(url, timeout=timeout, pool=pool)
    return SqlAccountStore(driver, timeout=timeout, retry=retry)


def open_driver(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    pool: PoolLimits = DEFAULT_POOL,
) -> SqlDriver:
    """The engine's driver for ``url`` (see ``store.url``), not yet connected;
    the stores over it (accounts, the monitoring history) hold the queries."""
    target = parse_db_url(url)
    if isinstance(target, SqliteTarget):
        from serverlink.store.sqlite import SqliteDriver

        return SqliteDriver(target, timeout=timeout)
    from serverlink.store.mysql import MySqlDriver

    return MySqlDriver(target, timeout=timeout, pool=pool)


#: What the servers open: the same store, seen through the interface they use
#: (``AccountStore``: no schema or seeding operations).
open_store: Callable[..., AccountStore] = open_admin_store
