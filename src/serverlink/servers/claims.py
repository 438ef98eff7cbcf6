"""Accounts marked in game (``status`` = this server's id) while they play here.

The database decides who plays an account: a claim (game login) is written
only where the account is free (``status`` 0) or already this server's, and a
login whose claim is refused is refused; a release (logout) clears only this
server's own mark. Both are idempotent, so a retry can never do harm.

Every claim and release of one event-loop turn goes out together: one
statement for the claims (and a read-back of what they got) and one for the
releases, ordered per account (``batch.TurnBatcher``): a login followed at once
by a disconnect never leaves the account marked.

Nothing is left locked by a database that hiccups:

- a release that fails is retried with backoff until it is written, however
  long the database is away (a later claim of the same account here cancels it:
  the account is ours again);
- a claim that fails may still be applied later (a statement stuck behind a row
  lock when the call timed out): the login is refused, a release is queued at
  once, and the account is checked again later and released if it still holds
  this server's id while no session here has it.
"""

from __future__ import annotations

import asyncio
import enum
import logging

from serverlink.batch import MAX_BATCH, TurnBatcher
from serverlink.retry import ExponentialBackoff, Retry
from serverlink.store import AccountStore, StoreError

log = logging.getLogger("serverlink.claims")

#: Releases are retried forever, at most every 5 s.
RELEASE_RETRY = Retry(ExponentialBackoff(base=0.2, cap=5.0), retries=-1)
#: How many times a claim in doubt is checked again, ``recheck_after`` apart.
DOUBT_CHECKS = 3


class Claim(enum.Enum):
    CLAIMED = "claimed"
    TAKEN = "taken"  # another server holds the account (or it has no status row)
    SUPERSEDED = "superseded"  # a release of the same account came before it was written
    FAILED = "failed"  # the database refused or did not answer (logged, counted)


class AccountClaims:
    def __init__(
        self,
        store: AccountStore,
        status_id: int,
        *,
        recheck_after: float = 10.0,
        retry: Retry = RELEASE_RETRY,
    ) -> None:
        self.store = store
        self.status_id = status_id
        self.recheck_after = recheck_after
        self.retry = retry
        #: Accounts claimed here and not released: what this server holds.
        self.held: set[int] = set()
        self.failures = 0
        self.releases_retried = 0
        self._batcher: TurnBatcher[int, bool, Claim] = TurnBatcher(
            self._write, missing=Claim.FAILED, ordered=True, superseded=Claim.SUPERSEDED
        )
        #: Releases that failed, waiting for their retry: account -> failures so far.
        self._retrying: dict[int, int] = {}
        #: Claims that failed and may still be applied: account -> checks left.
        self._doubtful: dict[int, int] = {}
        self._retry_timer: asyncio.TimerHandle | None = None
        self._recheck_timer: asyncio.TimerHandle | None = None

    # --- for the server ------------------------------------------------------------
    def claim(self, account_no: int) -> asyncio.Future[Claim]:
        self._retrying.pop(account_no, None)  # it is ours again: no stale release after this
        self._doubtful.pop(account_no, None)
        future = self._batcher.submit(account_no, True)
        future.add_done_callback(lambda f: self._claimed(account_no, f))
        return future

    def release(self, account_no: int) -> None:
        self.held.discard(account_no)
        self._release(account_no, 0)

    async def reassert(self) -> set[int]:
        """Claim again every account held here (after the link to the login server
        came back: a login server that restarted, or released us while we were
        away). Returns the accounts another server holds now."""
        held = sorted(self.held)
        results = await asyncio.gather(*(self._batcher.submit(acc, True) for acc in held))
        return {acc for acc, r in zip(held, results, strict=True) if r is Claim.TAKEN}

    async def drain(self, timeout: float) -> None:
        """Wait until queued claims and releases are written (shutdown)."""
        await self._batcher.drain(timeout)

    def close(self) -> None:
        for timer in (self._retry_timer, self._recheck_timer):
            if timer is not None:
                timer.cancel()

    @property
    def busy(self) -> bool:
        """Claims or releases still to be written, or claims in doubt to check."""
        return self._batcher.busy or bool(self._retrying) or bool(self._doubtful)

    @property
    def pending_releases(self) -> int:
        return len(self._retrying)

    @property
    def statements(self) -> int:
        return self._batcher.batches

    # --- outcomes ------------------------------------------------------------------------
    def _claimed(self, account_no: int, future: asyncio.Future[Claim]) -> None:
        if future.cancelled():
            return
        result = future.result()
        if result is Claim.CLAIMED:
            self.held.add(account_no)
        elif result is Claim.FAILED:
            # It may still be applied (a statement stuck behind a lock when the
            # call timed out): release it now, and look again later.
            self._doubtful[account_no] = DOUBT_CHECKS
            self._release(account_no, 0)
            self._schedule(recheck=True)

    def _release(self, account_no: int, failures: int) -> None:
        future = self._batcher.submit(account_no, False)

        def done(f: asyncio.Future[Claim]) -> None:
            if f.cancelled() or f.result() is not Claim.FAILED or account_no in self.held:
                return
            self._retrying[account_no] = failures + 1
            self._schedule(recheck=False)

        future.add_done_callback(done)

    def _schedule(self, recheck: bool) -> None:
        loop = asyncio.get_running_loop()
        if recheck:
            if self._recheck_timer is None:
                self._recheck_timer = loop.call_later(
                    self.recheck_after, lambda: loop.create_task(self._recheck())
                )
        elif self._retry_timer is None:
            worst = max(self._retrying.values(), default=1)
            self._retry_timer = loop.call_later(self.retry.delay(worst), self._retry_releases)

    def _retry_releases(self) -> None:
        self._retry_timer = None
        retrying, self._retrying = self._retrying, {}
        for acc, failures in retrying.items():
            if acc not in self.held:  # else claimed again meanwhile: nothing to release
                self.releases_retried += 1
                self._release(acc, failures)

    async def _recheck(self) -> None:
        """Release the doubtful accounts that hold our id while nobody here plays them."""
        self._recheck_timer = None
        doubtful = [acc for acc in self._doubtful if acc not in self.held][:MAX_BATCH]
        if not doubtful:
            self._doubtful.clear()
            return
        try:
            statuses = await self.store.get_statuses(doubtful)
        except StoreError:
            self._schedule(recheck=True)
            return
        for acc in doubtful:
            if statuses.get(acc) == self.status_id and acc not in self.held:
                log.warning("account %d was marked after its claim had failed: released", acc)
                self._release(acc, 0)
            left = self._doubtful.get(acc, 1) - 1
            if left > 0:
                self._doubtful[acc] = left
            else:
                self._doubtful.pop(acc, None)
        if self._doubtful:
            self._schedule(recheck=True)

    # --- writing ---------------------------------------------------------------------
    async def _write(self, batch: dict[int, bool]) -> dict[int, Claim]:
        results: dict[int, Claim] = {}
        claims = [acc for acc, claim in batch.items() if claim]
        releases = [acc for acc, claim in batch.items() if not claim]
        if claims:
            try:
                got = await self.store.claim_statuses(claims, self.status_id)
            except StoreError as exc:
                self._failed("claim", claims, exc)
                results.update(dict.fromkeys(claims, Claim.FAILED))
            else:
                for acc in claims:
                    results[acc] = Claim.CLAIMED if acc in got else Claim.TAKEN
        if releases:
            try:
                await self.store.clear_statuses_if(releases, self.status_id)
            except StoreError as exc:
                self._failed("release", releases, exc)
                results.update(dict.fromkeys(releases, Claim.FAILED))
            else:
                results.update(dict.fromkeys(releases, Claim.CLAIMED))  # unused: written
        return results

    def _failed(self, what: str, accounts: list[int], exc: StoreError) -> None:
        self.failures += len(accounts)
        log.warning("%s of %d accounts not written (retried): %s", what, len(accounts), exc)
