"""Session keys handed over by a login server, waiting for their client.

A ``KeyStore`` holds at most one key per account, each with a time-to-live.
``take`` is atomic: it succeeds only for the right key, removes it, and so a
key works once. ``MemoryKeyStore`` keeps them in this process (one linked
server process); the scale-out issue adds a Redis one behind the same
interface, shared by every server and worker.
"""

from __future__ import annotations

import abc
import hmac
import time
from collections.abc import Callable


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
