"""Accounts left claimed by a server that is gone are released after a grace time.

A game server marks its players' accounts with its status id. If it crashes,
or its machine does, nobody clears them: every later login of those accounts
would answer "already in game" forever. The login server remembers each status
id whose link went away (and, at its own start, every id the database holds,
since it cannot know which servers still run) and, ``release_after`` seconds
later, unless a server reporting that id has linked again, sets those accounts
back to 0 (logged with the count). A server that comes back within the grace
time keeps its claims: a restarted process clears its own stale ones itself,
a process that only lost its link still has those players.
"""

from __future__ import annotations

import asyncio
import logging
import time

from serverlink.store import AccountStore, StoreError

log = logging.getLogger("serverlink.login")


class Releases:
    def __init__(self, store: AccountStore, release_after: float) -> None:
        self.store = store
        self.release_after = release_after
        #: status id -> (when its claims are released, whose they were)
        self.due: dict[int, tuple[float, str]] = {}
        self.released = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Schedule the ids the database holds now (servers of an earlier run)."""
        try:
            held = await self.store.held_status_ids()
        except StoreError as exc:
            log.warning("cannot read the accounts left in game: %s; none released", exc)
            held = []
        for status_id in held:
            self.gone(status_id, "a server of an earlier run")
        if held:
            log.info(
                "accounts in game under %d status ids: released in %g s unless their "
                "servers link again",
                len(held),
                self.release_after,
            )
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def gone(self, status_id: int, name: str) -> None:
        self.due.setdefault(status_id, (time.monotonic() + self.release_after, name))

    def back(self, status_id: int) -> None:
        self.due.pop(status_id, None)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.release_after / 4)))
            now = time.monotonic()
            for status_id, (at, name) in list(self.due.items()):
                if at > now:
                    continue
                try:
                    count = await self.store.reset_statuses(only=status_id)
                except StoreError as exc:
                    log.warning("releasing the accounts of %s failed (%s); retrying", name, exc)
                    continue
                if self.due.get(status_id, (0.0, ""))[0] != at:
                    continue  # it came back while the write ran; a rescheduled one waits
                del self.due[status_id]
                self.released += count
                log.warning(
                    "released %d accounts left in game by %s (status id %d): gone for %g s",
                    count,
                    name,
                    status_id,
                    self.release_after,
                )
