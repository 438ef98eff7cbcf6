"""Outgoing connections: open a session to a server, a simple awaitable frame
client (tools, tests), and a link that stays up with reconnect/backoff (the
server-to-server LAN link). Knows nothing of logins or games."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from serverlink.net.framing import Framing
from serverlink.net.session import Handler, Session
from serverlink.net.stats import NetStats

log = logging.getLogger("serverlink.net")

S = TypeVar("S", bound=Session)


async def open_session(
    factory: Callable[[], S],
    framing: Framing,
    host: str,
    port: int,
    stats: NetStats | None = None,
    timeout: float = 5.0,
) -> S:
    """Connect and return the session once the connection is made."""
    loop = asyncio.get_running_loop()

    def make() -> S:
        session = factory()
        session.framing = framing
        session.stats = stats or NetStats()
        return session

    _, session = await asyncio.wait_for(loop.create_connection(make, host, port), timeout)
    return session


class FrameClient(Session):
    """A session whose received payloads are awaited one by one (tools and tests;
    not a hot path: one queue operation per packet)."""

    handlers: ClassVar[dict[int, Handler]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.lost = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._pending:
            data = self._pending + data
        payloads, end = self.framing.split(data, 0)
        self._pending = data[end:]
        for p in payloads:
            self.received.put_nowait(p)

    def on_close(self) -> None:
        self.lost.set()

    async def recv(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.lost.wait(), timeout)

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


async def connect_frame_client(
    framing: Framing, host: str, port: int, timeout: float = 5.0
) -> FrameClient:
    return await open_session(FrameClient, framing, host, port, timeout=timeout)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, capped (reconnect policy)."""

    initial: float = 0.2
    maximum: float = 5.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**attempt)
        return random.uniform(ceiling / 2, ceiling)


class ReconnectingLink:
    """Keeps one connection to ``host:port`` up: connects, calls ``on_up`` with
    the new session, waits for it to drop, backs off, and connects again, until
    ``stop()``. Each failed attempt is logged once, with the next delay."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], S],
        framing: Framing,
        host: str,
        port: int,
        on_up: Callable[[S], Awaitable[None] | None],
        backoff: Backoff | None = None,
        stats: NetStats | None = None,
    ) -> None:
        self.name = name
        self._factory: Callable[[], Session] = factory
        self.framing = framing
        self.host = host
        self.port = port
        self._on_up: Callable[[Session], Awaitable[None] | None] = on_up  # type: ignore[assignment]
        self.backoff = backoff or Backoff()
        self.stats = stats or NetStats()
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

    def _make(self) -> Session:
        session = self._factory()
        session.framing = self.framing
        session.stats = self.stats
        session.owner = self
        return session

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self.attempts += 1
            try:
                _, session = await asyncio.wait_for(
                    loop.create_connection(self._make, self.host, self.port), 5.0
                )
            except (OSError, TimeoutError) as exc:
                delay = self.backoff.delay(failures)
                failures += 1
                log.warning(
                    "%s: cannot connect to %s:%d (%s); retrying in %.1f s",
                    self.name,
                    self.host,
                    self.port,
                    exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out",
                    delay,
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
            delay = self.backoff.delay(0)
            log.warning(
                "%s: link to %s:%d lost (%s); reconnecting in %.1f s",
                self.name,
                self.host,
                self.port,
                session.close_reason,
                delay,
            )
            await asyncio.sleep(delay)
