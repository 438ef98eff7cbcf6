"""Listener: accepts connections into sessions, enforces the session cap, sweeps
idle sessions, and shuts down gracefully. Knows nothing of logins or games."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from serverlink.net.session import DEFAULT_SEND_BUFFER_LIMIT, Session, SessionDeps
from serverlink.net.stats import NetStats
from serverlink.protocol.framing import Framing

log = logging.getLogger("serverlink.net")

#: Connections accepted per wake-up of the listening socket at most.
ACCEPT_BATCH = 1024


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_sessions: int = 20000
    idle_timeout: float = 40.0  # seconds without a byte from the peer; 0 disables
    send_buffer_limit: int = (
        DEFAULT_SEND_BUFFER_LIMIT  # bytes queued for a peer before it is dropped
    )
    backlog: int = 4096


class SessionServer:
    """Accepts connections on one address, one ``Session`` per connection."""

    def __init__(
        self,
        name: str,
        session_factory: Callable[[SessionDeps], Session],
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
        self.deps = SessionDeps(framing, self.stats, self, self.limits.send_buffer_limit)
        self.sessions: set[Session] = set()
        self._sock: socket.socket | None = None
        self._accepting: set[asyncio.Task[tuple[asyncio.BaseTransport, Session]]] = set()
        self._resume_accept: asyncio.TimerHandle | None = None
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
        return self.session_factory(self.deps)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family, _, _, _, address = socket.getaddrinfo(
            self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.create_server(
            address[:2],
            family=family,
            backlog=self.limits.backlog,
            reuse_port=self.reuse_port,
        )
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        loop.add_reader(sock.fileno(), self._accept_ready)
        if self.limits.idle_timeout > 0:
            self._sweeper = asyncio.create_task(self._sweep_idle(), name=f"{self.name}-idle")

    def _accept_ready(self) -> None:
        """Accept every pending connection (up to ACCEPT_BATCH) per wake-up.

        Why not loop.create_server: the libuv bundled with uvloop accepts one
        connection per event-loop iteration, and under load an iteration serving
        thousands of busy sessions takes long, so new clients waited seconds in
        the kernel's accept queue (10,000 clients ramping up got login timeouts;
        plain asyncio did not). Draining the queue here keeps accepts prompt.
        """
        sock = self._sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of file descriptors (EMFILE/ENFILE) or buffers: stop
                # accepting for a moment instead of spinning on a ready socket.
                self.stats.count_error("accept_failed")
                log.warning(
                    "%s: cannot accept connections: %s; pausing accepts for 0.5 s "
                    "(raise the open-files limit, ulimit -n)",
                    self.name,
                    exc.strerror or exc,
                )
                loop.remove_reader(sock.fileno())
                self._resume_accept = loop.call_later(0.5, self._resume_accepting)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(loop.connect_accepted_socket(self._make_session, conn))
            self._accepting.add(task)
            task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[tuple[asyncio.BaseTransport, Session]]) -> None:
        self._accepting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The peer went away between accept() and the transport's creation.
            self.stats.count_error("accept_failed")

    def _resume_accepting(self) -> None:
        self._resume_accept = None
        if self._sock is not None:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept_ready)

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
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._resume_accept is not None:
            self._resume_accept.cancel()
        for task in list(self._accepting):
            task.cancel()
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
