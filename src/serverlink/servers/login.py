"""Login (auth) server: vouches for each client's session key to the linked
game/chat servers (the "systemlink" flow of PROTOCOL.md).

Client side (Net frame): CS_LOGIN_REQ_LOGIN -> account check in the store ->
SS_REQ_NEW_CLIENT_LOGIN to every linked server with a Parameter unique to this
attempt -> once each has answered SS_RES_NEW_CLIENT_LOGIN, CS_LOGIN_RES_LOGIN
Status 1 with the addresses, then the client connection is closed.

LAN side (LAN frame): game/chat servers register with SS_LOGINSERVER_LOGIN (only
from ``whiteip`` addresses when that table is not empty) and answer hand-offs.
A link that drops is forgotten at once: logins then get Status 6 (NOSERVER).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from serverlink.errors import StartupError
from serverlink.net.framing import lan_framing, net_framing
from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.packets import (
    CS_LOGIN_REQ_LOGIN,
    CS_LOGIN_RES_LOGIN,
    SS_LOGINSERVER_LOGIN,
    SS_REQ_NEW_CLIENT_LOGIN,
    SS_RES_NEW_CLIENT_LOGIN,
    PacketError,
)
from serverlink.protocol.status import LoginStatus, ServerType
from serverlink.store import AccountStore, StoreError, open_store
from serverlink.store.base import MAX_BATCH, AccountRecord

log = logging.getLogger("serverlink.login")

DEFAULT_GAME_PORT = 12211
DEFAULT_CHAT_PORT = 50000


@dataclass
class LoginConfig:
    host: str = "0.0.0.0"
    port: int = 8091  # client side
    lan_host: str = "0.0.0.0"
    lan_port: int = 8090  # server-to-server side
    db_url: str = "sqlite:///serverlink-accounts.db"
    codec: NetCodec = field(default_factory=NetCodec)
    limits: ServerLimits = field(default_factory=ServerLimits)
    login_timeout: float = 60.0
    # Addresses given to clients; when None, the address a linked server
    # announced in its ServerName ("name@ip:port"), else its peer IP.
    game_addr: tuple[str, int] | None = None
    chat_addr: tuple[str, int] | None = None
    db_timeout: float = 5.0
    db_pool_max: int = 10
    reuse_port: bool = False


def parse_announced_address(name: str) -> tuple[str, int] | None:
    """serverlink game/chat servers register as ``name@ip:port`` so the login
    server can tell clients where they listen; other servers' names carry none."""
    _, at, addr = name.rpartition("@")
    host, colon, port = addr.rpartition(":")
    if not at or not colon or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


class AccountLoader:
    """Reads accounts for the logins of one event-loop turn with one statement.

    At a thousand logins a second, a statement per login costs the login
    server and the database more CPU than everything else on the login path
    (the driver's per-statement work dominates). Requests that arrive while
    ``max_in_flight`` reads are running wait and go out together in the next
    one, so batches grow with the load and stay single under light load.
    """

    def __init__(self, store: AccountStore, max_in_flight: int = 4) -> None:
        self.store = store
        self.max_in_flight = max_in_flight
        self._waiting: dict[int, list[asyncio.Future[AccountRecord | None]]] = {}
        self._reads: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self.statements = 0

    async def get(self, account_no: int) -> AccountRecord | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AccountRecord | None] = loop.create_future()
        self._waiting.setdefault(account_no, []).append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._waiting and len(self._reads) < self.max_in_flight:
            accounts = list(itertools.islice(self._waiting, MAX_BATCH))
            batch = {acc: self._waiting.pop(acc) for acc in accounts}
            task = asyncio.get_running_loop().create_task(self._read(batch))
            self._reads.add(task)
            task.add_done_callback(self._read_done)

    def _read_done(self, task: asyncio.Task[None]) -> None:
        self._reads.discard(task)
        self._flush()

    async def _read(self, batch: dict[int, list[asyncio.Future[AccountRecord | None]]]) -> None:
        try:
            found = await self.store.get_accounts(list(batch))
        except StoreError as exc:
            for futures in batch.values():
                for f in futures:
                    if not f.done():  # a client that left cancelled its future
                        f.set_exception(exc)
            return
        self.statements += 1
        for acc, futures in batch.items():
            record = found.get(acc)
            for f in futures:
                if not f.done():
                    f.set_result(record)


class LinkedServer:
    """One game/chat server registered on the LAN side."""

    __slots__ = ("address", "name", "session", "type")

    def __init__(self, session: LinkSession, server_type: int, name: str) -> None:
        self.session = session
        self.type = server_type
        self.name = name
        default_port = DEFAULT_GAME_PORT if server_type == ServerType.GAME else DEFAULT_CHAT_PORT
        self.address = parse_announced_address(name) or (session.peer_ip, default_port)


class PendingLogin:
    """One hand-off in flight, keyed by its Parameter."""

    __slots__ = ("account_no", "answered_game", "done", "waiting")

    def __init__(self, account_no: int, waiting: set[LinkedServer]) -> None:
        self.account_no = account_no
        self.waiting = waiting
        self.answered_game: LinkedServer | None = None
        self.done = asyncio.get_running_loop().create_future()


class LoginStats:
    def __init__(self) -> None:
        self.requests = 0
        self.success = 0
        self.by_status: Counter[str] = Counter()
        self.timeouts = 0
        self.stale_answers = 0
        self.db_errors = 0
        self.rejected_links = 0
        self.time_total = 0.0
        self.time_min: float | None = None
        self.time_max = 0.0

    def completed(self, seconds: float) -> None:
        self.success += 1
        self.time_total += seconds
        self.time_max = max(self.time_max, seconds)
        self.time_min = seconds if self.time_min is None else min(self.time_min, seconds)


class LoginClientSession(Session):
    """A client on the login server's client port."""

    def __init__(self, server: LoginServer) -> None:
        super().__init__()
        self.server = server
        self.task: asyncio.Task[None] | None = None

    def on_close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


def _on_login_request(session: Session, payload: bytes) -> None:
    assert isinstance(session, LoginClientSession)
    if session.task is not None:
        raise ProtocolViolation("double_login", "second CS_LOGIN_REQ_LOGIN on one connection")
    try:
        request = CS_LOGIN_REQ_LOGIN.parse(payload)
    except PacketError as exc:
        raise ProtocolViolation(exc.reason, str(exc)) from None
    session.task = asyncio.create_task(
        session.server.login(session, request.AccountNo, request.SessionKey)
    )


LoginClientSession.handlers = {CS_LOGIN_REQ_LOGIN.type: _on_login_request}


class LinkSession(Session):
    """A game/chat server on the login server's LAN port."""

    def __init__(self, server: LoginServer) -> None:
        super().__init__()
        self.server = server
        self.linked: LinkedServer | None = None
        self.peer_ip = ""
        self.task: asyncio.Task[None] | None = None  # registration (reads whiteip)

    def on_open(self) -> None:
        self.peer_ip = self.peer.rpartition(":")[0]

    def on_close(self) -> None:
        if self.linked is not None:
            self.server.unlink(self.linked)


def _on_register(session: Session, payload: bytes) -> None:
    assert isinstance(session, LinkSession)
    if session.linked is not None or session.task is not None:
        raise ProtocolViolation("double_register", "second SS_LOGINSERVER_LOGIN on one link")
    try:
        request = SS_LOGINSERVER_LOGIN.parse(payload)
    except PacketError as exc:
        raise ProtocolViolation(exc.reason, str(exc)) from None
    session.task = asyncio.create_task(
        session.server.register(session, request.ServerType, request.ServerName)
    )


def _on_handoff_answer(session: Session, payload: bytes) -> None:
    assert isinstance(session, LinkSession)
    if session.linked is None:
        raise ProtocolViolation("not_registered", "SS_RES_NEW_CLIENT_LOGIN before registering")
    try:
        answer = SS_RES_NEW_CLIENT_LOGIN.parse(payload)
    except PacketError as exc:
        raise ProtocolViolation(exc.reason, str(exc)) from None
    session.server.on_answer(session.linked, answer.AccountNo, answer.Parameter)


LinkSession.handlers = {
    SS_LOGINSERVER_LOGIN.type: _on_register,
    SS_RES_NEW_CLIENT_LOGIN.type: _on_handoff_answer,
}


class LoginServer:
    name = "login"

    def __init__(self, config: LoginConfig, store: AccountStore | None = None) -> None:
        self.config = config
        self.store = store or open_store(
            config.db_url, timeout=config.db_timeout, pool_max=config.db_pool_max
        )
        self.login_stats = LoginStats()
        self.accounts = AccountLoader(self.store)
        # Clients that have not completed within the login timeout are dropped
        # by the idle sweeper too (they send nothing after their request).
        client_limits = ServerLimits(
            max_sessions=config.limits.max_sessions,
            idle_timeout=min(config.limits.idle_timeout, config.login_timeout),
            send_buffer_limit=config.limits.send_buffer_limit,
        )
        self.clients = SessionServer(
            "login",
            lambda: LoginClientSession(self),
            net_framing(config.codec),
            config.host,
            config.port,
            client_limits,
            reuse_port=config.reuse_port,
        )
        self.lan = SessionServer(
            "login-lan",
            lambda: LinkSession(self),
            lan_framing(),
            config.lan_host,
            config.lan_port,
            ServerLimits(max_sessions=256, idle_timeout=0),
        )
        self.stats = self.clients.stats
        self.links: list[LinkedServer] = []
        self.pending: dict[int, PendingLogin] = {}
        self._parameters = itertools.count(int(time.time()) << 20)
        self._round_robin = itertools.count()
        self._links_changed = asyncio.Event()

    def linked_count(self, server_type: ServerType = ServerType.GAME) -> int:
        return sum(1 for s in self.links if s.type == server_type)

    async def wait_links(self, game: int, timeout: float = 10.0) -> None:
        """Wait until exactly ``game`` game servers are linked (tools, tests, demo)."""

        async def wait() -> None:
            while self.linked_count(ServerType.GAME) != game:
                self._links_changed.clear()
                await self._links_changed.wait()

        await asyncio.wait_for(wait(), timeout)

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.store.connect()
            cleared = await self.store.reset_statuses()
        except StoreError as exc:
            await self.store.close()
            raise StartupError(f"account database {self.store.display_url}: {exc}") from None
        if cleared:
            log.info("cleared %d account statuses left in game by an earlier run", cleared)
        await self.lan.start()
        await self.clients.start()
        log.info(
            "login server: clients on %s:%d, servers on %s:%d, accounts in %s",
            self.config.host,
            self.clients.port,
            self.config.lan_host,
            self.lan.port,
            self.store.display_url,
        )

    async def stop(self) -> None:
        await self.clients.stop()
        await self.lan.stop()
        await self.store.close()

    @property
    def port(self) -> int:
        return self.clients.port

    @property
    def lan_port(self) -> int:
        return self.lan.port

    # --- LAN side ---------------------------------------------------------------------
    async def register(self, session: LinkSession, server_type: int, name: str) -> None:
        try:
            trusted = await self.store.trusted_ips()
        except StoreError as exc:
            log.warning("%s: registration refused: cannot read whiteip (%s)", session.peer, exc)
            session.abort("whiteip_unavailable")
            return
        if trusted and session.peer_ip not in {ip.strip() for ip in trusted}:
            self.login_stats.rejected_links += 1
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
        linked = LinkedServer(session, server_type, name)
        session.linked = linked
        self.links.append(linked)
        self._links_changed.set()
        log.info(
            "%s server %r linked from %s (clients go to %s:%d)",
            ServerType(server_type).name.lower(),
            name,
            session.peer,
            *linked.address,
        )

    def unlink(self, linked: LinkedServer) -> None:
        if linked in self.links:
            self.links.remove(linked)
            self._links_changed.set()
            log.warning("server %r (%s) unlinked", linked.name, linked.session.peer)
        for parameter, pending in list(self.pending.items()):
            if linked in pending.waiting:
                pending.waiting.discard(linked)
                self._maybe_done(parameter, pending)

    def on_answer(self, linked: LinkedServer, account_no: int, parameter: int) -> None:
        pending = self.pending.get(parameter)
        if pending is None or pending.account_no != account_no or linked not in pending.waiting:
            self.login_stats.stale_answers += 1
            return
        pending.waiting.discard(linked)
        if linked.type == ServerType.GAME and pending.answered_game is None:
            pending.answered_game = linked
        self._maybe_done(parameter, pending)

    def _maybe_done(self, parameter: int, pending: PendingLogin) -> None:
        if not pending.waiting and not pending.done.done():
            del self.pending[parameter]
            pending.done.set_result(None)

    # --- client side ------------------------------------------------------------------
    async def login(self, session: LoginClientSession, account_no: int, key: bytes) -> None:
        stats = self.login_stats
        stats.requests += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.login_timeout):
                status, record_id, nickname, game, chat = await self._check_and_hand_off(
                    account_no, key
                )
        except TimeoutError:
            stats.timeouts += 1
            log.warning(
                "%s: login of account %d not completed within %.0f s; disconnected",
                session.peer,
                account_no,
                self.config.login_timeout,
            )
            session.abort("login_timeout")
            return
        except Exception as exc:  # a bug: this client goes, the server keeps serving
            self.stats.count_error("internal_error")
            log.error(
                "%s: login of account %d failed (%s: %s); disconnected",
                session.peer,
                account_no,
                type(exc).__name__,
                exc,
            )
            session.abort("internal_error")
            return
        stats.by_status[status.name] += 1
        if status == LoginStatus.OK:
            stats.completed(time.perf_counter() - started)
        session.send(
            CS_LOGIN_RES_LOGIN.build(
                account_no, status, record_id, nickname, game[0], game[1], chat[0], chat[1]
            )
        )
        # The reply is queued on the transport; close() sends it before closing.
        session.close("login_done")

    async def _check_and_hand_off(
        self, account_no: int, key: bytes
    ) -> tuple[LoginStatus, str, str, tuple[str, int], tuple[str, int]]:
        none = ("", 0)
        try:
            record = await self.accounts.get(account_no)
        except StoreError as exc:  # unavailable, or a broken schema: either way no answer
            self.login_stats.db_errors += 1
            log.warning(
                "login of account %d failed: account database unavailable: %s", account_no, exc
            )
            return LoginStatus.DB_UNAVAILABLE, "", "", none, none
        if record is None:
            return LoginStatus.ACCOUNT_MISS, "", "", none, none
        if record.session_key is None:
            return LoginStatus.SESSION_MISS, record.user_id, record.nickname, none, none
        if record.status is None:
            return LoginStatus.STATUS_MISS, record.user_id, record.nickname, none, none
        if record.session_key != key:
            return LoginStatus.FAIL, record.user_id, record.nickname, none, none
        if record.status != 0:
            return LoginStatus.GAME, record.user_id, record.nickname, none, none
        targets = {s for s in self.links if s.type in (ServerType.GAME, ServerType.CHAT)}
        if not any(s.type == ServerType.GAME for s in targets):
            return LoginStatus.NOSERVER, record.user_id, record.nickname, none, none

        parameter = next(self._parameters)
        pending = PendingLogin(account_no, targets)
        self.pending[parameter] = pending
        handoff = SS_REQ_NEW_CLIENT_LOGIN.build(account_no, key, parameter)
        try:
            for target in targets:
                target.session.send(handoff)
            await pending.done
        finally:
            self.pending.pop(parameter, None)
        if pending.answered_game is None:  # every game server went away meanwhile
            return LoginStatus.NOSERVER, record.user_id, record.nickname, none, none
        game = self.config.game_addr or pending.answered_game.address
        chat = self.config.chat_addr or self._chat_address()
        return LoginStatus.OK, record.user_id, record.nickname, game, chat

    def _chat_address(self) -> tuple[str, int]:
        chats = [s for s in self.links if s.type == ServerType.CHAT]
        if not chats:
            return ("", 0)
        return chats[next(self._round_robin) % len(chats)].address

    # --- monitor ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        s = self.login_stats
        snap: dict[str, Any] = self.stats.snapshot()
        snap.update(
            max_sessions=self.config.limits.max_sessions,
            logins=s.success,
            login_requests=s.requests,
            login_by_status=dict(s.by_status),
            login_timeouts=s.timeouts,
            login_time_avg_ms=(s.time_total / s.success * 1000) if s.success else 0.0,
            login_time_min_ms=(s.time_min or 0.0) * 1000,
            login_time_max_ms=s.time_max * 1000,
            stale_answers=s.stale_answers,
            db_errors=s.db_errors,
            linked_game=self.linked_count(ServerType.GAME),
            linked_chat=self.linked_count(ServerType.CHAT),
            rejected_links=s.rejected_links,
            pending_handoffs=len(self.pending),
        )
        return snap
