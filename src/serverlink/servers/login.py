"""Login (auth) server: vouches for each client's session key to the linked
game/chat servers (the "systemlink" flow of PROTOCOL.md).

Client side (Net frame): CS_LOGIN_REQ_LOGIN -> account check in the store ->
hand-off to the linked servers (``servers.lan``) -> once each has answered,
CS_LOGIN_RES_LOGIN Status 1 with the addresses, then the client connection is
closed. Logins that time out, or whose account database does not answer, get
a clear answer or are dropped; none waits forever.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from serverlink.batch import TurnBatcher
from serverlink.errors import StartupError
from serverlink.monitor.screen import Row, ScreenSpec, breakdown, fmt, of, rate, value
from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session, SessionDeps, handles
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import net_framing
from serverlink.protocol.packets import CS_LOGIN_REQ_LOGIN, CS_LOGIN_RES_LOGIN, CsLoginReqLogin
from serverlink.protocol.status import LoginStatus, ServerType
from serverlink.servers.lan import LanSide
from serverlink.store import AccountRecord, AccountStore, StoreError
from serverlink.store.config import StoreConfig

log = logging.getLogger("serverlink.login")

NO_ADDRESS = ("", 0)


@dataclass(frozen=True, slots=True)
class LoginConfig:
    host: str = "127.0.0.1"
    port: int = 8091  # client side
    lan_host: str = "127.0.0.1"
    lan_port: int = 8090  # server-to-server side
    store: StoreConfig = field(default_factory=StoreConfig)
    codec: NetCodec = field(default_factory=NetCodec)
    limits: ServerLimits = field(default_factory=ServerLimits)
    #: A login not completed within this time is dropped; handed-over keys
    #: expire after it on the linked servers.
    login_timeout: float = 60.0
    #: Addresses given to clients; when None, the address a linked server
    #: announced in its ServerName ("name@ip:port"), else its peer IP.
    game_addr: tuple[str, int] | None = None
    chat_addr: tuple[str, int] | None = None
    reuse_port: bool = False
    worker_index: int = 0


def _no_event(name: str, data: Any) -> None:
    pass


class LoginStats:
    def __init__(self) -> None:
        self.requests = 0
        self.success = 0
        self.by_status: Counter[str] = Counter()
        self.timeouts = 0
        self.db_errors = 0
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

    __slots__ = ("server", "task")

    def __init__(self, deps: SessionDeps, server: LoginServer) -> None:
        super().__init__(deps)
        self.server = server
        self.task: asyncio.Task[None] | None = None

    def on_close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    @handles(CS_LOGIN_REQ_LOGIN)
    def on_login(self, request: CsLoginReqLogin) -> None:
        if self.task is not None:
            raise ProtocolViolation("double_login", "second CS_LOGIN_REQ_LOGIN on one connection")
        self.task = asyncio.get_running_loop().create_task(
            self.server.login(self, request.AccountNo, request.SessionKey)
        )


class LoginServer:
    name = "login"
    #: The registry of linked servers and the hand-offs in flight live in one
    #: process: a second login server is a second process (on its own ports).
    max_workers: ClassVar[int | None] = 1

    def __init__(self, config: LoginConfig, store: AccountStore | None = None) -> None:
        self.config = config
        self.store = store or config.store.open()
        self.login_stats = LoginStats()
        # The logins that arrive together are read with one statement.
        self.accounts: TurnBatcher[int, None, AccountRecord | None] = TurnBatcher(
            self._read_accounts, missing=None
        )
        # Clients that have not completed within the login timeout are dropped
        # by the idle sweeper too (they send nothing after their request).
        client_limits = ServerLimits(
            max_sessions=config.limits.max_sessions,
            idle_timeout=min(config.limits.idle_timeout, config.login_timeout),
            send_buffer_limit=config.limits.send_buffer_limit,
        )
        self.clients = SessionServer(
            "login",
            lambda deps: LoginClientSession(deps, self),
            net_framing(config.codec),
            config.host,
            config.port,
            client_limits,
            reuse_port=config.reuse_port,
        )
        self.lan = LanSide(self.store, config.lan_host, config.lan_port)
        self.lan.on_links_changed = self._announce_links
        #: Events for whoever runs the server (in a worker process: the
        #: supervisor): ``lan`` {"port": p} when the LAN side listens (port 0 picks
        #: one), ``links`` {"game": n, "chat": m} when the linked servers change.
        self.on_event: Callable[[str, Any], None] = _no_event
        self.stats = self.clients.stats
        self._rotation = itertools.count()

    async def _read_accounts(self, batch: dict[int, None]) -> dict[int, AccountRecord | None]:
        found = await self.store.get_accounts(list(batch))
        return {acc: found.get(acc) for acc in batch}

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
        self.on_event("lan", {"port": self.lan.port})
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

    async def wait_links(self, game: int, timeout: float = 10.0) -> None:
        await self.lan.wait_links(game, timeout)

    def _announce_links(self) -> None:
        linked = {"game": len(self.lan.linked(ServerType.GAME))}
        linked["chat"] = len(self.lan.linked(ServerType.CHAT))
        self.on_event("links", linked)

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
        none = NO_ADDRESS
        try:
            record = await self.accounts.submit(account_no, None)
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
        targets = {s for s in self.lan.links if s.type in (ServerType.GAME, ServerType.CHAT)}
        if not any(s.type == ServerType.GAME for s in targets):
            return LoginStatus.NOSERVER, record.user_id, record.nickname, none, none
        pending = await self.lan.hand_off(account_no, key, targets)
        game_server = pending.first_answer(ServerType.GAME)
        if game_server is None:  # every game server went away meanwhile
            return LoginStatus.NOSERVER, record.user_id, record.nickname, none, none
        game = self.config.game_addr or game_server.address
        chat = self.config.chat_addr or self._chat_address()
        return LoginStatus.OK, record.user_id, record.nickname, game, chat

    def _chat_address(self) -> tuple[str, int]:
        chats = self.lan.linked(ServerType.CHAT)
        if not chats:
            return NO_ADDRESS
        return chats[next(self._rotation) % len(chats)].address

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
            stale_answers=self.lan.stale_answers,
            db_errors=s.db_errors,
            linked_game=len(self.lan.linked(ServerType.GAME)),
            linked_chat=len(self.lan.linked(ServerType.CHAT)),
            rejected_links=self.lan.rejected_links,
            pending_handoffs=len(self.lan.pending),
        )
        return snap


def build_login_server(config: LoginConfig) -> LoginServer:
    """Builder of the login server (module level: worker processes import it)."""
    return LoginServer(config)


LOGIN_SCREEN = ScreenSpec(
    "login",
    (
        Row(
            "Sessions",
            (
                of("sessions", "max_sessions"),
                value("sessions_peak", "peak"),
                value("accepted", "accepted"),
            ),
        ),
        Row("Login OK", (value("logins"), rate("logins"), value("login_requests", "requests"))),
        Row(
            "Completion",
            (
                fmt("avg {login_time_avg_ms:.1f} ms"),
                fmt("min {login_time_min_ms:.1f} ms"),
                fmt("max {login_time_max_ms:.1f} ms"),
            ),
        ),
        Row(
            "Linked",
            (
                value("linked_game", "game"),
                value("linked_chat", "chat"),
                value("pending_handoffs", "pending"),
            ),
        ),
        Row(
            "Problems",
            (
                value("login_timeouts", "timeouts"),
                value("stale_answers", "stale answers"),
                value("db_errors", "DB errors"),
                value("rejected_links", "refused links"),
            ),
        ),
        Row("Packets", (rate("packets_in", "in"), rate("packets_out", "out"))),
        breakdown("Results", "login_by_status"),
        breakdown("Disconnects", "disconnects"),
        breakdown("Protocol errors", "errors"),
    ),
)
