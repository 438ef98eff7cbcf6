"""Game (echo) server: handlers for CS_GAME_REQ_LOGIN / ECHO / HEARTBEAT.

Standalone mode accepts any key ("virtual login", as the original does without
a login server). Linked mode (see ``servers.game_link``) accepts only the key a
login server handed over for that account.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from serverlink.net.framing import net_framing
from serverlink.net.server import ServerLimits, SessionServer
from serverlink.net.session import ProtocolViolation, Session
from serverlink.net.stats import NetStats
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.echo import ECHO_FRAME_SIZE, answer_echo_batch
from serverlink.protocol.packets import (
    CS_GAME_REQ_ECHO,
    CS_GAME_REQ_HEARTBEAT,
    CS_GAME_REQ_LOGIN,
    CS_GAME_RES_ECHO,
    CS_GAME_RES_LOGIN,
)
from serverlink.protocol.status import GameLoginStatus

log = logging.getLogger("serverlink.game")

_LOGIN = CS_GAME_REQ_LOGIN.struct
_LOGIN_SIZE = CS_GAME_REQ_LOGIN.size
_ECHO_SIZE = CS_GAME_REQ_ECHO.size
_ECHO_RES_TYPE = CS_GAME_RES_ECHO.type_bytes
_HEARTBEAT_SIZE = CS_GAME_REQ_HEARTBEAT.size


@dataclass
class GameConfig:
    host: str = "127.0.0.1"
    port: int = 12211
    codec: NetCodec = field(default_factory=NetCodec)
    limits: ServerLimits = field(default_factory=ServerLimits)
    client_version: int = 1
    reuse_port: bool = False


class GameStats:
    __slots__ = ("login_fail", "logins")

    def __init__(self) -> None:
        self.logins = 0
        self.login_fail = 0


class EchoSession(Session):
    """One client of the game server."""

    def __init__(self, server: GameServer) -> None:
        super().__init__()
        self.server = server
        self.account_no: int | None = None
        self.login_pending = False  # linked mode: key accepted, status being written
        self._code = server.config.codec.code

    def data_received(self, data: bytes) -> None:
        # Steady state: a logged-in client's read made only of echo requests is
        # answered by the batch fast path (protocol/echo.py) in a third of the
        # generic path's work. Anything else, or any doubt, takes the generic path.
        count = len(data) // ECHO_FRAME_SIZE
        if count and self.account_no is not None and not self._pending and not self.closed:
            replies = answer_echo_batch(data, count, self._code)
            if replies is not None:
                self.active = True
                stats = self.stats
                stats.packets_in += count
                stats.packets_out += count
                assert self.transport is not None
                self.transport.write(replies)
                rest = len(data) - count * ECHO_FRAME_SIZE
                if rest:
                    super().data_received(data[-rest:])
                return
        super().data_received(data)

    def on_close(self) -> None:
        if self.account_no is not None:
            self.server.on_logout(self)


def _on_login(session: Session, payload: bytes) -> None:
    assert isinstance(session, EchoSession)
    if session.account_no is not None or session.login_pending:
        raise ProtocolViolation("double_login", "second CS_GAME_REQ_LOGIN on one connection")
    if len(payload) != _LOGIN_SIZE:
        raise ProtocolViolation(
            "bad_size", f"CS_GAME_REQ_LOGIN of {len(payload)} bytes, expected {_LOGIN_SIZE}"
        )
    _, account_no, key, version = _LOGIN.unpack(payload)
    session.server.on_login(session, account_no, key, version)


def _on_echo(session: Session, payload: bytes) -> None:
    # The hottest function of the server: no parsing beyond the size check,
    # the reply is the request with the type word changed.
    if session.account_no is None:  # type: ignore[attr-defined]
        raise ProtocolViolation("echo_before_login", "CS_GAME_REQ_ECHO before login")
    if len(payload) != _ECHO_SIZE:
        raise ProtocolViolation(
            "bad_size", f"CS_GAME_REQ_ECHO of {len(payload)} bytes, expected {_ECHO_SIZE}"
        )
    session.send(_ECHO_RES_TYPE + payload[2:])


def _on_heartbeat(session: Session, payload: bytes) -> None:
    # The read itself refreshed the idle timer; only the layout is checked.
    if len(payload) != _HEARTBEAT_SIZE:
        raise ProtocolViolation("trailing_bytes", "CS_GAME_REQ_HEARTBEAT with trailing bytes")


EchoSession.handlers = {
    CS_GAME_REQ_LOGIN.type: _on_login,
    CS_GAME_REQ_ECHO.type: _on_echo,
    CS_GAME_REQ_HEARTBEAT.type: _on_heartbeat,
}


class GameServer:
    """The game server: a SessionServer of EchoSessions plus the login policy.

    Standalone: every login is accepted. Subclassed for linked mode.
    """

    name = "game"

    def __init__(self, config: GameConfig, stats: NetStats | None = None) -> None:
        self.config = config
        self.game_stats = GameStats()
        self.listener = SessionServer(
            self.name,
            lambda: EchoSession(self),
            net_framing(config.codec),
            config.host,
            config.port,
            config.limits,
            stats,
            reuse_port=config.reuse_port,
        )
        self.stats = self.listener.stats

    async def start(self) -> None:
        await self.listener.start()
        log.info("game server listening on %s:%d", self.config.host, self.listener.port)

    async def stop(self) -> None:
        await self.listener.stop()

    @property
    def port(self) -> int:
        return self.listener.port

    # --- login policy (overridden by the linked server) ------------------------------
    def on_login(self, session: EchoSession, account_no: int, key: bytes, version: int) -> None:
        session.account_no = account_no
        self.game_stats.logins += 1
        session.send(CS_GAME_RES_LOGIN.build(GameLoginStatus.OK, account_no))

    def on_logout(self, session: EchoSession) -> None:
        pass

    def snapshot(self) -> dict[str, object]:
        snap = self.stats.snapshot()
        snap["logins"] = self.game_stats.logins
        snap["login_fail"] = self.game_stats.login_fail
        snap["max_sessions"] = self.config.limits.max_sessions
        return snap
