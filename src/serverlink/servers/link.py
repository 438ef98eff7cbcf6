"""The link to a login server, composed by every linked server (game, chat).

``LoginLink`` keeps a LAN connection to the login server up (reconnecting with
the shared retry policy; TCP keepalive on; mutual TLS when configured),
registers as a server type and name (SS_LOGINSERVER_LOGIN), stores each
handed-over key for its account in a ``KeyStore`` with the login timeout as its
time-to-live and answers the hand-off (SS_RES_NEW_CLIENT_LOGIN with the same
Parameter). The server's own login handler asks ``take_key``: a key works once,
and only for its account.

Heartbeats (serverlink login servers only): right after registering and then
every ``heartbeat`` seconds the link reports SS_LINK_STATUS (its status id, its
load); the login server answers each with SS_LINK_PING. The first answer means
"accepted": until then a closed link counts as refused (backoff grows, logged
once per streak). No answer for three heartbeats — a login server that hangs,
or a path cut without a FIN — drops the link, which is then re-established.
With ``heartbeat = 0`` (an original login server, which knows no heartbeats)
the link counts as accepted once registered and lives as long as TCP says.

A shared key store (Redis): once accepted by a serverlink login server, the
link writes a random proof in the store and sends it (SS_KEY_STORE_PROOF); a
login server on the same store then puts this server's keys there itself,
without a hand-off. ``servers.links`` links one server to several login servers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from serverlink.logs import OutageLog
from serverlink.net.client import ReconnectingLink
from serverlink.net.session import Session, SessionDeps, handles
from serverlink.net.stats import NetStats
from serverlink.net.tls import TlsConfig
from serverlink.protocol.framing import lan_framing
from serverlink.protocol.packets import (
    SS_KEY_STORE_PROOF,
    SS_LINK_PING,
    SS_LINK_STATUS,
    SS_LOGINSERVER_LOGIN,
    SS_REQ_NEW_CLIENT_LOGIN,
    SS_RES_NEW_CLIENT_LOGIN,
    Empty,
    SsReqNewClientLogin,
)
from serverlink.protocol.status import ServerType
from serverlink.store.keys import KeyStore, KeyStoreUnavailable, MemoryKeyStore

log = logging.getLogger("serverlink.link")

#: SS_LOGINSERVER_LOGIN.ServerName holds 32 WCHARs, NUL included.
SERVER_NAME_UNITS = 31
#: The link is dropped after this many heartbeats without an answer.
SILENT_HEARTBEATS = 3
#: SS_LINK_STATUS.Draining of a server that stops gracefully.
LEAVING = 2


#: Seconds a login may take: the login server drops a login not completed
#: within it, and a linked server's handed-over key expires after it.
LOGIN_TIMEOUT = 60.0


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Where a linked server registers, and as what."""

    #: The LAN addresses of the login servers (it links to every one).
    login_servers: tuple[tuple[str, int], ...] = (("127.0.0.1", 8090),)
    #: Where handed-over keys wait for their client: "memory" (this process) or
    #: a redis:// URL shared with the login servers (``store.keys.open_key_store``).
    key_store: str = "memory"
    #: Name registered with the login server (the address is appended: name@ip:port);
    #: None: the server's kind ("game", "chat").
    server_name: str | None = None
    #: Address announced to the login server for clients; None: the listener's.
    public_addr: tuple[str, int] | None = None
    #: Seconds a handed-over key waits for its client (the login timeout).
    key_ttl: float = LOGIN_TIMEOUT
    #: Seconds between status reports (heartbeats); 0: none (an original login server).
    heartbeat: float = 5.0
    #: Mutual TLS to the login server (a serverlink login server with --lan-tls-*).
    tls: TlsConfig | None = None


@dataclass(frozen=True, slots=True)
class Load:
    """What a linked server reports with each heartbeat."""

    players: int
    capacity: int
    draining: bool = False


def announced_name(name: str, host: str, port: int) -> str:
    """``name@ip:port`` cut to fit ServerName: the login server tells clients
    that address (a wildcard listen address is announced as loopback, which the
    login server replaces by the link's own address)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"{name}@{host}:{port}"[:SERVER_NAME_UNITS]


class LoginLinkSession(Session):
    """The linked server's side of the LAN connection to the login server."""

    __slots__ = ("link",)

    def __init__(self, deps: SessionDeps, link: LoginLink) -> None:
        super().__init__(deps)
        self.link = link

    @handles(SS_REQ_NEW_CLIENT_LOGIN)
    def on_handoff(self, handoff: SsReqNewClientLogin) -> None:
        self.link.on_handoff(self, handoff)

    @handles(SS_LINK_PING)
    def on_ping(self, ping: Empty) -> None:
        self.link.on_ping()

    def on_close(self) -> None:
        self.link.set_accepted(False)


class LoginLink:
    def __init__(
        self,
        config: LinkConfig,
        server_type: ServerType,
        address: tuple[str, int],
        *,
        status_id: int = 0,
        load: Callable[[], Load] = lambda: Load(0, 0),
        on_accepted: Callable[[], Awaitable[None]] | None = None,
        keys: KeyStore | None = None,
        login_server: tuple[str, int] | None = None,
        key_store_log: OutageLog | None = None,
    ) -> None:
        """``address``: where this server listens for clients (announced unless
        ``config.public_addr`` says otherwise). ``status_id``: the status value
        its account claims carry (0: it claims none). ``on_accepted`` runs each
        time the login server accepts the link, before hand-offs are answered.
        ``keys``: the server's key store (closed by its owner; None: one of
        this link's own). ``login_server``: the one to link to (None: the first
        of ``config.login_servers``)."""
        self.config = config
        self.server_type = server_type
        self.status_id = status_id
        self.load = load
        self.on_accepted = on_accepted
        name = config.server_name or server_type.name.lower()  # "game", "chat"
        self.name = announced_name(name, *(config.public_addr or address))
        self._owns_keys = keys is None
        # Scoped to this server's name: the key a login server puts for it works only here.
        self.keys = (keys if keys is not None else MemoryKeyStore()).scoped(self.name)
        self.key_store_log = key_store_log or OutageLog(log, "key store")
        #: Called when ``accepted`` is set or cleared (``servers.links``).
        self.on_change: Callable[[], None] = _nothing
        self.login_server = host, port = login_server or config.login_servers[0]
        self.handoffs = 0
        self.accepted = asyncio.Event()
        self.silent_drops = 0
        self._last_ping = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._heartbeats: asyncio.Task[None] | None = None
        self.link = ReconnectingLink(
            f"{server_type.name.lower()}->login",
            lambda deps: LoginLinkSession(deps, self),
            lan_framing(),
            host,
            port,
            self._on_up,
            ssl_context=config.tls.client_context() if config.tls is not None else None,
        )

    @property
    def connected(self) -> asyncio.Event:
        return self.link.connected

    def start(self) -> None:
        self.link.start()

    async def stop(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        session = self.link.session
        if session is not None and self.config.heartbeat > 0:
            session.send(self._report(leaving=True))  # a graceful stop, not a crash
        await self.link.stop()
        for task in list(self._pending):
            task.cancel()
        if self._owns_keys:
            await self.keys.close()

    def set_accepted(self, accepted: bool) -> None:
        if accepted:
            self.accepted.set()
        else:
            self.accepted.clear()
        self.on_change()

    # --- registration and heartbeats ------------------------------------------------------
    def _report(self, leaving: bool = False) -> bytes:
        load = self.load()
        return SS_LINK_STATUS.build(
            self.status_id,
            load.players,
            load.capacity,
            LEAVING if leaving else int(load.draining),
            int(self.config.heartbeat * 1000),
        )

    def _on_up(self, session: Session) -> None:
        self.set_accepted(False)
        session.send(SS_LOGINSERVER_LOGIN.build(self.server_type, self.name))
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        if self.config.heartbeat <= 0:
            self._accept(session)
            return
        session.send(self._report())
        self._last_ping = time.monotonic()
        self._heartbeats = asyncio.get_running_loop().create_task(self._beat(session))

    def on_ping(self) -> None:
        self._last_ping = time.monotonic()
        session = self.link.session
        if not self.accepted.is_set() and session is not None:
            self._accept(session)

    def _accept(self, session: Session) -> None:
        self.link.confirm()
        log.info("linked to the login server at %s:%d as %r", *self.login_server, self.name)
        if self.keys.shared and self.config.heartbeat > 0:  # a serverlink login server
            self._track(asyncio.get_running_loop().create_task(self._prove_key_store(session)))
        if self.on_accepted is None:
            self.set_accepted(True)
            return

        async def accepted() -> None:
            assert self.on_accepted is not None
            await self.on_accepted()
            if not session.closed:
                self.set_accepted(True)

        self._track(asyncio.get_running_loop().create_task(accepted()))

    async def _prove_key_store(self, session: Session) -> None:
        """Tell the login server which key store this server takes keys from."""
        try:
            proof = await self.keys.prove()
        except KeyStoreUnavailable as exc:
            self.key_store_log.failed(exc, "keys come by hand-off")
            return
        if proof is not None and not session.closed:
            session.send(SS_KEY_STORE_PROOF.build(proof.encode()))

    def report_now(self) -> None:
        """Send the load report now, not at the next heartbeat (draining toggled)."""
        session = self.link.session
        if session is not None and not session.closed and self.config.heartbeat > 0:
            session.send(self._report())

    async def _beat(self, session: Session) -> None:
        interval = self.config.heartbeat
        while not session.closed:
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_ping > SILENT_HEARTBEATS * interval:
                self.silent_drops += 1
                log.warning(
                    "no answer from the login server for %.0f s: link dropped, reconnecting",
                    time.monotonic() - self._last_ping,
                )
                session.abort("silent")
                return
            session.send(self._report())

    # --- hand-offs ------------------------------------------------------------------------
    def on_handoff(self, session: Session, handoff: SsReqNewClientLogin) -> None:
        self.handoffs += 1
        if self.keys.put_now(handoff.AccountNo, handoff.SessionKey, self.config.key_ttl):
            # A store in this process: stored and answered within this read.
            session.send(SS_RES_NEW_CLIENT_LOGIN.build(handoff.AccountNo, handoff.Parameter))
            return
        self._track(
            asyncio.get_running_loop().create_task(self._store_and_answer(session, handoff))
        )

    async def _store_and_answer(self, session: Session, handoff: SsReqNewClientLogin) -> None:
        try:
            await self.keys.put(handoff.AccountNo, handoff.SessionKey, self.config.key_ttl)
        except KeyStoreUnavailable as exc:
            # Not answered: the login server skips this server for the login.
            self.key_store_log.failed(exc, "hand-offs are not answered")
            return
        self.key_store_log.answered()
        session.send(SS_RES_NEW_CLIENT_LOGIN.build(handoff.AccountNo, handoff.Parameter))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def take_key(self, account_no: int, key: bytes) -> bool:
        """True (once) if ``key`` was handed over for ``account_no`` and is live;
        raises ``KeyStoreUnavailable`` (logged once per outage) if the store
        does not answer."""
        try:
            taken = await self.keys.take(account_no, key)
        except KeyStoreUnavailable as exc:
            self.key_store_log.failed(exc, "logins are refused")
            raise
        self.key_store_log.answered()
        return taken

    def take_key_now(self, account_no: int, key: bytes) -> bool | None:
        """``take_key`` without waiting, when the key store can (one in this
        process); None: await ``take_key``."""
        return self.keys.take_now(account_no, key)

    def snapshot(self) -> dict[str, Any]:
        return {
            "login_link": "up" if self.accepted.is_set() else "down",
            "link_reconnects": self.link.reconnects,
            "link_refusals": self.link.refusals,
            "handoffs": self.handoffs,
            **self.keys.snapshot(),
        }


class PendingLogin(Protocol):
    """A client session whose login may be in progress."""

    login_pending: bool


class KeyedLogins:
    """What the login handling of every linked server shares (game, chat).

    The check of a login (``LoginLink.take_key`` and whatever the server adds)
    runs as a task, referenced here until it ends, while its session is marked
    ``login_pending`` (so a second login meanwhile is a protocol error). A
    refused login is counted by reason, logged, answered with the server's own
    refusal and closed.
    """

    def __init__(self, server: str, stats: NetStats) -> None:
        self.server = server
        self.stats = stats
        self.in_progress: set[asyncio.Task[None]] = set()
        self.refused = 0

    def start(self, session: PendingLogin, check: Coroutine[Any, Any, None]) -> None:
        session.login_pending = True
        task = asyncio.get_running_loop().create_task(check)
        self.in_progress.add(task)
        task.add_done_callback(self.in_progress.discard)

    def refuse(self, session: Session, account_no: int, reply: bytes, reason: str) -> None:
        """A refusal, not a protocol error: counted by reason, logged at a bounded rate."""
        self.refused += 1
        self.stats.refuse(
            reason,
            "%s: %s login of account %d refused (%s)",
            session.peer,
            self.server,
            account_no,
            reason,
        )
        session.send(reply)
        session.close(f"login:{reason}")

    def cancel(self) -> None:
        for task in list(self.in_progress):
            task.cancel()
