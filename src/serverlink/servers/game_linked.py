"""Game server, linked mode: a login server vouches for every client's key.

- A LAN link to the login server stays up (reconnect with backoff) and
  registers this server with SS_LOGINSERVER_LOGIN.
- SS_REQ_NEW_CLIENT_LOGIN stores the handed-over key for the account (an older
  one is replaced; unused keys expire after the login timeout) and is answered
  with SS_RES_NEW_CLIENT_LOGIN carrying the same Parameter.
- CS_GAME_REQ_LOGIN succeeds only with that key, which it consumes.
- The account is marked in game (``status`` = this server's id) on login and
  back to 0 when its session ends; updates of one account are applied strictly
  in the order their events happened (see ``OrderedStatusWriter``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from serverlink.errors import StartupError
from serverlink.net.client import ReconnectingLink
from serverlink.net.framing import lan_framing
from serverlink.net.session import ProtocolViolation, Session
from serverlink.protocol.packets import (
    CS_GAME_RES_LOGIN,
    SS_LOGINSERVER_LOGIN,
    SS_REQ_NEW_CLIENT_LOGIN,
    SS_RES_NEW_CLIENT_LOGIN,
    PacketError,
)
from serverlink.protocol.status import GameLoginStatus, ServerType
from serverlink.servers.game import EchoSession, GameConfig, GameServer
from serverlink.store import AccountStore, StoreError, open_store
from serverlink.store.base import MAX_BATCH

log = logging.getLogger("serverlink.game")


@dataclass
class LinkedGameConfig(GameConfig):
    login_server: tuple[str, int] = ("127.0.0.1", 8090)
    db_url: str = "sqlite:///serverlink-accounts.db"
    login_timeout: float = 60.0
    # The non-zero value written to ``status`` while an account plays here; a
    # restarted server clears the rows holding its own id. Workers add their index.
    server_id: int = 1
    server_name: str = "game"
    # Address announced to the login server for clients (``name@ip:port``);
    # None announces host:port of the listener.
    public_addr: tuple[str, int] | None = None
    db_timeout: float = 5.0
    db_pool_max: int = 10
    worker_index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class WriteResult(enum.Enum):
    WRITTEN = "written"
    SUPERSEDED = "superseded"  # a later update of the same account replaced it unwritten
    FAILED = "failed"  # the database refused or did not answer (logged, counted)


class OrderedStatusWriter:
    """Writes account statuses in batches, so that per account updates land in
    the order they were submitted while many accounts share one statement.

    An account is in at most one batch at a time. An update submitted while its
    account's previous one is being written waits, and only the newest waiting
    value is kept (a login followed at once by a logout collapses to the
    logout). Every update submitted in one event-loop turn goes out together:
    one ``UPDATE ... WHERE accountno IN (...)`` for the logins and one for the
    logouts, up to ``MAX_BATCH`` accounts, with a few batches in flight at once.
    Firing each update as an independent task instead lets a logout overtake its
    login (a prototype left 1,499 of 4,000 accounts stuck that way), and costs a
    database round trip per update.
    """

    def __init__(self, store: AccountStore, server_id: int, max_in_flight: int = 4) -> None:
        self.store = store
        self.server_id = server_id
        self.max_in_flight = max_in_flight
        self._waiting: dict[int, tuple[bool, asyncio.Future[WriteResult]]] = {}
        self._writing: set[int] = set()  # accounts in a batch being written
        self._batches: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0
        self.writes = 0
        self.statements = 0

    def submit(self, account_no: int, in_game: bool) -> asyncio.Future[WriteResult]:
        """Queue an update; the future tells whether it was written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        replaced = self._waiting.get(account_no)
        if replaced is not None:
            replaced[1].set_result(WriteResult.SUPERSEDED)
        self._waiting[account_no] = (in_game, future)
        self._idle.clear()
        self._schedule(loop)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Start batches of the waiting updates whose accounts are not being written."""
        self._flush_scheduled = False
        while len(self._batches) < self.max_in_flight:
            batch = [acc for acc in self._waiting if acc not in self._writing][:MAX_BATCH]
            if not batch:
                break
            updates = {acc: self._waiting.pop(acc) for acc in batch}
            self._writing.update(batch)
            task = asyncio.get_running_loop().create_task(self._write(updates))
            self._batches.add(task)
        if not self._waiting and not self._batches:
            self._idle.set()

    async def _write(self, updates: dict[int, tuple[bool, asyncio.Future[WriteResult]]]) -> None:
        logins = [acc for acc, (in_game, _) in updates.items() if in_game]
        logouts = [acc for acc, (in_game, _) in updates.items() if not in_game]
        failed: set[int] = set()
        for accounts, in_game in ((logins, True), (logouts, False)):
            if not accounts:
                continue
            try:
                if in_game:
                    await self.store.set_statuses(accounts, self.server_id)
                else:
                    # Back to 0 only if still ours: another server may hold it now.
                    await self.store.clear_statuses_if(accounts, self.server_id)
                self.statements += 1
            except StoreError as exc:
                self.failures += len(accounts)
                failed.update(accounts)
                log.warning(
                    "status of %d accounts (%s) not written: %s",
                    len(accounts),
                    "in game" if in_game else "left",
                    exc,
                )
        for acc, (_, future) in updates.items():
            self._writing.discard(acc)
            if acc in failed:
                future.set_result(WriteResult.FAILED)
            else:
                self.writes += 1
                future.set_result(WriteResult.WRITTEN)
        task = asyncio.current_task()
        if task is not None:
            self._batches.discard(task)
        self._flush()

    async def flush(self, timeout: float) -> None:
        """Wait until every queued update has been written or has failed."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._batches)


class LoginLinkSession(Session):
    """This game server's side of the LAN link to the login server."""

    def __init__(self, server: LinkedGameServer) -> None:
        super().__init__()
        self.server = server


def _on_new_client(session: Session, payload: bytes) -> None:
    assert isinstance(session, LoginLinkSession)
    try:
        handoff = SS_REQ_NEW_CLIENT_LOGIN.parse(payload)
    except PacketError as exc:
        raise ProtocolViolation(exc.reason, str(exc)) from None
    session.server.keys.store(handoff.AccountNo, handoff.SessionKey)
    session.server.handoffs += 1
    session.send(SS_RES_NEW_CLIENT_LOGIN.build(handoff.AccountNo, handoff.Parameter))


LoginLinkSession.handlers = {SS_REQ_NEW_CLIENT_LOGIN.type: _on_new_client}


class KeyTable:
    """Keys handed over by the login server, per account, with an expiry."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._keys: dict[int, tuple[bytes, float]] = {}
        self.expired = 0

    def store(self, account_no: int, key: bytes) -> None:
        self._keys[account_no] = (key, time.monotonic() + self.ttl)

    def consume(self, account_no: int, key: bytes) -> bool:
        entry = self._keys.get(account_no)
        if entry is None or entry[0] != key:
            return False
        del self._keys[account_no]
        return entry[1] >= time.monotonic()

    def expire(self) -> None:
        now = time.monotonic()
        stale = [acc for acc, (_, deadline) in self._keys.items() if deadline < now]
        for acc in stale:
            del self._keys[acc]
        self.expired += len(stale)

    def __len__(self) -> int:
        return len(self._keys)


class LinkedGameServer(GameServer):
    def __init__(self, config: LinkedGameConfig, store: AccountStore | None = None) -> None:
        super().__init__(config)
        self.linked_config = config
        self.store = store or open_store(
            config.db_url, timeout=config.db_timeout, pool_max=config.db_pool_max
        )
        self.status_id = config.server_id + config.worker_index
        self.status_writer = OrderedStatusWriter(self.store, self.status_id)
        self.keys = KeyTable(config.login_timeout)
        self.handoffs = 0
        self.in_game: dict[int, EchoSession] = {}
        # Game logins whose status write is under way (their tasks, referenced here).
        self.logins_in_progress: set[asyncio.Task[None]] = set()
        host, port = config.login_server
        self.link = ReconnectingLink(
            "game->login",
            lambda: LoginLinkSession(self),
            lan_framing(),
            host,
            port,
            self._on_link_up,
        )
        self._expiry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self.store.connect()
            cleared = await self.store.reset_statuses(only=self.status_id)
        except StoreError as exc:
            await self.store.close()
            raise StartupError(f"account database {self.store.display_url}: {exc}") from None
        if cleared:
            log.info("cleared %d accounts left in game here by an earlier run", cleared)
        await super().start()
        self.link.start()
        self._expiry = asyncio.create_task(self._expire_keys())

    async def stop(self) -> None:
        await self.link.stop()
        if self._expiry is not None:
            self._expiry.cancel()
        await super().stop()  # sessions end -> logouts queued
        try:
            await self.status_writer.flush(self.linked_config.db_timeout * 2)
        except TimeoutError:
            log.warning("some account statuses could not be cleared before exit")
        await self.store.close()

    async def _expire_keys(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.keys.expire()

    def _announced_name(self) -> str:
        c = self.linked_config
        host, port = c.public_addr or (c.host, self.port)
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        name = f"{c.server_name}@{host}:{port}"
        return name[:31]

    def _on_link_up(self, session: Session) -> None:
        session.send(SS_LOGINSERVER_LOGIN.build(ServerType.GAME, self._announced_name()))
        log.info("registered with the login server as %r", self._announced_name())

    # --- login policy ---------------------------------------------------------------------
    def on_login(self, session: EchoSession, account_no: int, key: bytes, version: int) -> None:
        if version != self.config.client_version:
            self._refuse(session, account_no, GameLoginStatus.VERSION_MISMATCH, "version_mismatch")
            return
        if not self.keys.consume(account_no, key):
            self._refuse(session, account_no, GameLoginStatus.FAIL, "bad_key")
            return
        session.login_pending = True
        task = asyncio.create_task(self._complete_login(session, account_no))
        self.logins_in_progress.add(task)
        task.add_done_callback(self.logins_in_progress.discard)

    def _refuse(
        self, session: EchoSession, account_no: int, status: GameLoginStatus, reason: str
    ) -> None:
        self.game_stats.login_fail += 1
        self.stats.count_error(reason)
        log.info("%s: game login of account %d refused (%s)", session.peer, account_no, reason)
        session.send(CS_GAME_RES_LOGIN.build(status, account_no))
        session.close(f"login:{reason}")

    async def _complete_login(self, session: EchoSession, account_no: int) -> None:
        previous = self.in_game.get(account_no)
        if previous is not None and previous is not session:
            # The same account logged in again here: the newer session wins.
            previous.close("replaced")
        self.in_game[account_no] = session
        result = await self.status_writer.submit(account_no, True)
        if result is WriteResult.FAILED:
            if self.in_game.get(account_no) is session:
                del self.in_game[account_no]
            self.game_stats.login_fail += 1
            self.stats.count_error("db_unavailable")
            session.send(CS_GAME_RES_LOGIN.build(GameLoginStatus.FAIL, account_no))
            session.close("login:db_unavailable")
            return
        session.login_pending = False
        if session.closed:
            # Gone while its status was being written: queue the logout behind it.
            self._logout(session, account_no)
            return
        session.account_no = account_no
        self.game_stats.logins += 1
        session.send(CS_GAME_RES_LOGIN.build(GameLoginStatus.OK, account_no))

    def on_logout(self, session: EchoSession) -> None:
        if session.account_no is not None:
            self._logout(session, session.account_no)

    def _logout(self, session: EchoSession, account_no: int) -> None:
        if self.in_game.get(account_no) is session:
            del self.in_game[account_no]
            self.status_writer.submit(account_no, False)

    def snapshot(self) -> dict[str, object]:
        snap = super().snapshot()
        snap.update(
            login_link="up" if self.link.connected.is_set() else "down",
            link_reconnects=self.link.reconnects,
            handoffs=self.handoffs,
            keys_waiting=len(self.keys),
            keys_expired=self.keys.expired,
            in_game=len(self.in_game),
            status_write_failures=self.status_writer.failures,
        )
        return snap
