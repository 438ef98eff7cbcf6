"""Session keys handed over by a login server, waiting for their client.

A ``KeyStore`` holds at most one key per account, each with a time-to-live.
``take`` is atomic: it succeeds only for the right key, removes it, and so a
key works once. ``MemoryKeyStore`` keeps them in this process (the login
server hands each key over the LAN link); ``RedisKeyStore`` keeps them in
Redis, shared by every login server, server and worker that uses it (the
login server puts the key there, no LAN round trip).
"""

from __future__ import annotations

import abc
import hmac
import time
from collections.abc import Awaitable, Callable

from serverlink.store.url import mask_url


class KeyStore(abc.ABC):
    @abc.abstractmethod
    async def put(self, account_no: int, key: bytes, ttl: float) -> None:
        """Keep ``key`` for ``account_no`` for ``ttl`` seconds (replacing an older one)."""

    @abc.abstractmethod
    async def take(self, account_no: int, key: bytes) -> bool:
        """True, and the key is gone, if ``key`` is the account's live key."""

    def put_now(self, account_no: int, key: bytes, ttl: float) -> bool:
        """``put`` without waiting, when the store can (one in this process);
        False: it cannot, await ``put``."""
        return False

    def take_now(self, account_no: int, key: bytes) -> bool | None:
        """``take`` without waiting, when the store can (one in this process);
        None: it cannot, await ``take``."""
        return None

    def snapshot(self) -> dict[str, int]:
        """Counters for the screens."""
        return {}

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release here
        """Release connections (a networked store)."""


class MemoryKeyStore(KeyStore):
    """Keys in a dict of this process. Expired keys are swept while keys are put
    (at most once a second), so no task is needed and memory stays bounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._keys: dict[int, tuple[bytes, float]] = {}
        self._clock = clock
        self._next_sweep = 0.0
        self.expired = 0

    async def put(self, account_no: int, key: bytes, ttl: float) -> None:
        self.put_now(account_no, key, ttl)

    async def take(self, account_no: int, key: bytes) -> bool:
        return self.take_now(account_no, key)

    def put_now(self, account_no: int, key: bytes, ttl: float) -> bool:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        self._keys[account_no] = (bytes(key), now + ttl)
        return True

    def take_now(self, account_no: int, key: bytes) -> bool:
        entry = self._keys.get(account_no)
        # Constant time: how much of a guessed key matched must not show in timing.
        if entry is None or not hmac.compare_digest(entry[0], key):
            return False
        del self._keys[account_no]
        if entry[1] < self._clock():
            self.expired += 1
            return False
        return True

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 1.0
        stale = [acc for acc, (_, deadline) in self._keys.items() if deadline < now]
        for acc in stale:
            del self._keys[acc]
        self.expired += len(stale)

    def __len__(self) -> int:
        return len(self._keys)

    def snapshot(self) -> dict[str, int]:
        return {"keys_waiting": len(self._keys), "keys_expired": self.expired}


class KeyStoreUnavailable(Exception):
    """The shared key store did not answer (Redis down or too slow); one line."""


#: Compare-and-delete in one round trip: the key is taken only by its owner.
_TAKE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisKeyStore(KeyStore):
    """Keys in Redis, shared by every server and worker that uses the same
    Redis and ``namespace`` (a server's announced name: the key works only on
    the server the client was placed on). ``put`` is one ``SET … PX``, ``take``
    one Lua compare-and-delete: atomic, so a key works once whichever process
    sees it first. Redis keeps the time-to-live: an unused key expires there."""

    def __init__(self, url: str, namespace: str, *, timeout: float = 2.0) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry as RedisRetry
        from redis.backoff import ExponentialBackoff as RedisBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.url = url
        self.prefix = f"serverlink:key:{namespace}:"
        # One retry on a fresh connection after a connection error, like the account store.
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=RedisRetry(RedisBackoff(cap=0.5, base=0.05), 1),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self._take = self.client.register_script(_TAKE)
        self.taken = 0
        self.failures = 0

    async def _call(self, what: str, call: Awaitable[object]) -> object:
        from redis.exceptions import RedisError

        try:
            return await call
        except (RedisError, OSError) as exc:
            self.failures += 1
            raise KeyStoreUnavailable(f"{what}: Redis at {mask_url(self.url)}: {exc}") from None

    async def put(self, account_no: int, key: bytes, ttl: float) -> None:
        await self._call(
            "put key",
            self.client.set(self.prefix + str(account_no), key, px=max(1, int(ttl * 1000))),
        )

    async def take(self, account_no: int, key: bytes) -> bool:
        taken = await self._call(
            "take key", self._take(keys=[self.prefix + str(account_no)], args=[key])
        )
        if taken == 1:
            self.taken += 1
            return True
        return False

    def snapshot(self) -> dict[str, int]:
        return {"keys_taken": self.taken, "key_store_failures": self.failures}

    async def close(self) -> None:
        await self.client.aclose()
