"""Listener: accepts connections into sessions, enforces the session caps
(in all, per client address), drops idle sessions and sessions that do not log
in in time, and shuts down gracefully. Knows nothing of logins or games: a
session's owner marks it ``authenticated`` when its protocol says so."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
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
    #: Concurrent sessions; a connection over the cap is closed at once and counted.
    max_sessions: int = 20000
    #: Seconds without a whole packet from the peer before it is dropped; 0: never.
    idle_timeout: float = 40.0
    #: Bytes queued for a peer that does not read before it is dropped.
    send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT
    #: Seconds a connection has to log in (its server says when it has); 0: no limit.
    login_deadline: float = 10.0
    #: Concurrent sessions from one client address; 0: no limit.
    max_sessions_per_ip: int = 0
    #: TCP keepalive probes on idle connections (server-to-server links): a peer
    #: whose path is cut without a FIN is found in about 25 s.
    tcp_keepalive: bool = False
    backlog: int = 4096


def enable_keepalive(
    sock: socket.socket, idle: int = 10, interval: int = 5, count: int = 3
) -> None:
    """Keepalive probes after ``idle`` s of silence, every ``interval`` s, ``count`` times."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; other systems keep their defaults
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


class ListenError(OSError):
    """A listener could not bind: the OSError, and which listener (its name,
    e.g. ``login-lan``) on which address, for a message naming the right flag."""

    def __init__(self, cause: OSError, listener: str, host: str, port: int) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.listener, self.host, self.port = listener, host, port


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
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.session_factory = session_factory
        self.framing = framing
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.stats = stats or NetStats()
        self.reuse_port = reuse_port
        self.ssl_context = ssl_context
        self.deps = SessionDeps(framing, self.stats, self, self.limits.send_buffer_limit)
        self.sessions: set[Session] = set()
        self._per_ip: dict[str, int] = {}
        #: The end of the sweeper's current second (monotonic), read by admit():
        #: one float a second for every session's ``opened_at``, not one per
        #: session; never before the real connect, so no deadline runs out early.
        self.clock = time.monotonic() + 1.0
        self._sock: socket.socket | None = None
        self._accepting: set[asyncio.Task[tuple[asyncio.BaseTransport, Session]]] = set()
        self._resume_accept: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    # --- SessionOwner -------------------------------------------------------------
    def admit(self, session: Session) -> bool:
        limits = self.limits
        if len(self.sessions) >= limits.max_sessions:
            self.stats.refused_over_cap += 1
            self.stats.problems.warning(
                "over_cap",
                "%s: connection from %s refused: %d sessions is the cap (max_sessions)",
                self.name,
                session.peer,
                limits.max_sessions,
            )
            return False
        if limits.max_sessions_per_ip:
            ip = session.peer.rpartition(":")[0]
            held = self._per_ip.get(ip, 0)
            if held >= limits.max_sessions_per_ip:
                self.stats.refused_over_cap += 1
                self.stats.report(
                    "over_ip_cap",
                    "%s: connection from %s refused: %d sessions from that address is the "
                    "cap (max_sessions_per_ip)",
                    self.name,
                    session.peer,
                    limits.max_sessions_per_ip,
                )
                return False
            self._per_ip[ip] = held + 1
        session.opened_at = self.clock  # one float for the sessions of a second
        self.sessions.add(session)
        self._all_closed.clear()
        stats = self.stats
        stats.accepted += 1
        stats.sessions = n = len(self.sessions)
        if n > stats.sessions_peak:
            stats.sessions_peak = n
        return True

    def release(self, session: Session) -> None:
        if self.limits.max_sessions_per_ip and session in self.sessions:
            ip = session.peer.rpartition(":")[0]
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)
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
        try:
            sock = socket.create_server(
                address[:2],
                family=family,
                backlog=self.limits.backlog,
                reuse_port=self.reuse_port,
            )
        except OSError as exc:
            raise ListenError(exc, self.name, self.host, self.port) from exc
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        loop.add_reader(sock.fileno(), self._accept_ready)
        self._sweeper = asyncio.create_task(self._sweep(), name=f"{self.name}-sweep")

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
            if self.limits.tcp_keepalive:
                enable_keepalive(conn)
            if self.ssl_context is None:
                accepted = loop.connect_accepted_socket(self._make_session, conn)
            else:
                accepted = loop.connect_accepted_socket(
                    self._make_session, conn, ssl=self.ssl_context, ssl_handshake_timeout=5.0
                )
            task = loop.create_task(accepted)
            self._accepting.add(task)
            task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[tuple[asyncio.BaseTransport, Session]]) -> None:
        self._accepting.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            return
        if isinstance(exc, ssl.SSLError | TimeoutError) and self.ssl_context is not None:
            self.stats.report(
                "tls_failed", "%s: TLS handshake failed: %s; connection dropped", self.name, exc
            )
        else:
            # The peer went away between accept() and the transport's creation.
            self.stats.count_error("accept_failed")

    def _resume_accepting(self) -> None:
        self._resume_accept = None
        if self._sock is not None:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept_ready)

    async def _sweep(self) -> None:
        """Once a second: drop the sessions that received no whole packet for
        ``idle_timeout`` seconds, and those not logged in ``login_deadline``
        seconds after they connected. Per read a session only sets a flag, so
        the cost is here, once a second, not per packet."""
        limits = self.limits
        idle_limit = max(1, round(limits.idle_timeout)) if limits.idle_timeout > 0 else 0
        deadline = limits.login_deadline
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            self.clock = now + 1.0
            idle: list[Session] = []
            late: list[Session] = []
            for s in self.sessions:
                if deadline and not s.authenticated and now - s.opened_at >= deadline:
                    late.append(s)
                elif not idle_limit:
                    continue
                elif s.active:
                    s.active = False
                    s.idle_ticks = 0
                else:
                    s.idle_ticks += 1
                    if s.idle_ticks >= idle_limit:
                        idle.append(s)
            for s in idle:
                self.stats.problems.info(
                    "idle_timeout",
                    "%s: %s dropped: no packet for %d s",
                    self.name,
                    s.peer,
                    idle_limit,
                )
                s.abort("idle_timeout")
            for s in late:
                self.stats.report(
                    "login_deadline",
                    "%s: %s dropped: not logged in within %g s",
                    self.name,
                    s.peer,
                    deadline,
                )
                s.abort("login_deadline")
            self.stats.problems.flush()

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

    def load(self) -> dict[str, int]:
        """Sessions logged in and bytes waiting in their send buffers, in one
        pass (the monitoring figures; once a second, not per packet)."""
        authenticated = queued = 0
        for s in self.sessions:
            authenticated += s.authenticated
            if s.transport is not None:
                queued += s.transport.get_write_buffer_size()
        return {"authenticated": authenticated, "queued_bytes": queued}

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port
