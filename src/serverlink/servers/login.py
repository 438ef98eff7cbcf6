"""Login (auth) server: vouches for each client's session key to the game/chat
server it sends the client to (the "systemlink" flow of PROTOCOL.md).

Client side (Net frame): CS_LOGIN_REQ_LOGIN -> account check in the store ->
placement picks one linked game server and one chat server (``servers.placement``)
-> the key is handed to those only (``servers.lan``), the next one tried when one
does not answer in time -> CS_LOGIN_RES_LOGIN Status 1 with their addresses, then
the client connection is closed. A deployment may have game servers, chat
servers or both: the kinds it has must each take the client; an address field
of a kind with no linked server is empty. Logins that time out, or whose
account database does not answer, get a clear answer or are dropped; none
waits forever. A client address with too many failed logins is answered
Status 0 without a database read for a cooling-off time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from serverlink.batch import TurnBatcher
from serverlink.errors import StartupError
from serverlink.logs import OutageLog
from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session, SessionDeps, handles
from serverlink.net.tls import TlsConfig
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import net_framing
from serverlink.protocol.packets import CS_LOGIN_REQ_LOGIN, CS_LOGIN_RES_LOGIN, CsLoginReqLogin
from serverlink.protocol.status import LoginStatus, ServerType
from serverlink.servers.failed_logins import FAILED_LOGIN, FailedLogins
from serverlink.servers.lan import LanSide, LinkedServer
from serverlink.servers.link import LOGIN_TIMEOUT
from serverlink.servers.login_stats import LOGIN_SCREEN, LoginStats, linked_rows
from serverlink.servers.placement import Placement
from serverlink.servers.releases import Releases
from serverlink.store import AccountRecord, AccountStore, StoreError
from serverlink.store.config import StoreConfig
from serverlink.store.keys import KeyStoreUnavailable, open_key_store
from serverlink.store.url import mask_url

log = logging.getLogger("serverlink.login")

NO_ADDRESS = ("", 0)

__all__ = ["LOGIN_SCREEN", "LoginConfig", "LoginServer", "build_login_server"]


@dataclass(frozen=True, slots=True)
class LoginConfig:
    host: str = "127.0.0.1"
    port: int = 8091  # client side
    #: Address of the server-to-server side; None: ``host``.
    lan_host: str | None = None
    lan_port: int = 8090  # server-to-server side
    store: StoreConfig = field(default_factory=StoreConfig)
    codec: NetCodec = field(default_factory=NetCodec)
    limits: ServerLimits = field(default_factory=ServerLimits)
    #: A login not completed within this time is dropped; handed-over keys
    #: expire after it on the linked servers.
    login_timeout: float = LOGIN_TIMEOUT
    #: Where keys wait for their client ("memory", or a redis:// URL shared with
    #: the game and chat servers: the login server puts the keys of the servers
    #: that proved they use it there itself, without the LAN hand-off).
    key_store: str = "memory"
    #: Addresses given to clients; when None, the address a linked server
    #: announced in its ServerName ("name@ip:port"), else its peer IP.
    game_addr: tuple[str, int] | None = None
    chat_addr: tuple[str, int] | None = None
    #: Let servers link from any address even while whiteip is empty (else
    #: loopback only then); logged as a warning at start.
    lan_allow_any: bool = False
    #: Mutual TLS on the LAN port (serverlink servers only; original C++
    #: servers speak plain TCP and are trusted by whiteip).
    lan_tls: TlsConfig | None = None
    #: Seconds a LAN connection has to register before it is closed.
    lan_register_deadline: float = 5.0
    #: A linked server that does not answer a hand-off within this many seconds
    #: is skipped for that login (the next one is tried, or Status 6).
    handoff_timeout: float = 2.0
    #: Seconds after a server's link went away before the accounts it claimed
    #: are released (and, at start, those of servers of an earlier run).
    release_after: float = 30.0
    #: Failed logins (wrong key, unknown account) from one address within
    #: ``login_fail_window`` seconds before it cools off; 0: no limit.
    login_fail_limit: int = 20
    login_fail_window: float = 60.0
    #: Seconds a cooling address is answered Status 0 without a database read.
    login_cooldown: float = 60.0
    #: Load tests with the original dummies only: accounts numbered below this
    #: log in with any key (theirs is random), which is handed on to the game and
    #: chat servers, as the original login server did; 0: off (every key checked).
    dummy_accounts_below: int = 0
    reuse_port: bool = False
    worker_index: int = 0


def _no_event(name: str, data: Any) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    """What CS_LOGIN_RES_LOGIN says; ID and nickname only with Status 1 (a wrong
    key must not reveal whose account it was)."""

    status: LoginStatus
    user_id: str = ""
    nickname: str = ""
    game: tuple[str, int] = NO_ADDRESS
    chat: tuple[str, int] = NO_ADDRESS


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
        self.authenticated = True  # the request came: the login timeout bounds the rest
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
        client_limits = replace(
            config.limits, idle_timeout=min(config.limits.idle_timeout, config.login_timeout)
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
        self.lan = LanSide(self.store, config, open_key_store(config.key_store))
        self.key_store_log = OutageLog(log, "key store")
        self.placement = Placement()
        self.releases = Releases(self.store, config.release_after)
        self.lan.gone_hooks.append(self.releases.gone)
        self.lan.back_hooks.append(self.releases.back)
        self.failed_logins = FailedLogins(
            config.login_fail_limit, config.login_fail_window, config.login_cooldown
        )
        self.lan.on_links_changed = self._announce_links
        #: Events for whoever runs the server (in a worker process: the
        #: supervisor): ``lan`` {"port": p} when the LAN side listens (port 0 picks
        #: one), ``links`` {"game": n, "chat": m} when the linked servers change.
        self.on_event: Callable[[str, Any], None] = _no_event
        self.stats = self.clients.stats

    async def _read_accounts(
        self, batch: dict[int, None]
    ) -> dict[int, AccountRecord | StoreError | None]:
        found = await self.store.get_accounts(list(batch))
        return {acc: found.get(acc) for acc in batch}

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Bind both ports first (a second login server started by mistake fails
        here, before it touches anything), then the store; statuses are not
        cleared: the claims of servers that do not link again within
        ``release_after`` are released then."""
        try:
            await self.lan.start()
            self.on_event("lan", {"port": self.lan.port})
            await self.clients.start()
        except OSError:
            await self.lan.stop()
            await self.store.close()
            raise
        try:
            await self.store.connect()
        except StoreError as exc:
            await self.clients.stop()
            await self.lan.stop()
            await self.store.close()
            raise StartupError(f"account database {self.store.display_url}: {exc}") from None
        await self.releases.start()
        if self.config.lan_allow_any:
            log.warning(
                "--lan-allow-any: servers may link from any address while whiteip is empty; "
                "a linked server receives every login's session key"
            )
        if self.config.dummy_accounts_below > 0:
            log.warning(
                "dummy_accounts_below=%d: accounts numbered below it log in with ANY key; "
                "for load tests with the original dummy clients only",
                self.config.dummy_accounts_below,
            )

    def describe(self) -> str:
        """The start line's words: what this server is and what it uses."""
        return (
            f"login server; servers link on {self.lan.listener.host}:{self.lan.port}"
            f"{' (TLS)' if self.config.lan_tls else ''}; keys in {mask_url(self.config.key_store)}"
            f"; accounts in {self.store.display_url}"
        )

    async def stop(self) -> None:
        await self.releases.stop()
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
        ip = session.peer.rpartition(":")[0]
        try:
            if self.failed_logins.cooling(ip, time.monotonic()):
                self.failed_logins.cooling_refusals += 1
                answer = Answer(LoginStatus.FAIL)
            else:
                async with asyncio.timeout(self.config.login_timeout):
                    answer = await self._check_and_hand_off(account_no, key)
                if answer.status in FAILED_LOGIN:
                    self.failed_logins.failed(ip, time.monotonic())
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
        status = answer.status
        stats.by_status[status.name] += 1
        if status == LoginStatus.OK:
            stats.completed(time.perf_counter() - started)
        game, chat = answer.game, answer.chat
        session.send(
            CS_LOGIN_RES_LOGIN.build(
                account_no,
                status,
                answer.user_id,
                answer.nickname,
                game[0],
                game[1],
                chat[0],
                chat[1],
            )
        )
        # The reply is queued on the transport; close() sends it before closing.
        session.close("login_done")

    async def _check_and_hand_off(self, account_no: int, key: bytes) -> Answer:
        try:
            record = await self.accounts.submit(account_no, None)
        except StoreError as exc:  # unavailable, or a broken row: either way no answer
            self.login_stats.db_errors += 1
            log.warning("login of account %d failed: account database: %s", account_no, exc)
            return Answer(LoginStatus.DB_UNAVAILABLE)
        if record is None:
            return Answer(LoginStatus.ACCOUNT_MISS)
        if record.session_key is None:
            return Answer(LoginStatus.SESSION_MISS)
        if record.status is None:
            return Answer(LoginStatus.STATUS_MISS)
        # Constant time: how much of a guessed key matched must not show in timing.
        key_checked = account_no >= self.config.dummy_accounts_below
        if key_checked and not hmac.compare_digest(record.session_key, key):
            return Answer(LoginStatus.FAIL)
        if record.status != 0:
            return Answer(LoginStatus.GAME)
        if record.key_seconds_left is not None:
            refused = await self._spend_key(record, key)
            if refused is not None:
                return refused
        games = self.lan.linked(ServerType.GAME)
        chats = self.lan.linked(ServerType.CHAT)
        if not games and not chats:
            return Answer(LoginStatus.NOSERVER)
        # Each kind the deployment has must take the client; both hand-offs at
        # once when it has both (gather makes a task of each: not for one).
        try:
            if games and chats:
                game, chat = await asyncio.gather(
                    self._place(account_no, key, games), self._place(account_no, key, chats)
                )
            else:
                game = await self._place(account_no, key, games) if games else None
                chat = await self._place(account_no, key, chats) if chats else None
        except KeyStoreUnavailable as exc:
            self.key_store_log.failed(exc, "logins are answered Status 7")
            return Answer(LoginStatus.DB_UNAVAILABLE)
        self.key_store_log.answered()
        if (games and game is None) or (chats and chat is None):
            return Answer(LoginStatus.NOSERVER)
        return Answer(
            LoginStatus.OK,
            record.user_id,
            record.nickname,
            self.config.game_addr or (game.address if game else NO_ADDRESS),
            self.config.chat_addr or (chat.address if chat else NO_ADDRESS),
        )

    async def _spend_key(self, record: AccountRecord, key: bytes) -> Answer | None:
        """A key that expires (issued by the web API) works until then, and once:
        it is cleared before the hand-off, so a replayed key is refused as a wrong
        one. None: spent by this login; else the refusal."""
        stats = self.login_stats
        if record.key_seconds_left is not None and record.key_seconds_left <= 0:
            stats.keys_expired += 1
            return Answer(LoginStatus.FAIL)
        try:
            spent = await self.store.revoke_key(record.account_no, key)
        except StoreError as exc:
            stats.db_errors += 1
            log.warning("login of account %d: spending its key: %s", record.account_no, exc)
            return Answer(LoginStatus.DB_UNAVAILABLE)
        if spent:
            return None
        stats.keys_reused += 1  # another login with this key spent it first
        return Answer(LoginStatus.FAIL)

    async def _place(
        self, account_no: int, key: bytes, servers: list[LinkedServer]
    ) -> LinkedServer | None:
        """Hand the key to the best server that answers in time; None if none does."""
        for server in self.placement.order(servers):
            # Counted before the key goes: the logins of a burst (all ordered before
            # any hand-off ended) spread over the servers instead of all going to
            # the one that looked emptiest at its last report.
            self.placement.placed(server)
            try:
                delivered = await self.lan.handoffs.deliver(account_no, key, server)
            except BaseException:
                self.placement.unplaced(server)
                raise
            if delivered:
                return server
            self.placement.unplaced(server)
        return None

    # --- monitor ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        s = self.login_stats
        snap: dict[str, Any] = self.stats.snapshot()
        snap.update(self.clients.load())
        snap.update(
            max_sessions=self.config.limits.max_sessions,
            logins=s.success,
            login_requests=s.requests,
            login_by_status=dict(s.by_status),
            login_timeouts=s.timeouts,
            login_time_avg_ms=(s.time_total / s.success * 1000) if s.success else 0.0,
            login_time_min_ms=(s.time_min or 0.0) * 1000,
            login_time_max_ms=s.time_max * 1000,
            stale_answers=self.lan.handoffs.stale_answers,
            handoff_timeouts=self.lan.handoffs.handoff_timeouts,
            keys_put=self.lan.handoffs.keys_put,
            key_store_batches=self.lan.handoffs.keys.snapshot().get("key_store_batches", 0),
            key_store_outages=self.key_store_log.outages,
            silent_links=self.lan.silent_links,
            accounts_released=self.releases.released,
            cooling_refusals=self.failed_logins.cooling_refusals,
            keys_expired=s.keys_expired,
            keys_reused=s.keys_reused,
            db_errors=s.db_errors,
            linked_game=len(self.lan.linked(ServerType.GAME)),
            linked_chat=len(self.lan.linked(ServerType.CHAT)),
            rejected_links=self.lan.rejected_links,
            pending_handoffs=len(self.lan.handoffs.pending),
            linked=linked_rows(self.lan.links),
            **s.times.snapshot("login_time"),
        )
        return snap


def build_login_server(config: LoginConfig) -> LoginServer:
    """Builder of the login server (module level: worker processes import it)."""
    return LoginServer(config)
