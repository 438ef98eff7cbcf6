"""Game (echo) server: handlers for CS_GAME_REQ_LOGIN / ECHO / HEARTBEAT.

Standalone (``config.link is None``) accepts any key ("virtual login", as the
original does without a login server). Linked, it composes ``LoginLinks``
(registration, heartbeats, hand-offs, the key store) and ``AccountClaims`` (the
account's ``status`` = this server's id while it plays here): a login succeeds
only with the key the login server handed over for that account, which it
takes, and only if the database lets this server claim the account.

Each time the login server accepts the link, the server settles its claims
first: the first time it clears the marks of its own earlier run (its status
id was just found unique), later it claims its players again (a login server
that restarted, or released them while the link was away) and drops the
sessions whose accounts another server holds now.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from serverlink.errors import StartupError
from serverlink.monitor.screen import Row, ScreenSpec, breakdown, fmt, standard_rows, value
from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session, SessionDeps, handles, handles_raw
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.echo import ECHO_FRAME_SIZE, answer_echo_batch
from serverlink.protocol.framing import net_framing
from serverlink.protocol.packets import (
    CS_GAME_REQ_ECHO,
    CS_GAME_REQ_HEARTBEAT,
    CS_GAME_REQ_LOGIN,
    CS_GAME_RES_ECHO,
    CS_GAME_RES_LOGIN,
    CsGameReqLogin,
)
from serverlink.protocol.status import GameLoginStatus, ServerType
from serverlink.servers.claims import AccountClaims, Claim
from serverlink.servers.link import KeyedLogins, LinkConfig, Load
from serverlink.servers.links import LoginLinks, linked_to
from serverlink.store import AccountStore, StoreError
from serverlink.store.config import StoreConfig
from serverlink.store.keys import KeyStoreUnavailable

log = logging.getLogger("serverlink.game")

_ECHO_SIZE = CS_GAME_REQ_ECHO.size
_ECHO_RES_TYPE = CS_GAME_RES_ECHO.type_bytes
_HEARTBEAT_SIZE = CS_GAME_REQ_HEARTBEAT.size


@dataclass(frozen=True, slots=True)
class GameConfig:
    host: str = "127.0.0.1"
    port: int = 12211
    codec: NetCodec = field(default_factory=NetCodec)
    limits: ServerLimits = field(default_factory=ServerLimits)
    #: CS_GAME_REQ_LOGIN Version a client must send (Status 3 otherwise).
    client_version: int = 1
    reuse_port: bool = False
    #: Linked mode: the login server to register with; None: standalone.
    link: LinkConfig | None = None
    #: Linked mode: the account database (the login server's).
    store: StoreConfig = field(default_factory=StoreConfig)
    #: Linked mode: the non-zero ``status`` marking accounts in game here; a
    #: restarted server clears the rows holding its own id. Workers add their index.
    server_id: int = 1
    #: Set by the process supervisor in worker processes (1, 2, ...).
    worker_index: int = 0

    @property
    def status_id(self) -> int:
        return self.server_id + self.worker_index

    @property
    def shares_port(self) -> bool:
        """Standalone workers share the port (SO_REUSEPORT). Linked workers are
        linked servers of their own, each on its own port (--port, --port + 1,
        ...): a handed-over key is kept by the one worker the login server
        placed the client on, and the client is sent to that worker's address."""
        return self.link is None


class GameStats:
    __slots__ = ("logins",)

    def __init__(self) -> None:
        self.logins = 0


class EchoSession(Session):
    """One client of the game server."""

    __slots__ = ("_code", "account_no", "login_pending", "server")

    def __init__(self, deps: SessionDeps, server: GameServer) -> None:
        super().__init__(deps)
        self.server = server
        self.account_no: int | None = None
        self.login_pending = False  # linked mode: key being taken, status being written
        self._code = server.config.codec.code

    def data_received(self, data: bytes) -> None:
        # Steady state: a logged-in client's read made only of echo requests is
        # answered by the batch fast path (protocol/echo.py) in a third of the
        # generic path's work. Anything else, or any doubt, takes the generic path.
        count = len(data) // ECHO_FRAME_SIZE
        if count and self.account_no is not None and not self.tail and not self.closed:
            replies = answer_echo_batch(data, count, self._code)
            transport = self.transport
            if replies is not None and transport is not None:
                self.active = True
                stats = self.stats
                stats.packets_in += count
                stats.packets_out += count
                transport.write(replies)
                rest = len(data) - count * ECHO_FRAME_SIZE
                if rest:
                    super().data_received(data[-rest:])
                return
        super().data_received(data)

    @handles(CS_GAME_REQ_LOGIN)
    def on_login(self, request: CsGameReqLogin) -> None:
        if self.account_no is not None or self.login_pending:
            raise ProtocolViolation("double_login", "second CS_GAME_REQ_LOGIN on one connection")
        self.server.login(self, request)

    @handles_raw(CS_GAME_REQ_ECHO)
    def on_echo(self, payload: bytes) -> None:
        # The hottest handler: no parsing beyond the size check, the reply is
        # the request with the type word changed.
        if self.account_no is None:
            raise ProtocolViolation("echo_before_login", "CS_GAME_REQ_ECHO before login")
        if len(payload) != _ECHO_SIZE:
            raise ProtocolViolation(
                "bad_size", f"CS_GAME_REQ_ECHO of {len(payload)} bytes, expected {_ECHO_SIZE}"
            )
        self.send(_ECHO_RES_TYPE + payload[2:])

    @handles_raw(CS_GAME_REQ_HEARTBEAT)
    def on_heartbeat(self, payload: bytes) -> None:
        # The read itself refreshed the idle timer; only the layout is checked.
        if len(payload) != _HEARTBEAT_SIZE:
            raise ProtocolViolation("trailing_bytes", "CS_GAME_REQ_HEARTBEAT with trailing bytes")

    def on_close(self) -> None:
        if self.account_no is not None:
            self.server.logout(self, self.account_no)


class GameServer:
    """The game server: a SessionServer of EchoSessions and the login policy."""

    name = "game"
    #: Game servers scale with worker processes (each links and claims apart).
    max_workers: ClassVar[int | None] = None

    def __init__(self, config: GameConfig, store: AccountStore | None = None) -> None:
        self.config = config
        self.game_stats = GameStats()
        self.listener = SessionServer(
            self.name,
            lambda deps: EchoSession(deps, self),
            net_framing(config.codec),
            config.host,
            config.port,
            config.limits,
            reuse_port=config.reuse_port,
        )
        self.stats = self.listener.stats
        self.link: LoginLinks | None = None
        self.claims: AccountClaims | None = None
        self.store: AccountStore | None = None
        if config.link is not None:
            self.store = store or config.store.open()
            self.claims = AccountClaims(
                self.store, config.status_id, recheck_after=2 * config.store.timeout
            )
        self.in_game: dict[int, EchoSession] = {}
        self._settled_once = False
        # Linked logins whose key and status are being checked.
        self.keyed_logins = KeyedLogins(self.name, self.stats)

    @property
    def logins_in_progress(self) -> set[asyncio.Task[None]]:
        return self.keyed_logins.in_progress

    @property
    def port(self) -> int:
        return self.listener.port

    async def start(self) -> None:
        """Bind first (a server started by mistake on a busy port fails before it
        touches anything), then the store, then the link."""
        try:
            await self.listener.start()
        except OSError:
            if self.store is not None:
                await self.store.close()
            raise
        if self.store is not None:
            try:
                await self.store.connect()
            except StoreError as exc:
                await self.listener.stop()
                await self.store.close()
                raise StartupError(f"account database {self.store.display_url}: {exc}") from None
        if self.config.link is not None:
            self.link = LoginLinks(
                self.config.link,
                ServerType.GAME,
                (self.config.host, self.port),
                status_id=self.config.status_id,
                load=self._load,
                on_accepted=self._settle_claims,
            )
            self.link.start()

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()
        await self.listener.stop()  # sessions end -> releases queued
        if self.claims is not None:
            try:
                await self.claims.drain(self.config.store.timeout * 2)
            except TimeoutError:
                log.warning("some account statuses could not be cleared before exit")
            self.claims.close()
        if self.store is not None:
            await self.store.close()

    def describe(self) -> str:
        """The start line's words: what this server is and what it uses."""
        if self.config.link is None:
            return "game server, standalone (any key logs in), no account database"
        assert self.store is not None
        return (
            f"game server {linked_to(self.config.link)} as status id "
            f"{self.config.status_id}, accounts in {self.store.display_url}"
        )

    def set_draining(self, draining: bool | None = None) -> bool:
        """``LoginLinks.set_draining`` (SIGUSR1, POST /drain); standalone: never."""
        return self.link.set_draining(draining) if self.link is not None else False

    def _load(self) -> Load:
        return Load(len(self.in_game), self.config.limits.max_sessions)

    async def _settle_claims(self) -> None:
        """Run when the login server accepts the link; logins wait for it."""
        assert self.store is not None and self.claims is not None
        status_id = self.config.status_id
        while True:
            try:
                if not self._settled_once:
                    cleared = await self.store.reset_statuses(only=status_id)
                    if cleared:
                        log.info("cleared %d accounts left in game here by an earlier run", cleared)
                    self._settled_once = True
                    return
                lost = await self.claims.reassert()
                break
            except StoreError as exc:
                log.warning("cannot settle the account claims yet (%s); retrying", exc)
                await asyncio.sleep(1.0)
        for account_no in lost:
            session = self.in_game.pop(account_no, None)
            if session is not None:
                log.warning("account %d is in game on another server now: dropped here", account_no)
                session.close("claimed_elsewhere")

    # --- login policy -----------------------------------------------------------------
    def login(self, session: EchoSession, request: CsGameReqLogin) -> None:
        account_no = request.AccountNo
        if self.link is None:  # standalone: virtual login
            session.account_no = account_no
            session.authenticated = True
            self.game_stats.logins += 1
            session.send(CS_GAME_RES_LOGIN.build(GameLoginStatus.OK, account_no))
            return
        if request.Version != self.config.client_version:
            self._refuse(session, account_no, GameLoginStatus.VERSION_MISMATCH, "version_mismatch")
            return
        self.keyed_logins.start(
            session, self._linked_login(session, account_no, request.SessionKey)
        )

    def _refuse(
        self, session: EchoSession, account_no: int, status: GameLoginStatus, reason: str
    ) -> None:
        reply = CS_GAME_RES_LOGIN.build(status, account_no)
        self.keyed_logins.refuse(session, account_no, reply, reason)

    async def _linked_login(self, session: EchoSession, account_no: int, key: bytes) -> None:
        assert self.link is not None and self.claims is not None
        try:
            taken = await self.link.take_key(account_no, key)
        except KeyStoreUnavailable:  # logged once per outage by the link
            taken = None
        if not taken:
            session.login_pending = False
            reason = "key_store_unavailable" if taken is None else "bad_key"
            self._refuse(session, account_no, GameLoginStatus.FAIL, reason)
            return
        await self.link.accepted.wait()  # the claims are settled
        previous = self.in_game.get(account_no)
        if previous is not None and previous is not session:
            # The same account logged in again here: the newer session wins.
            previous.close("replaced")
        self.in_game[account_no] = session
        result = await self.claims.claim(account_no)
        session.login_pending = False
        if result is not Claim.CLAIMED:
            if self.in_game.get(account_no) is session:
                del self.in_game[account_no]
            if result is Claim.SUPERSEDED:  # the client left before it was written
                return
            reason = "in_game_elsewhere" if result is Claim.TAKEN else "db_unavailable"
            self._refuse(session, account_no, GameLoginStatus.FAIL, reason)
            return
        if session.closed:
            # Gone while its claim was being written: release it behind the claim.
            self.logout(session, account_no)
            return
        session.account_no = account_no
        session.authenticated = True
        self.game_stats.logins += 1
        session.send(CS_GAME_RES_LOGIN.build(GameLoginStatus.OK, account_no))

    def logout(self, session: EchoSession, account_no: int) -> None:
        if self.claims is not None and self.in_game.get(account_no) is session:
            del self.in_game[account_no]
            self.claims.release(account_no)

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = self.stats.snapshot()
        snap.update(self.listener.load())
        snap["logins"] = self.game_stats.logins
        snap["login_fail"] = self.keyed_logins.refused
        snap["max_sessions"] = self.config.limits.max_sessions
        if self.link is not None and self.claims is not None:
            snap.update(self.link.snapshot())
            snap.update(
                in_game=len(self.in_game),
                status_write_failures=self.claims.failures,
                releases_pending=self.claims.pending_releases,
            )
        return snap


def build_game_server(config: GameConfig) -> GameServer:
    """Builder of the game server (module level: worker processes import it)."""
    return GameServer(config)


GAME_SCREEN = ScreenSpec("game", standard_rows())

LINKED_GAME_SCREEN = ScreenSpec(
    "game",
    (
        *standard_rows(),
        Row(
            "Login server",
            (
                fmt("{login_link}"),
                value("link_reconnects", "reconnects"),
                value("handoffs", "hand-offs"),
            ),
        ),
        Row(
            "Keys waiting",
            (
                fmt(
                    "{keys_waiting:,} handed over by the login server, client not yet arrived "
                    "(each expires after --login-timeout)"
                ),
            ),
        ),
        Row(
            "Accounts",
            (
                value("in_game", "in game"),
                value("status_write_failures", "DB failures"),
                value("releases_pending", "releases waiting for the DB"),
            ),
        ),
        breakdown("Refused logins", "refusals"),
    ),
)


def game_screen(config: GameConfig) -> ScreenSpec:
    return GAME_SCREEN if config.link is None else LINKED_GAME_SCREEN
