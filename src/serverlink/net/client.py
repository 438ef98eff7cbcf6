"""Outgoing connections: open a session to a server, a simple awaitable frame
client (tools, tests), and a link that stays up with reconnect/backoff (the
server-to-server LAN link). Knows nothing of logins or games."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from serverlink.net.session import Session, SessionDeps
from serverlink.net.stats import NetStats
from serverlink.protocol.framing import Framing
from serverlink.retry import LINK_RETRY, Retry

log = logging.getLogger("serverlink.net")

S = TypeVar("S", bound=Session)


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
    again, until ``stop()``. The first failure of a streak is logged; the
    following ones only at debug level, so a peer that stays down for hours
    costs one warning."""

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
    ) -> None:
        self.name = name
        self._factory: Callable[[SessionDeps], Session] = factory
        self.host = host
        self.port = port
        self._on_up: Callable[[Session], Awaitable[None] | None] = on_up  # type: ignore[assignment]
        self.retry = retry
        self.stats = stats or NetStats()
        self.deps = SessionDeps(framing, self.stats, self)
        self.session: Session | None = None
        self.connected = asyncio.Event()
        self.attempts = 0
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Event = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.session is not None:
            self.session.close("link_stopped")

    # SessionOwner: the link owns its one session and learns of its loss here.
    def admit(self, session: Session) -> bool:
        return True

    def release(self, session: Session) -> None:
        self._lost.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self.attempts += 1
            try:
                async with asyncio.timeout(5.0):
                    _, session = await loop.create_connection(
                        lambda: self._factory(self.deps), self.host, self.port
                    )
            except (OSError, TimeoutError) as exc:
                failures += 1
                delay = self.retry.delay(failures)
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "%s: cannot connect to %s:%d (%s); retrying with backoff",
                    self.name,
                    self.host,
                    self.port,
                    exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out",
                )
                await asyncio.sleep(delay)
                continue
            if failures or self.reconnects:
                log.info("%s: connected to %s:%d", self.name, self.host, self.port)
            failures = 0
            self._lost.clear()
            self.session = session
            self.connected.set()
            result = self._on_up(session)
            if result is not None:
                await result
            await self._lost.wait()
            self.connected.clear()
            self.session = None
            self.reconnects += 1
            log.warning(
                "%s: link to %s:%d lost (%s); reconnecting",
                self.name,
                self.host,
                self.port,
                session.close_reason,
            )
            await asyncio.sleep(self.retry.delay(1))
