"""The login server's LAN side: game and chat servers register on it
(SS_LOGINSERVER_LOGIN, only from ``whiteip`` addresses when that table is not
empty), hand-offs go out to them (SS_REQ_NEW_CLIENT_LOGIN with a Parameter
unique to the attempt) and their answers (SS_RES_NEW_CLIENT_LOGIN) complete
the pending login. A link that drops is forgotten at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session, SessionDeps, handles
from serverlink.protocol.framing import lan_framing
from serverlink.protocol.packets import (
    SS_LOGINSERVER_LOGIN,
    SS_REQ_NEW_CLIENT_LOGIN,
    SS_RES_NEW_CLIENT_LOGIN,
    SsLoginServerLogin,
    SsResNewClientLogin,
)
from serverlink.protocol.status import ServerType
from serverlink.store import AccountStore, StoreError

log = logging.getLogger("serverlink.login")

DEFAULT_GAME_PORT = 12211
DEFAULT_CHAT_PORT = 50000
#: LAN connections at most (linked servers and their workers).
MAX_LINKS = 256


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

    __slots__ = ("address", "name", "session", "type")

    def __init__(self, session: LinkSession, server_type: ServerType, name: str) -> None:
        self.session = session
        self.type = server_type
        self.name = name
        default_port = DEFAULT_GAME_PORT if server_type == ServerType.GAME else DEFAULT_CHAT_PORT
        self.address = parse_announced_address(name) or (session.peer_ip, default_port)


class PendingLogin:
    """One hand-off in flight, keyed by its Parameter."""

    __slots__ = ("account_no", "answered", "done", "waiting")

    def __init__(self, account_no: int, waiting: set[LinkedServer]) -> None:
        self.account_no = account_no
        self.waiting = waiting
        #: The servers that answered, in the order they did.
        self.answered: list[LinkedServer] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def first_answer(self, server_type: ServerType) -> LinkedServer | None:
        return next((s for s in self.answered if s.type == server_type), None)


class LinkSession(Session):
    """A game/chat server on the login server's LAN port."""

    __slots__ = ("lan", "linked", "peer_ip", "task")

    def __init__(self, deps: SessionDeps, lan: LanSide) -> None:
        super().__init__(deps)
        self.lan = lan
        self.linked: LinkedServer | None = None
        self.peer_ip = ""
        self.task: asyncio.Task[None] | None = None  # registration (reads whiteip)

    def on_open(self) -> None:
        self.peer_ip = self.peer.rpartition(":")[0]

    def on_close(self) -> None:
        if self.linked is not None:
            self.lan.unlink(self.linked)

    @handles(SS_LOGINSERVER_LOGIN)
    def on_register(self, request: SsLoginServerLogin) -> None:
        if self.linked is not None or self.task is not None:
            raise ProtocolViolation("double_register", "second SS_LOGINSERVER_LOGIN on one link")
        self.task = asyncio.get_running_loop().create_task(
            self.lan.register(self, request.ServerType, request.ServerName)
        )

    @handles(SS_RES_NEW_CLIENT_LOGIN)
    def on_handoff_answer(self, answer: SsResNewClientLogin) -> None:
        if self.linked is None:
            raise ProtocolViolation("not_registered", "SS_RES_NEW_CLIENT_LOGIN before registering")
        self.lan.on_answer(self.linked, answer.AccountNo, answer.Parameter)


class LanSide:
    """The LAN listener, the registry of linked servers, the hand-offs in flight."""

    def __init__(self, store: AccountStore, host: str, port: int) -> None:
        self.store = store
        self.listener = SessionServer(
            "login-lan",
            lambda deps: LinkSession(deps, self),
            lan_framing(),
            host,
            port,
            ServerLimits(max_sessions=MAX_LINKS, idle_timeout=0),
        )
        self.links: list[LinkedServer] = []
        self.pending: dict[int, PendingLogin] = {}
        self.stale_answers = 0
        self.rejected_links = 0
        self._parameters = itertools.count(int(time.time()) << 20)
        self._links_changed = asyncio.Event()
        #: Called when a server links or unlinks (the login server announces it).
        self.on_links_changed: Callable[[], None] = _nothing

    @property
    def port(self) -> int:
        return self.listener.port

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()

    def linked(self, server_type: ServerType) -> list[LinkedServer]:
        return [s for s in self.links if s.type == server_type]

    async def wait_links(self, game: int, timeout: float = 10.0) -> None:
        """Wait until exactly ``game`` game servers are linked (tools, tests, demo)."""
        async with asyncio.timeout(timeout):
            while len(self.linked(ServerType.GAME)) != game:
                self._links_changed.clear()
                await self._links_changed.wait()

    # --- registration -------------------------------------------------------------------
    async def register(self, session: LinkSession, server_type: int, name: str) -> None:
        try:
            trusted = await self.store.trusted_ips()
        except StoreError as exc:
            log.warning("%s: registration refused: cannot read whiteip (%s)", session.peer, exc)
            session.abort("whiteip_unavailable")
            return
        if trusted and session.peer_ip not in {ip.strip() for ip in trusted}:
            self.rejected_links += 1
            log.warning(
                "%s: server %r refused: %s is not in the whiteip table",
                session.peer,
                name,
                session.peer_ip,
            )
            session.abort("not_whitelisted")
            return
        if session.closed:
            return
        if server_type not in (ServerType.GAME, ServerType.CHAT, ServerType.MONITOR):
            session.protocol_error("bad_server_type", f"ServerType {server_type}")
            return
        linked = LinkedServer(session, ServerType(server_type), name)
        session.linked = linked
        self.links.append(linked)
        self._links_changed.set()
        self.on_links_changed()
        log.info(
            "%s server %r linked from %s (clients go to %s:%d)",
            linked.type.name.lower(),
            name,
            session.peer,
            *linked.address,
        )

    def unlink(self, linked: LinkedServer) -> None:
        if linked in self.links:
            self.links.remove(linked)
            self._links_changed.set()
            self.on_links_changed()
            log.warning("server %r (%s) unlinked", linked.name, linked.session.peer)
        for parameter, pending in list(self.pending.items()):
            if linked in pending.waiting:
                pending.waiting.discard(linked)
                self._maybe_done(parameter, pending)

    # --- hand-offs ----------------------------------------------------------------------
    async def hand_off(
        self, account_no: int, key: bytes, targets: set[LinkedServer]
    ) -> PendingLogin:
        """Send the key to ``targets`` and wait until each answered or went away."""
        parameter = next(self._parameters)
        pending = PendingLogin(account_no, set(targets))
        self.pending[parameter] = pending
        handoff = SS_REQ_NEW_CLIENT_LOGIN.build(account_no, key, parameter)
        try:
            for target in targets:
                target.session.send(handoff)
            await pending.done
        finally:
            self.pending.pop(parameter, None)
        return pending

    def on_answer(self, linked: LinkedServer, account_no: int, parameter: int) -> None:
        pending = self.pending.get(parameter)
        if pending is None or pending.account_no != account_no or linked not in pending.waiting:
            self.stale_answers += 1
            return
        pending.waiting.discard(linked)
        pending.answered.append(linked)
        self._maybe_done(parameter, pending)

    def _maybe_done(self, parameter: int, pending: PendingLogin) -> None:
        if not pending.waiting and not pending.done.done():
            del self.pending[parameter]
            pending.done.set_result(None)
