"""How a login's key reaches the server the client was placed on.

LAN hand-off (original servers, and any server without the login server's key
store): the key goes only to the server ``servers.placement`` picked
(SS_REQ_NEW_CLIENT_LOGIN, a Parameter unique to the attempt) and its answer
completes it; one that does not answer within ``handoff_timeout`` is skipped
and marked late.

Shared key store (``--key-store redis://...`` on both sides): a serverlink
server sends a proof it has just written in its store (SS_KEY_STORE_PROOF);
when the login server reads the same proof in its own store, it puts that
server's keys there itself from then on, with no round trip to the server
(``KeyStoreUnavailable`` if the store does not answer: the login gets Status 7).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING

from serverlink.protocol.packets import SS_REQ_NEW_CLIENT_LOGIN
from serverlink.store.keys import KeyStore, KeyStoreUnavailable

if TYPE_CHECKING:
    from serverlink.servers.lan import LinkedServer

log = logging.getLogger("serverlink.login")


class PendingLogin:
    """One hand-off in flight, keyed by its Parameter."""

    __slots__ = ("account_no", "answered", "done", "waiting")

    def __init__(
        self, account_no: int, waiting: set[LinkedServer], done: asyncio.Future[None]
    ) -> None:
        self.account_no = account_no
        self.waiting = waiting
        #: The servers that answered, in the order they did.
        self.answered: list[LinkedServer] = []
        self.done = done


class Handoffs:
    def __init__(self, keys: KeyStore, handoff_timeout: float, key_ttl: float) -> None:
        self.keys = keys
        self.handoff_timeout = handoff_timeout
        self.key_ttl = key_ttl
        self.pending: dict[int, PendingLogin] = {}
        self.stale_answers = 0
        self.handoff_timeouts = 0
        #: Keys put in the shared store for a server that proved it uses it.
        self.keys_put = 0
        #: Proofs that did not match this store (another Redis or namespace).
        self.foreign_stores = 0
        self._parameters = itertools.count(int(time.time()) << 20)
        self._checks: set[asyncio.Task[None]] = set()
        # Kept from start(): asyncio.get_running_loop() costs a getpid() system
        # call each time, and a hand-off runs once per login.
        self.loop: asyncio.AbstractEventLoop | None = None

    async def stop(self) -> None:
        for task in list(self._checks):
            task.cancel()
        await self.keys.close()

    async def deliver(self, account_no: int, key: bytes, target: LinkedServer) -> bool:
        """Give ``target`` the key (its store, else a hand-off); True once it has
        it. Raises ``KeyStoreUnavailable`` if the shared store does not answer."""
        if target.keys is not None:
            await target.keys.put(account_no, key, self.key_ttl)
            self.keys_put += 1
            return True
        return await self.hand_off(account_no, key, target)

    # --- the shared key store -------------------------------------------------------------
    def check_proof(self, linked: LinkedServer, proof: bytes) -> None:
        """SS_KEY_STORE_PROOF: read it back from this store (a task)."""
        if not self.keys.shared:
            self.foreign_stores += 1
            log.info(
                "%s takes keys from a shared store; this login server's is in memory: "
                "keys go by hand-off",
                linked.describe(),
            )
            return
        loop = self.loop or asyncio.get_running_loop()
        task = loop.create_task(self._check(linked, proof.decode("ascii", "replace")))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, linked: LinkedServer, proof: str) -> None:
        try:
            shared = await self.keys.verify(linked.name, proof)
        except KeyStoreUnavailable as exc:
            log.warning("%s: cannot read its key store proof (%s)", linked.describe(), exc)
            return
        if not shared:
            self.foreign_stores += 1
            log.warning(
                "%s uses another key store than this login server (another Redis or "
                "namespace): its keys go by hand-off",
                linked.describe(),
            )
        elif not linked.session.closed:
            linked.keys = self.keys.scoped(linked.name)
            log.info("%s shares the key store: keys put there, no hand-off", linked.describe())

    # --- hand-offs over the LAN -----------------------------------------------------------
    async def hand_off(self, account_no: int, key: bytes, target: LinkedServer) -> bool:
        """Give ``target`` the key; True once it answered, False if it went away
        or did not answer within the hand-off deadline (then it is marked late)."""
        parameter = next(self._parameters)
        loop = self.loop
        if loop is None:  # a hand-off before start(): tests that drive the side directly
            loop = self.loop = asyncio.get_running_loop()
        pending = PendingLogin(account_no, {target}, loop.create_future())
        self.pending[parameter] = pending
        # A timer of the loop, not asyncio.timeout: cheaper per login, and the
        # login's own timeout still bounds the whole.
        deadline = loop.call_later(self.handoff_timeout, self._late, pending)
        try:
            target.session.send(SS_REQ_NEW_CLIENT_LOGIN.build(account_no, key, parameter))
            await pending.done
        finally:
            deadline.cancel()
            self.pending.pop(parameter, None)
        if target not in pending.answered and target in pending.waiting:  # the deadline
            self.handoff_timeouts += 1
            target.late_until = time.monotonic() + 10 * self.handoff_timeout
            log.warning(
                "%s did not answer a hand-off within %g s: skipped",
                target.describe(),
                self.handoff_timeout,
            )
            return False
        return target in pending.answered

    @staticmethod
    def _late(pending: PendingLogin) -> None:
        if not pending.done.done():
            pending.done.set_result(None)  # its waiting servers stay: they are late

    def on_answer(self, linked: LinkedServer, account_no: int, parameter: int) -> None:
        pending = self.pending.get(parameter)
        if pending is None or pending.account_no != account_no or linked not in pending.waiting:
            self.stale_answers += 1
            return
        pending.waiting.discard(linked)
        pending.answered.append(linked)
        linked.late_until = 0.0
        self._maybe_done(parameter, pending)

    def forget(self, linked: LinkedServer) -> None:
        """``linked`` went away: the hand-offs waiting for it end (unanswered)."""
        for parameter, pending in list(self.pending.items()):
            if linked in pending.waiting:
                pending.waiting.discard(linked)
                self._maybe_done(parameter, pending)

    def _maybe_done(self, parameter: int, pending: PendingLogin) -> None:
        if not pending.waiting and not pending.done.done():
            del self.pending[parameter]
            pending.done.set_result(None)
