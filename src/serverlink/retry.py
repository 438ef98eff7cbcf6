"""One retry policy for everything that reconnects: the account store, the LAN
links between servers and the dummy client's virtual clients.

Modelled on redis-py's ``Retry`` / ``ExponentialBackoff``: a ``Retry`` is a
backoff strategy plus how many retries to make; ``call_with_retry`` runs an
operation, and after a failure the caller's ``fail`` hook runs (drop the broken
connection), then the backoff's delay, then the next attempt. Long-lived loops
(a link that must stay up) use ``delay(failures)`` directly with ``retries=-1``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``base * 2**(failures - 1)`` seconds, capped at ``cap``, with "equal
    jitter" (half of it fixed, half random) so that many peers failing together
    do not come back together."""

    base: float = 0.05
    cap: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff times must be >= 0")

    def compute(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        delay = min(self.cap, self.base * 2.0 ** max(failures - 1, 0))
        return delay / 2 + random.uniform(0.0, delay / 2)


@dataclass(frozen=True, slots=True)
class Retry:
    """A backoff and a number of retries after the first attempt (-1: forever)."""

    backoff: ExponentialBackoff = ExponentialBackoff()
    retries: int = 1

    def __post_init__(self) -> None:
        if self.retries < -1:
            raise ValueError("retries must be -1 (forever) or more")

    def gives_up(self, failures: int) -> bool:
        """True once ``failures`` consecutive failures exhaust the retries."""
        return self.retries >= 0 and failures > self.retries

    def delay(self, failures: int) -> float:
        return self.backoff.compute(failures)

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        retryable: Callable[[BaseException], bool],
        fail: Callable[[BaseException], Awaitable[None]] | None = None,
    ) -> T:
        """``await do()``; on an exception that ``retryable`` accepts, ``await
        fail(exc)`` and retry after the backoff, up to ``retries`` times. The last
        exception (or one that is not retryable) propagates."""
        failures = 0
        while True:
            try:
                return await do()
            except Exception as exc:
                if not retryable(exc):
                    raise
                failures += 1
                if self.gives_up(failures):
                    raise
                if fail is not None:
                    await fail(exc)
                await asyncio.sleep(self.delay(failures))


#: The account store: one retry on a fresh connection after a connection-level error.
STORE_RETRY = Retry(ExponentialBackoff(base=0.05, cap=0.5), retries=1)
#: Links between servers: reconnect forever, at most every 5 s.
LINK_RETRY = Retry(ExponentialBackoff(base=0.2, cap=5.0), retries=-1)
#: A server that ``serverlink up`` runs and that exited: started again after
#: 0.25-0.5 s, 0.5-1 s, 1-2 s, ... at most 30 s while it keeps failing.
CHILD_RETRY = Retry(ExponentialBackoff(base=0.5, cap=30.0), retries=-1)
