"""Settings of a server's account store: every default once."""

from __future__ import annotations

from dataclasses import dataclass

from serverlink.store.base import DEFAULT_TIMEOUT, AccountStore
from serverlink.store.driver import PoolLimits
from serverlink.store.url import DEFAULT_DB_URL


@dataclass(frozen=True, slots=True)
class StoreConfig:
    #: sqlite:///path.db or mysql://user[:pass]@host[:port]/dbname
    url: str = DEFAULT_DB_URL
    #: Seconds one store call may take, retry included, before StoreUnavailable.
    timeout: float = DEFAULT_TIMEOUT
    #: Connections in the MySQL pool at most (SQLite uses one).
    pool_max: int = 10

    def open(self) -> AccountStore:
        from serverlink.store import open_store

        return open_store(self.url, timeout=self.timeout, pool=PoolLimits(max=self.pool_max))
