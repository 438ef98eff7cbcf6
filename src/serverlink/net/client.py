"""Outgoing connections: open a session to a server, a simple awaitable frame
client (tools, tests), and a link that stays up with reconnect/backoff (the
server-to-server LAN link). Knows nothing of logins or games."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from serverlink.aio import cancel_and_wait
from serverlink.net.server import enable_keepalive
from serverlink.net.session import Session, SessionDeps
from serverlink.net.stats import NetStats
from serverlink.protocol.framing import Framing
from serverlink.retry import LINK_RETRY, Retry

log = logging.getLogger("serverlink.net")

S = TypeVar("S", bound=Session)

#: Seconds between the reminders that a link is still down (its first failure
#: is a warning, the next attempts are logged at debug level).
REMIND_EVERY = 60.0


async def open_session(
    factory: Callable[[SessionDeps], S],
    framing: Framing,
    host: str,
    port: int,
    stats: NetStats | None = None,
    timeout: float = 5.0,
) -> S:
    """Connect and return the session once the connection is made."""
    loop = asyncio.get_running_loop()
    deps = SessionDeps(framing, stats or NetStats())
    async with asyncio.timeout(timeout):
        _, session = await loop.create_connection(lambda: factory(deps), host, port)
    return session


class FrameClient(Session):
    """A session whose received payloads are awaited one by one (tools and tests;
    not a hot path: one queue operation per packet)."""

    __slots__ = ("lost", "received")

    def __init__(self, deps: SessionDeps) -> None:
        super().__init__(deps)
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.lost = asyncio.Event()

    def dispatch(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.received.put_nowait(p)

    def on_close(self) -> None:
        self.lost.set()

    async def recv(self, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.received.get()

    async def wait_closed(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self.lost.wait()

    def send_many(self, payloads: list[bytes]) -> None:
        """Several frames in one write (pipelined requests)."""
        self.send_raw(b"".join(self.framing.encode(p) for p in payloads))

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


async def connect_frame_client(
    framing: Framing, host: str, port: int, timeout: float = 5.0
) -> FrameClient:
    return await open_session(FrameClient, framing, host, port, timeout=timeout)


class ReconnectingLink:
    """Keeps one connection to ``host:port`` up: connects, calls ``on_up`` with
    the new session, waits for it to drop, backs off (``retry``), and connects
    again, until ``stop()``.

    The owner calls ``confirm()`` once the peer has accepted the link (a
    registration answered). A link that drops before that counts as a failed
    attempt — the peer refused it — so the backoff keeps growing and the
    refusal is logged once per streak, not once per attempt, and reminded of
    every ``remind_every`` seconds while the streak lasts; a confirmed link
    that drops is logged once and reconnected at once. TCP keepalive is on, so
    a path cut without a FIN is found even while nothing is sent.
    """

    def __init__(
        self,
        name: str,
        factory: Callable[[SessionDeps], S],
        framing: Framing,
        host: str,
        port: int,
        on_up: Callable[[S], Awaitable[None] | None],
        retry: Retry = LINK_RETRY,
        stats: NetStats | None = None,
        ssl_context: ssl.SSLContext | None = None,
        remind_every: float = REMIND_EVERY,
    ) -> None:
        self.name = name
        self.remind_every = remind_every
        self._warned_at = 0.0
        self._factory: Callable[[SessionDeps], Session] = factory
        self.host = host
        self.port = port
        self._on_up: Callable[[Session], Awaitable[None] | None] = on_up  # type: ignore[assignment]
        self.retry = retry
        self.stats = stats or NetStats()
        self.ssl_context = ssl_context
        self.deps = SessionDeps(framing, self.stats, self)
        self.session: Session | None = None
        self.connected = asyncio.Event()
        self.attempts = 0
        self.reconnects = 0
        self.refusals = 0
        self._confirmed = False
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Event = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link-{self.name}")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        if self.session is not None:
            self.session.close("link_stopped")

    def confirm(self) -> None:
        """The peer accepted the link: a later drop is a lost link, not a refusal."""
        self._confirmed = True

    # SessionOwner: the link owns its one session and learns of its loss here.
    def admit(self, session: Session) -> bool:
        return True

    def release(self, session: Session) -> None:
        self._lost.set()

    async def _connect(self) -> Session:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            enable_keepalive(sock)
            await loop.sock_connect(sock, address)
            _, session = await loop.create_connection(
                lambda: self._factory(self.deps),
                sock=sock,
                ssl=self.ssl_context,
                server_hostname=self.host if self.ssl_context is not None else None,
                ssl_handshake_timeout=5.0 if self.ssl_context is not None else None,
            )
        except BaseException:
            sock.close()
            raise
        return session

    async def _run(self) -> None:
        failures = 0
        where = f"{self.host}:{self.port}"
        while True:
            self.attempts += 1
            try:
                async with asyncio.timeout(10.0):
                    session = await self._connect()
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                failures += 1
                if failures == 1:
                    self._warned_at = time.monotonic()
                    log.warning(
                        "%s: cannot connect to %s (%s): is it running there? Retrying quietly "
                        "(a reminder every %.0f s while it is down)",
                        self.name,
                        where,
                        _reason(exc),
                        self.remind_every,
                    )
                elif time.monotonic() - self._warned_at >= self.remind_every:
                    self._warned_at = time.monotonic()
                    log.warning(
                        "%s: still cannot connect to %s (%s) after %d attempts; retrying",
                        self.name,
                        where,
                        _reason(exc),
                        failures,
                    )
                else:
                    log.debug("%s: cannot connect to %s (%s)", self.name, where, _reason(exc))
                await asyncio.sleep(self.retry.delay(failures))
                continue
            if failures:
                log.info("%s: connected to %s", self.name, where)
            self._confirmed = False
            self._lost.clear()
            self.session = session
            self.connected.set()
            result = self._on_up(session)
            if result is not None:
                await result
            await self._lost.wait()
            self.connected.clear()
            self.session = None
            if self._confirmed:
                failures = 0
                self.reconnects += 1
                log.warning(
                    "%s: link to %s lost (%s); reconnecting", self.name, where, session.close_reason
                )
                await asyncio.sleep(self.retry.delay(1))
                continue
            failures += 1
            self.refusals += 1
            log.log(
                logging.WARNING if failures == 1 else logging.DEBUG,
                "%s: %s closed the link before accepting it (%s): refused? Its log says why "
                "(whiteip, a name or server id in use); retrying with backoff",
                self.name,
                where,
                session.close_reason,
            )
            await asyncio.sleep(self.retry.delay(failures))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:  # uvloop's text names no cause
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
