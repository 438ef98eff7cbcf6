"""The login server's LAN side: who may link, who is linked, and the hand-offs.

Who may link: a connection must register (SS_LOGINSERVER_LOGIN) within a few
seconds, from an address in ``whiteip`` — or, while that table is empty, from
loopback only (``lan_allow_any`` lifts that, with a warning at start). The
address it announces for clients must be its own (or in ``whiteip``), its name
must not be linked already, and a serverlink server's status id (reported in
SS_LINK_STATUS) must not be one a linked server holds. Anything else is
refused with one log line.

Who is linked: serverlink servers report (SS_LINK_STATUS: status id, load,
heartbeat) and are answered (SS_LINK_PING); one silent for three heartbeats is
dropped. Original C++ servers report nothing and are kept while TCP (with
keepalive) says they are there. Gone servers' claims: ``servers.releases``.

How a key reaches the server ``servers.placement`` picked (LAN hand-off or
the shared key store): ``servers.handoffs``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from serverlink.logs import RateLimitedLog
from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session, SessionDeps, handles
from serverlink.net.tls import TlsConfig
from serverlink.protocol.framing import lan_framing
from serverlink.protocol.packets import (
    SS_KEY_STORE_PROOF,
    SS_LINK_PING,
    SS_LINK_STATUS,
    SS_LOGINSERVER_LOGIN,
    SS_RES_NEW_CLIENT_LOGIN,
    SsKeyStoreProof,
    SsLinkStatus,
    SsLoginServerLogin,
    SsResNewClientLogin,
)
from serverlink.protocol.status import ServerType
from serverlink.servers.handoffs import Handoffs
from serverlink.servers.trust import is_loopback, peer_trusted
from serverlink.store import AccountStore, StoreError
from serverlink.store.keys import KeyStore, MemoryKeyStore

log = logging.getLogger("serverlink.login")

DEFAULT_GAME_PORT = 12211
DEFAULT_CHAT_PORT = 50000
#: LAN connections at most (linked servers and their workers).
MAX_LINKS = 256
#: Seconds a LAN connection has to register (LoginConfig.lan_register_deadline).
REGISTER_DEADLINE = 5.0
#: A serverlink link silent for this many of its heartbeats is dropped.
SILENT_HEARTBEATS = 3
#: SS_LINK_STATUS.Draining of a server that stops gracefully (servers.link.LEAVING).
LEAVING = 2


def _nothing() -> None:
    pass


def parse_announced_address(name: str) -> tuple[str, int] | None:
    """serverlink game/chat servers register as ``name@ip:port`` so the login
    server can tell clients where they listen; other servers' names carry none."""
    _, at, addr = name.rpartition("@")
    host, colon, port = addr.rpartition(":")
    if not at or not colon or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


class LinkedServer:
    """One game/chat server registered on the LAN side."""

    __slots__ = (
        "address",
        "capacity",
        "draining",
        "heartbeat",
        "keys",
        "last_heard",
        "late_until",
        "leaving",
        "name",
        "players",
        "session",
        "status_id",
        "type",
    )

    def __init__(
        self, session: LinkSession, server_type: ServerType, name: str, address: tuple[str, int]
    ) -> None:
        self.session = session
        self.type = server_type
        self.name = name
        self.address = address
        #: From SS_LINK_STATUS (serverlink servers); None: an original server.
        self.status_id: int | None = None
        self.players = 0
        self.capacity = 0
        self.draining = False
        self.heartbeat = 0.0  # seconds between its reports; 0: it sends none
        self.last_heard = time.monotonic()
        #: Missed a hand-off deadline: placed only when no other server is left.
        self.late_until = 0.0
        #: It said it is stopping gracefully (SS_LINK_STATUS.Draining == 2).
        self.leaving = False
        #: Its scope of the shared key store, once it proved it takes keys from
        #: the login server's (SS_KEY_STORE_PROOF); None: keys go by hand-off.
        self.keys: KeyStore | None = None

    @property
    def serverlink(self) -> bool:
        return self.status_id is not None

    def describe(self) -> str:
        return f"{self.type.name.lower()} server {self.name!r} ({self.session.peer})"


class LinkSession(Session):
    """A game/chat server on the login server's LAN port."""

    __slots__ = ("lan", "linked", "peer_ip", "report", "task")

    def __init__(self, deps: SessionDeps, lan: LanSide) -> None:
        super().__init__(deps)
        self.lan = lan
        self.linked: LinkedServer | None = None
        self.peer_ip = ""
        self.task: asyncio.Task[None] | None = None  # registration (reads whiteip)
        #: SS_LINK_STATUS that came while the registration was being checked.
        self.report: SsLinkStatus | None = None

    def on_open(self) -> None:
        self.peer_ip = self.peer.rpartition(":")[0].strip("[]")

    def on_close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.linked is not None:
            self.lan.unlink(self.linked)

    @handles(SS_LOGINSERVER_LOGIN)
    def on_register(self, request: SsLoginServerLogin) -> None:
        if self.linked is not None or self.task is not None:
            raise ProtocolViolation("double_register", "second SS_LOGINSERVER_LOGIN on one link")
        self.task = asyncio.get_running_loop().create_task(
            self.lan.register(self, request.ServerType, request.ServerName)
        )

    @handles(SS_LINK_STATUS)
    def on_status(self, report: SsLinkStatus) -> None:
        if self.task is None:
            raise ProtocolViolation("not_registered", "SS_LINK_STATUS before registering")
        if self.linked is None:
            self.report = report  # applied once the registration is accepted
        else:
            self.lan.on_report(self.linked, report)

    @handles(SS_RES_NEW_CLIENT_LOGIN)
    def on_handoff_answer(self, answer: SsResNewClientLogin) -> None:
        if self.linked is None:
            raise ProtocolViolation("not_registered", "SS_RES_NEW_CLIENT_LOGIN before registering")
        self.lan.handoffs.on_answer(self.linked, answer.AccountNo, answer.Parameter)

    @handles(SS_KEY_STORE_PROOF)
    def on_key_store_proof(self, proof: SsKeyStoreProof) -> None:
        if self.linked is None:
            raise ProtocolViolation("not_registered", "SS_KEY_STORE_PROOF before registering")
        self.lan.handoffs.check_proof(self.linked, proof.Proof)


class LanSide:
    """The LAN listener, the registry of linked servers, the hand-offs in flight."""

    def __init__(
        self,
        store: AccountStore,
        host: str,
        port: int,
        *,
        allow_any: bool = False,
        handoff_timeout: float = 2.0,
        register_deadline: float = REGISTER_DEADLINE,
        tls: TlsConfig | None = None,
        keys: KeyStore | None = None,
        key_ttl: float = 60.0,
    ) -> None:
        self.store = store
        self.allow_any = allow_any
        #: The hand-offs in flight, and the keys put in the shared store.
        self.handoffs = Handoffs(
            keys if keys is not None else MemoryKeyStore(), handoff_timeout, key_ttl
        )
        self.listener = SessionServer(
            "login-lan",
            lambda deps: LinkSession(deps, self),
            lan_framing(),
            host,
            port,
            ServerLimits(
                max_sessions=MAX_LINKS,
                idle_timeout=0,  # original servers send nothing: heartbeats are ours
                login_deadline=register_deadline,
                tcp_keepalive=True,
            ),
            ssl_context=tls.server_context() if tls is not None else None,
        )
        self.links: list[LinkedServer] = []
        self.rejected_links = 0
        self.silent_links = 0
        self._refusals = RateLimitedLog(log, burst=3, interval=60.0)
        self._links_changed = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        #: Told (status id, name) when a server that claims accounts goes away,
        #: and (status id) when one reports in: the releases of its claims.
        self.gone_hooks: list[Callable[[int, str], None]] = []
        self.back_hooks: list[Callable[[int], None]] = []
        #: Called when a server links or unlinks (the login server announces it).
        self.on_links_changed: Callable[[], None] = _nothing

    @property
    def port(self) -> int:
        return self.listener.port

    async def start(self) -> None:
        loop = self.handoffs.loop = asyncio.get_running_loop()
        await self.listener.start()
        self._ticker = loop.create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await self.listener.stop()
        await self.handoffs.stop()

    def linked(self, server_type: ServerType) -> list[LinkedServer]:
        return [s for s in self.links if s.type == server_type]

    async def wait_links(self, game: int, timeout: float = 10.0) -> None:
        """Wait until exactly ``game`` game servers are linked (tools, tests, demo)."""
        async with asyncio.timeout(timeout):
            while len(self.linked(ServerType.GAME)) != game:
                self._links_changed.clear()
                await self._links_changed.wait()

    async def wait_changed(self) -> None:
        self._links_changed.clear()
        await self._links_changed.wait()

    # --- registration -------------------------------------------------------------------
    def _refuse(self, session: LinkSession, reason: str, msg: str, *args: object) -> None:
        self.rejected_links += 1
        session.stats.count_error(reason)
        self._refusals.warning(session.peer_ip, "%s: link refused: " + msg, session.peer, *args)
        session.abort(reason)

    async def register(self, session: LinkSession, server_type: int, name: str) -> None:
        if server_type not in (ServerType.GAME, ServerType.CHAT):
            session.protocol_error("bad_server_type", f"ServerType {server_type}")
            return
        try:
            trusted = {ip.strip() for ip in await self.store.trusted_ips()}
        except StoreError as exc:
            self._refuse(session, "whiteip_unavailable", "cannot read whiteip (%s)", exc)
            return
        if session.closed:
            return
        ip = session.peer_ip
        if not peer_trusted(ip, trusted, self.allow_any):
            hint = "not in the whiteip table" if trusted else "whiteip is empty: loopback only"
            self._refuse(
                session,
                "not_whitelisted",
                "%s server %r from %s: %s (serverlink db add-whiteip, or --lan-allow-any)",
                ServerType(server_type).name.lower(),
                name,
                ip,
                hint,
            )
            return
        address = self._client_address(session, ServerType(server_type), name, trusted)
        if address is None:
            return
        if any(s.name == name and not s.session.closed for s in self.links):
            self._refuse(session, "name_in_use", "a server named %r is linked already", name)
            return
        linked = LinkedServer(session, ServerType(server_type), name, address)
        report, session.report = session.report, None
        if report is not None and not self._status_id_free(session, linked, report.StatusId):
            return
        session.linked = linked
        session.authenticated = True
        self.links.append(linked)
        log.info("%s linked (clients go to %s:%d)", linked.describe(), *linked.address)
        if report is not None:
            self.on_report(linked, report)
        self._links_changed.set()
        self.on_links_changed()

    def _client_address(
        self, session: LinkSession, server_type: ServerType, name: str, trusted: Iterable[str]
    ) -> tuple[str, int] | None:
        """The address clients are sent to: the announced one when it is the
        server's own (or trusted), else the registration is refused."""
        default_port = DEFAULT_GAME_PORT if server_type == ServerType.GAME else DEFAULT_CHAT_PORT
        announced = parse_announced_address(name)
        if announced is None:
            return session.peer_ip, default_port
        host, port = announced
        if host == session.peer_ip or host in trusted:
            return announced
        if is_loopback(host) or host in ("0.0.0.0", "::"):
            # A wildcard or loopback listener announces loopback: meaningful to
            # clients only when they share the machine, so use its real address.
            return session.peer_ip, port
        self._refuse(
            session,
            "foreign_address",
            "server %r announces %s, not its own address %s (add %s to whiteip if it is "
            "the server's public address)",
            name,
            host,
            session.peer_ip,
            host,
        )
        return None

    def _status_id_free(self, session: LinkSession, linked: LinkedServer, status_id: int) -> bool:
        if status_id:
            for other in self.links:
                if other is not linked and other.status_id == status_id:
                    self._refuse(
                        session,
                        "status_id_in_use",
                        "%r reports status id %d, which %s holds (give each server its own "
                        "--server-id range)",
                        linked.name,
                        status_id,
                        other.describe(),
                    )
                    return False
        return True

    def on_report(self, linked: LinkedServer, report: SsLinkStatus) -> None:
        first = linked.status_id is None
        if first:
            if not self._status_id_free(linked.session, linked, report.StatusId):
                return
            for hook in self.back_hooks:
                hook(report.StatusId)
        elif report.StatusId != linked.status_id:
            linked.session.protocol_error("status_id_changed", "status id changed on a link")
            return
        linked.status_id = report.StatusId
        linked.players = max(0, report.Players)
        linked.capacity = max(0, report.Capacity)
        linked.draining = bool(report.Draining)
        linked.leaving = report.Draining == LEAVING
        linked.heartbeat = max(0, report.HeartbeatMs) / 1000.0
        linked.last_heard = time.monotonic()
        linked.session.send(SS_LINK_PING.build())

    def unlink(self, linked: LinkedServer) -> None:
        if linked in self.links:
            self.links.remove(linked)
            self._links_changed.set()
            self.on_links_changed()
            reason = linked.session.close_reason
            if linked.leaving or reason == "server_shutdown":
                log.info("%s stopped", linked.describe())  # a graceful stop on either side
            else:
                log.warning("%s unlinked (%s)", linked.describe(), reason)
            if linked.status_id:
                for hook in self.gone_hooks:
                    hook(linked.status_id, linked.name)
        self.handoffs.forget(linked)

    async def _tick(self) -> None:
        """Once a second: drop serverlink links silent for three heartbeats."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for linked in list(self.links):
                limit = linked.heartbeat * SILENT_HEARTBEATS
                if limit and now - linked.last_heard > max(limit, 1.0):
                    self.silent_links += 1
                    log.warning(
                        "%s silent for %.0f s: link dropped",
                        linked.describe(),
                        now - linked.last_heard,
                    )
                    linked.session.abort("silent")
            self._refusals.flush()
