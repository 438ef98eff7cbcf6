"""Chat server: CS_CHAT_REQ_LOGIN / SECTOR_MOVE / MESSAGE / HEARTBEAT on a
sector grid (``servers.sectors``: where players are, and the fan-out).

Standalone (``config.link is None``) accepts any key, as the original does
without a login server. Linked, it composes ``LoginLinks`` as a chat-type
server (ServerType.CHAT) that claims no accounts (status id 0; the game server
claims them) and reports its load: a login succeeds only with the key the login
server handed over for that account, which it takes (once).

A player is in no sector until its first move: it hears nothing, and what it
says goes nowhere. Every other rule break closes that connection only, counted
by reason: a sector off the grid, an AccountNo that is not the session's, a
MessageLen that does not match the frame, is odd or would not fit the reply's
frame, packets before login, a second login.

Flood control: at most ``flood_messages`` messages per player in any
``flood_window`` seconds (a sliding window); past that the account is muted
for ``mute_seconds``: its messages are dropped and counted, not echoed, and it
stays connected. The mute belongs to the account, so reconnecting does not
lift it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session, SessionDeps, handles, handles_raw
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import net_framing
from serverlink.protocol.packets import (
    CS_CHAT_REQ_HEARTBEAT,
    CS_CHAT_REQ_LOGIN,
    CS_CHAT_REQ_MESSAGE,
    CS_CHAT_REQ_SECTOR_MOVE,
    CS_CHAT_RES_LOGIN,
    CS_CHAT_RES_MESSAGE,
    CS_CHAT_RES_SECTOR_MOVE,
    CsChatReqLogin,
    encode_wstr,
)
from serverlink.protocol.status import ChatLoginStatus, ServerType
from serverlink.servers.chat_stats import CHAT_SCREEN, ChatStats
from serverlink.servers.link import KeyedLogins, LinkConfig, Load
from serverlink.servers.links import LoginLinks, linked_to
from serverlink.servers.sectors import GRID_SIZE, Sector, SectorGrid
from serverlink.store.keys import KeyStoreUnavailable

log = logging.getLogger("serverlink.chat")

__all__ = ["CHAT_SCREEN", "ChatConfig", "ChatServer", "ChatSession", "build_chat_server"]

_ACCOUNT = struct.Struct("<q")
_SECTOR = struct.Struct("<HH")
_MOVE_SIZE = CS_CHAT_REQ_SECTOR_MOVE.size
_MOVE_REPLY_TYPE = CS_CHAT_RES_SECTOR_MOVE.type_bytes
_MESSAGE_HEAD = CS_CHAT_REQ_MESSAGE.size + 2  # type, AccountNo, MessageLen
_HEARTBEAT_SIZE = CS_CHAT_REQ_HEARTBEAT.size
#: CS_CHAT_RES_MESSAGE without its message: type, AccountNo, ID, Nickname, MessageLen.
REPLY_HEAD_SIZE = CS_CHAT_RES_MESSAGE.size + 2
#: Messages a player may send per flood window (the dummy floods past it).
DEFAULT_FLOOD_MESSAGES = 10
#: Each player keeps the send times of its last flood_messages messages.
MAX_FLOOD_MESSAGES = 1000
#: Mutes kept before the expired ones are pruned.
MUTES_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class ChatConfig:
    host: str = "127.0.0.1"
    port: int = 50000
    codec: NetCodec = field(default_factory=NetCodec)
    limits: ServerLimits = field(default_factory=ServerLimits)
    #: Linked mode: the login server to register with; None: standalone.
    link: LinkConfig | None = None
    #: Messages a player may send in any ``flood_window`` seconds; 0: no limit.
    flood_messages: int = DEFAULT_FLOOD_MESSAGES
    flood_window: float = 1.0
    #: How long a player past the flood limit is muted.
    mute_seconds: float = 10.0
    #: Set by the runner when it runs the server in a worker process.
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.flood_messages <= MAX_FLOOD_MESSAGES:
            raise ValueError(
                f"flood_messages must be 0 (off) to {MAX_FLOOD_MESSAGES}, got {self.flood_messages}"
            )
        if self.flood_window <= 0 or self.mute_seconds < 0:
            raise ValueError("flood_window must be positive and mute_seconds not negative")

    @property
    def max_message_bytes(self) -> int:
        """The longest message whose CS_CHAT_RES_MESSAGE fits a Net frame: a
        longer one could not reach the receivers (their frame limit)."""
        return self.codec.max_payload - REPLY_HEAD_SIZE


class ChatSession(Session):
    """One client of the chat server."""

    __slots__ = (
        "account_bytes",
        "account_no",
        "flood_index",
        "flood_times",
        "login_pending",
        "muted_until",
        "reply_head",
        "sector",
        "server",
    )

    def __init__(self, deps: SessionDeps, server: ChatServer) -> None:
        super().__init__(deps)
        self.server = server
        self.account_no: int | None = None
        #: AccountNo as it is on the wire, to compare requests with.
        self.account_bytes = b""
        #: CS_CHAT_RES_MESSAGE up to the message (type, AccountNo, ID, Nickname),
        #: built once at login: a message's reply is this plus its MessageLen and text.
        self.reply_head = b""
        self.sector: Sector | None = None
        self.login_pending = False
        #: Send times of the last ``flood_messages`` messages (a ring).
        self.flood_times: list[float] = []
        self.flood_index = 0
        self.muted_until = 0.0

    def _require_login(self, what: str) -> None:
        if self.account_no is None:
            raise ProtocolViolation("before_login", f"{what} before login")

    def _check_account(self, payload: bytes, what: str) -> None:
        if payload[2:10] != self.account_bytes:
            raise ProtocolViolation("wrong_account", f"{what} for another AccountNo")

    @handles(CS_CHAT_REQ_LOGIN)
    def on_login(self, request: CsChatReqLogin) -> None:
        if self.account_no is not None or self.login_pending:
            raise ProtocolViolation("double_login", "second CS_CHAT_REQ_LOGIN on one connection")
        self.server.login(self, request)

    @handles_raw(CS_CHAT_REQ_SECTOR_MOVE)
    def on_sector_move(self, payload: bytes) -> None:
        self._require_login("CS_CHAT_REQ_SECTOR_MOVE")
        if len(payload) != _MOVE_SIZE:
            raise ProtocolViolation(
                "bad_size", f"CS_CHAT_REQ_SECTOR_MOVE of {len(payload)} bytes, not {_MOVE_SIZE}"
            )
        self._check_account(payload, "CS_CHAT_REQ_SECTOR_MOVE")
        x, y = _SECTOR.unpack_from(payload, 10)
        grid = self.server.grid
        if x >= grid.size or y >= grid.size:
            raise ProtocolViolation("sector_off_grid", f"sector ({x}, {y}) is off the grid")
        grid.place(self, x, y)
        self.server.chat_stats.moves += 1
        # The answer carries the request's fields unchanged.
        self.send(_MOVE_REPLY_TYPE + payload[2:])

    @handles_raw(CS_CHAT_REQ_MESSAGE)
    def on_message(self, payload: bytes) -> None:
        self._require_login("CS_CHAT_REQ_MESSAGE")
        size = len(payload)
        if size < _MESSAGE_HEAD:
            raise ProtocolViolation("bad_size", f"CS_CHAT_REQ_MESSAGE of {size} bytes")
        self._check_account(payload, "CS_CHAT_REQ_MESSAGE")
        length = payload[10] | (payload[11] << 8)
        if length != size - _MESSAGE_HEAD:
            raise ProtocolViolation(
                "bad_message_length",
                f"MessageLen {length} where {size - _MESSAGE_HEAD} bytes follow",
            )
        if length & 1:
            raise ProtocolViolation("odd_message_length", f"MessageLen {length} is odd")
        if length > self.server.max_message_bytes:
            raise ProtocolViolation(
                "message_too_long",
                f"MessageLen {length} over {self.server.max_message_bytes}",
            )
        self.server.publish(self, payload)

    @handles_raw(CS_CHAT_REQ_HEARTBEAT)
    def on_heartbeat(self, payload: bytes) -> None:
        # The read itself refreshed the idle timer; only the layout is checked.
        self._require_login("CS_CHAT_REQ_HEARTBEAT")
        if len(payload) != _HEARTBEAT_SIZE:
            raise ProtocolViolation("trailing_bytes", "CS_CHAT_REQ_HEARTBEAT with trailing bytes")

    def on_close(self) -> None:
        self.server.logout(self)


class ChatServer:
    """The chat server: a SessionServer of ChatSessions, the grid, the login policy."""

    name = "chat"
    #: The grid lives in one process: a second chat server is a second world.
    max_workers: ClassVar[int | None] = 1

    def __init__(self, config: ChatConfig) -> None:
        self.config = config
        self.chat_stats = ChatStats()
        self.listener = SessionServer(
            self.name,
            lambda deps: ChatSession(deps, self),
            net_framing(config.codec),
            config.host,
            config.port,
            config.limits,
            reuse_port=config.reuse_port,
        )
        self.stats = self.listener.stats
        self.grid = SectorGrid(GRID_SIZE)
        self.max_message_bytes = config.max_message_bytes
        self.link: LoginLinks | None = None
        #: Logged-in players by account (the newest session of an account).
        self.players: dict[int, ChatSession] = {}
        #: Accounts muted until a monotonic time (expired ones pruned now and then).
        self.mutes: dict[int, float] = {}
        self._prune_mutes_at = MUTES_KEPT
        # The flood rule is fixed: its part of the mute line is written once.
        self._mute_line = (
            f"%s: account %d muted for {config.mute_seconds:g} s: "
            f"over {config.flood_messages} messages in {config.flood_window:g} s"
        )
        # Linked logins whose key is being taken.
        self.keyed_logins = KeyedLogins(self.name, self.stats)

    @property
    def port(self) -> int:
        return self.listener.port

    async def start(self) -> None:
        self.grid.bind(asyncio.get_running_loop())
        await self.listener.start()
        if self.config.link is not None:
            self.link = LoginLinks(
                self.config.link,
                ServerType.CHAT,
                (self.config.host, self.port),
                status_id=0,
                load=self._load,
            )
            self.link.start()

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()
        self.keyed_logins.cancel()
        await self.listener.stop()

    def describe(self) -> str:
        """The start line's words: what this server is and what it uses."""
        if self.config.link is None:
            return "chat server, standalone (any key logs in), no account database"
        return f"chat server {linked_to(self.config.link)}, no account database"

    def set_draining(self, draining: bool | None = None) -> bool:
        """``LoginLinks.set_draining`` (SIGUSR1, POST /drain); standalone: never."""
        return self.link.set_draining(draining) if self.link is not None else False

    def _load(self) -> Load:
        return Load(len(self.players), self.config.limits.max_sessions)

    # --- login policy ---------------------------------------------------------------------
    def login(self, session: ChatSession, request: CsChatReqLogin) -> None:
        if self.link is None:  # standalone: any key
            self._accept(session, request)
            return
        # A key store in this process answers at once: the login is done within
        # this read, so a client that sends its first move right behind its
        # login is served. Elsewhere (a shared store) the answer comes later.
        taken = self.link.take_key_now(request.AccountNo, request.SessionKey)
        if taken is None:
            self.keyed_logins.start(session, self._linked_login(session, request))
        else:
            self._key_checked(session, request, taken)

    async def _linked_login(self, session: ChatSession, request: CsChatReqLogin) -> None:
        assert self.link is not None
        try:
            taken = await self.link.take_key(request.AccountNo, request.SessionKey)
        except KeyStoreUnavailable:  # logged once per outage by the link
            session.login_pending = False
            if not session.closed:
                reply = CS_CHAT_RES_LOGIN.build(ChatLoginStatus.FAIL, request.AccountNo)
                self.keyed_logins.refuse(session, request.AccountNo, reply, "key_store_unavailable")
            return
        session.login_pending = False
        if not session.closed:
            self._key_checked(session, request, taken)

    def _key_checked(self, session: ChatSession, request: CsChatReqLogin, taken: bool) -> None:
        if taken:
            self._accept(session, request)
            return
        reply = CS_CHAT_RES_LOGIN.build(ChatLoginStatus.FAIL, request.AccountNo)
        self.keyed_logins.refuse(session, request.AccountNo, reply, "bad_key")

    def _accept(self, session: ChatSession, request: CsChatReqLogin) -> None:
        account_no = request.AccountNo
        session.account_no = account_no
        session.account_bytes = _ACCOUNT.pack(account_no)
        # ID and nickname as the client sent them, up to their first NUL.
        session.reply_head = (
            CS_CHAT_RES_MESSAGE.type_bytes
            + session.account_bytes
            + encode_wstr(request.ID, 20)
            + encode_wstr(request.Nickname, 20)
        )
        session.flood_times = [-math.inf] * self.config.flood_messages
        session.muted_until = self.mutes.get(account_no, 0.0)
        session.authenticated = True
        previous = self.players.get(account_no)
        if previous is not None and previous is not session:
            previous.close("replaced")  # the newer session of an account wins
        self.players[account_no] = session
        self.chat_stats.logins += 1
        session.send(CS_CHAT_RES_LOGIN.build(ChatLoginStatus.OK, account_no))

    def logout(self, session: ChatSession) -> None:
        self.grid.remove(session)
        account_no = session.account_no
        if account_no is not None and self.players.get(account_no) is session:
            del self.players[account_no]

    # --- messages ---------------------------------------------------------------------------
    def publish(self, session: ChatSession, payload: bytes) -> None:
        """Fan a checked CS_CHAT_REQ_MESSAGE out as CS_CHAT_RES_MESSAGE, encoded once."""
        now = time.monotonic()
        stats = self.chat_stats
        if session.muted_until > now:
            stats.messages_muted += 1
            return
        times = session.flood_times
        if times:
            i = session.flood_index
            # times[i] is the send time of the message ``flood_messages`` back.
            if now - times[i] < self.config.flood_window:
                self._mute(session, now)
                stats.messages_muted += 1
                return
            times[i] = now
            session.flood_index = (i + 1) % len(times)
        sector = session.sector
        if sector is None:
            stats.messages_nowhere += 1
            return
        stats.messages_in += 1
        self.grid.publish(sector, session.framing.encode(session.reply_head + payload[10:]))

    def _mute(self, session: ChatSession, now: float) -> None:
        until = now + self.config.mute_seconds
        session.muted_until = until
        assert session.account_no is not None
        if len(self.mutes) >= self._prune_mutes_at:
            # Expired mutes go; the next pruning waits for twice as many, so a
            # crowd of muted accounts costs a scan per doubling, not per mute.
            self.mutes = {acc: t for acc, t in self.mutes.items() if t > now}
            self._prune_mutes_at = max(MUTES_KEPT, 2 * len(self.mutes))
        self.mutes[session.account_no] = until
        self.chat_stats.mutes += 1
        self.stats.problems.info("muted", self._mute_line, session.peer, session.account_no)

    # --- monitor ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = self.stats.snapshot()
        snap.update(self.listener.load())
        s = self.chat_stats
        fanout = self.grid.stats
        occupied, most, mean = self.grid.occupancy()
        now = time.monotonic()
        snap["packets_out"] += fanout.deliveries
        snap.update(
            max_sessions=self.config.limits.max_sessions,
            players=len(self.players),
            logins=s.logins,
            login_fail=self.keyed_logins.refused,
            moves=s.moves,
            sectors_occupied=occupied,
            sector_players_max=most,
            sector_players_mean=mean,
            messages_in=s.messages_in,
            messages_nowhere=s.messages_nowhere,
            messages_muted=s.messages_muted,
            mutes=s.mutes,
            muted=sum(1 for p in self.players.values() if p.muted_until > now),
            deliveries=fanout.deliveries + fanout.handed_over,
            fanout_writes=fanout.writes,
            fanout_turns=fanout.flushes,
        )
        if self.link is not None:
            snap.update(self.link.snapshot())
        return snap


def build_chat_server(config: ChatConfig) -> ChatServer:
    """Builder of the chat server (module level: worker processes import it)."""
    return ChatServer(config)
