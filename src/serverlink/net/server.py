"""Listener: accepts connections into sessions, enforces the session cap, sweeps
idle sessions, and shuts down gracefully. Knows nothing of logins or games."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from serverlink.net.framing import Framing
from serverlink.net.session import Session
from serverlink.net.stats import NetStats

log = logging.getLogger("serverlink.net")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_sessions: int = 20000
    idle_timeout: float = 40.0  # seconds without a byte from the peer; 0 disables
    send_buffer_limit: int = 1 << 20  # bytes queued for a peer before it is dropped
    backlog: int = 4096


class SessionServer:
    """Accepts connections on one address, one ``Session`` per connection."""

    def __init__(
        self,
        name: str,
        session_factory: Callable[[], Session],
        framing: Framing,
        host: str,
        port: int,
        limits: ServerLimits | None = None,
        stats: NetStats | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.name = name
        self.session_factory = session_factory
        self.framing = framing
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.stats = stats or NetStats()
        self.reuse_port = reuse_port
        self.sessions: set[Session] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    # --- SessionOwner -------------------------------------------------------------
    def admit(self, session: Session) -> bool:
        if len(self.sessions) >= self.limits.max_sessions:
            self.stats.refused_over_cap += 1
            log.warning(
                "%s: connection from %s refused: %d sessions is the cap (max_sessions)",
                self.name,
                session.peer,
                self.limits.max_sessions,
            )
            return False
        self.sessions.add(session)
        self._all_closed.clear()
        stats = self.stats
        stats.accepted += 1
        stats.sessions = n = len(self.sessions)
        if n > stats.sessions_peak:
            stats.sessions_peak = n
        return True

    def release(self, session: Session) -> None:
        self.sessions.discard(session)
        self.stats.sessions = len(self.sessions)
        if not self.sessions:
            self._all_closed.set()

    # --- lifecycle --------------------------------------------------------------------
    def _make_session(self) -> Session:
        session = self.session_factory()
        session.framing = self.framing
        session.stats = self.stats
        session.send_buffer_limit = self.limits.send_buffer_limit
        session.owner = self
        return session

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._make_session,
            self.host,
            self.port,
            backlog=self.limits.backlog,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.limits.idle_timeout > 0:
            self._sweeper = asyncio.create_task(self._sweep_idle(), name=f"{self.name}-idle")

    async def _sweep_idle(self) -> None:
        """Once a second: a session that received nothing for idle_timeout seconds
        is dropped. Per read the session only sets a flag, so the cost is here,
        once a second, not per packet."""
        limit = max(1, round(self.limits.idle_timeout))
        while True:
            await asyncio.sleep(1.0)
            idle: list[Session] = []
            for s in self.sessions:
                if s.active:
                    s.active = False
                    s.idle_ticks = 0
                else:
                    s.idle_ticks += 1
                    if s.idle_ticks >= limit:
                        idle.append(s)
            for s in idle:
                log.info("%s: %s dropped: nothing received for %d s", self.name, s.peer, limit)
                s.abort("idle_timeout")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, close every session (sending what is queued), wait
        for them to go, up to ``grace`` seconds."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for s in list(self.sessions):
            s.close("server_shutdown")
        try:
            await asyncio.wait_for(self._all_closed.wait(), grace)
        except TimeoutError:
            for s in list(self.sessions):
                s.abort("server_shutdown")

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port
