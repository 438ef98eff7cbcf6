"""Batch what one event-loop turn asks for, with a few batches in flight.

At a thousand logins a second, a database statement per request costs the
servers and the database more CPU than everything else on the login path (the
driver's per-statement work dominates). A ``TurnBatcher`` collects the
requests submitted during one event-loop turn and hands them to ``run`` as one
batch (one statement); requests that arrive while ``max_in_flight`` batches are
running wait and go out together in the next one, so batches grow with the
load and stay single under light load.

Two ways a key can repeat:

- ``ordered=False`` (reads): a request for a key already waiting joins it and
  gets the same result.
- ``ordered=True`` (writes): a key is in at most one running batch, so updates
  of one key land in the order they were submitted; a newer request waiting
  behind a running one replaces an older waiting one, whose future resolves
  to ``superseded`` (a login followed at once by a logout collapses to the
  logout). Firing each update as an independent task instead lets a logout
  overtake its login (a prototype left 1,499 of 4,000 accounts stuck that way).

``run(batch)`` returns a result per key; a key missing from its answer gets
``missing``; an exception as a key's value fails only that key's requests; an
exception raised by ``run`` fails the whole batch.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")

#: Keys in one batch at most (SQLite's oldest builds allow 999 bound parameters).
MAX_BATCH = 500


class TurnBatcher(Generic[K, V, R]):
    def __init__(
        self,
        run: Callable[[dict[K, V]], Awaitable[Mapping[K, R | BaseException]]],
        *,
        missing: R,
        ordered: bool = False,
        superseded: R | None = None,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = 4,
    ) -> None:
        if ordered and superseded is None:
            raise ValueError("an ordered batcher needs a 'superseded' result")
        self._run = run
        self.missing = missing
        self.ordered = ordered
        self.superseded = superseded
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: dict[K, tuple[V, list[asyncio.Future[R]]]] = {}
        self._running: set[K] = set()  # ordered: keys in a running batch
        self._batches: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        # The loop, kept at the first submit: asyncio.get_running_loop() costs
        # a getpid() system call each time (Python 3.11), and submit runs per login.
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Batches run (one statement each, for a store).
        self.batches = 0

    def submit(self, key: K, value: V) -> asyncio.Future[R]:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        entry = self._waiting.get(key)
        if entry is not None and not self.ordered:
            entry[1].append(future)
        else:
            if entry is not None:
                for older in entry[1]:
                    if not older.done():
                        older.set_result(self.superseded)  # type: ignore[arg-type]
            self._waiting[key] = (value, [future])
        self._idle.clear()
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._batches)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def drain(self, timeout: float) -> None:
        """Wait until every request submitted so far has its result."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    def _flush(self) -> None:
        """Start batches of the waiting requests (not of keys being run, if ordered)."""
        self._scheduled = False
        loop = self._loop
        assert loop is not None  # scheduled by submit
        while self._waiting and len(self._batches) < self.max_in_flight:
            running = self._running
            ready = (
                (k for k in self._waiting if k not in running) if self.ordered else self._waiting
            )
            keys = list(itertools.islice(ready, self.max_batch))
            if not keys:
                break
            batch = {k: self._waiting.pop(k) for k in keys}
            if self.ordered:
                self._running.update(keys)
            task = loop.create_task(self._one(batch))
            self._batches.add(task)
            task.add_done_callback(self._done)
        if not self._waiting and not self._batches:
            self._idle.set()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._flush()

    async def _one(self, batch: dict[K, tuple[V, list[asyncio.Future[R]]]]) -> None:
        try:
            results: Mapping[K, R | BaseException] = await self._run(
                {k: value for k, (value, _) in batch.items()}
            )
        except Exception as exc:
            results = dict.fromkeys(batch, exc)
        finally:
            self._running.difference_update(batch)
        self.batches += 1
        for key, (_, futures) in batch.items():
            result = results.get(key, self.missing)
            for f in futures:
                if f.done():  # a requester that left cancelled it
                    continue
                if isinstance(result, BaseException):
                    f.set_exception(result)
                else:
                    f.set_result(result)
