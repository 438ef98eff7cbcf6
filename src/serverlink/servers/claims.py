"""Accounts marked in game (``status`` = this server's id) while they play here.

Every claim (login) and release (logout) of one event-loop turn goes out
together: one ``UPDATE ... WHERE accountno IN (...)`` for the claims and one for
the releases, ordered per account (``batch.TurnBatcher``, ordered): a login
followed at once by a disconnect never leaves the account marked.
"""

from __future__ import annotations

import asyncio
import enum
import logging

from serverlink.batch import TurnBatcher
from serverlink.store import AccountStore, StoreError

log = logging.getLogger("serverlink.claims")


class WriteResult(enum.Enum):
    WRITTEN = "written"
    SUPERSEDED = "superseded"  # a later update of the same account replaced it unwritten
    FAILED = "failed"  # the database refused or did not answer (logged, counted)


class AccountClaims:
    def __init__(self, store: AccountStore, status_id: int) -> None:
        self.store = store
        self.status_id = status_id
        self.failures = 0
        self.writes = 0
        self._batcher: TurnBatcher[int, bool, WriteResult] = TurnBatcher(
            self._write,
            missing=WriteResult.WRITTEN,
            ordered=True,
            superseded=WriteResult.SUPERSEDED,
        )

    def claim(self, account_no: int) -> asyncio.Future[WriteResult]:
        return self._batcher.submit(account_no, True)

    def release(self, account_no: int) -> asyncio.Future[WriteResult]:
        return self._batcher.submit(account_no, False)

    async def drain(self, timeout: float) -> None:
        await self._batcher.drain(timeout)

    @property
    def busy(self) -> bool:
        return self._batcher.busy

    @property
    def statements(self) -> int:
        return self._batcher.batches

    async def _write(self, batch: dict[int, bool]) -> dict[int, WriteResult]:
        results: dict[int, WriteResult] = {}
        for in_game in (True, False):
            accounts = [acc for acc, claim in batch.items() if claim is in_game]
            if not accounts:
                continue
            try:
                if in_game:
                    await self.store.set_statuses(accounts, self.status_id)
                else:
                    # Back to 0 only if still ours: another server may hold it now.
                    await self.store.clear_statuses_if(accounts, self.status_id)
                result = WriteResult.WRITTEN
                self.writes += len(accounts)
            except StoreError as exc:
                result = WriteResult.FAILED
                self.failures += len(accounts)
                log.warning(
                    "status of %d accounts (%s) not written: %s",
                    len(accounts),
                    "in game" if in_game else "left",
                    exc,
                )
            results.update(dict.fromkeys(accounts, result))
        return results
