"""One process's share of the dummy's virtual clients (``Worker``), and what a
scenario provides (``Scenario``, ``ClientLink``).

What a virtual client *does* (log in, echo, ...) is a scenario
(``scenario_echo.py``, ``scenario_login.py``, one per ``--mode``); the Worker
gives every scenario the same machinery: it starts the clients (spread over the
ramp-up), reconnects them after a failure or a planned leave, sweeps them once
a second (timeouts, heartbeats, the disconnect rate) and hands a ``Snapshot``
of its ``Meter`` to ``send`` once a second (``run.py`` sends it to the parent
process, or merges it itself with one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from serverlink.dummy.config import SCENARIOS, DummyConfig
from serverlink.dummy.metrics import Gauges, Meter, Snapshot, SnapshotMaker
from serverlink.net.session import Session, SessionDeps
from serverlink.net.stats import NetStats
from serverlink.protocol.framing import net_framing

S = TypeVar("S", bound=Session)


# --- what a scenario provides ---------------------------------------------------------
class ClientLink(Protocol):
    """A virtual client's current connection, as the Worker sees it."""

    @property
    def logged_in(self) -> bool: ...

    def outstanding(self) -> int:
        """Requests sent and not yet answered (the 'reply wait' gauge)."""

    def check(self, now_ns: int) -> None:
        """Once a second: reply timeouts, heartbeats."""

    def finish(self, now_ns: int) -> None:
        """At the end of the run, before the connection is closed: count what
        is overdue (requests that will never be answered now)."""

    def leave(self) -> None:
        """Disconnect on purpose (the disconnect rate); the client reconnects."""

    def shutdown(self) -> None:
        """Disconnect at the end of the run."""


class Scenario(Protocol):
    """What one virtual client does with one connection (or one chain of them,
    e.g. login server then game server)."""

    async def run_once(self, client: VirtualClient) -> bool:
        """Connect, log in, do the work until the connection ends. Returns True
        when it ended in a failure, so the Worker waits reconnect_backoff first."""


ScenarioFactory = Callable[["Worker"], Scenario]


def preflight(config: DummyConfig) -> None:
    """Let the mode's scenario check its inputs (e.g. login mode's key file)
    before any process starts: its optional static ``preflight(config)``
    raises ValueError with a one-line message."""
    check: Callable[[DummyConfig], None] | None = getattr(
        load_scenario(config.mode), "preflight", None
    )
    if check is not None:
        check(config)


def load_scenario(mode: str) -> ScenarioFactory:
    try:
        target = SCENARIOS[mode]
    except KeyError:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(SCENARIOS)}") from None
    module, _, name = target.partition(":")
    factory: ScenarioFactory = getattr(importlib.import_module(module), name)
    return factory


class VirtualClient:
    """One simulated user: a fixed AccountNo (in login mode the client's number;
    its accounts come from the key file) and, while connected, a link."""

    __slots__ = ("account_no", "link", "task")

    def __init__(self, account_no: int) -> None:
        self.account_no = account_no
        self.link: ClientLink | None = None
        self.task: asyncio.Task[None] | None = None


class ScenarioSession(Session):
    """A virtual client's connection, as every scenario's sessions share it: a
    frame or packet that breaks the protocol counts ``packet_error`` (its
    detail ``packet:<error_prefix><reason>``) and drops the connection; a close
    by the server while the run goes on is handed to ``server_closed``; ``done``
    is resolved with the close reason (unless the session resolved it before)."""

    __slots__ = ("done", "meter", "worker")

    error_prefix = ""

    def __init__(self, deps: SessionDeps, worker: Worker) -> None:
        super().__init__(deps)
        self.worker = worker
        self.meter = worker.meter
        self.done: asyncio.Future[str] = worker.loop.create_future()

    def fail(self, reason: str) -> None:
        self.meter.error("packet_error", f"packet:{self.error_prefix}{reason}")
        self.abort(f"protocol:{reason}")

    def protocol_error(self, reason: str, detail: str) -> None:
        # Counted, not logged: a broken server would log once per connection.
        self.fail(reason)

    def server_closed(self, reason: str) -> None:
        """The server closed or reset the connection while the run goes on."""

    # ClientLink: a planned leave (the disconnect rate), the end of the run.
    def leave(self) -> None:
        if not self.closed:
            self.meter.disconnect_planned += 1
            self.close("planned")

    def shutdown(self) -> None:
        self.abort("stop")

    def on_close(self) -> None:
        reason = self.close_reason
        if reason in ("peer_closed", "peer_reset") and not self.worker.stopping:
            self.server_closed(reason)
        if not self.done.done():
            self.done.set_result(reason)


# --- one process's share of the clients --------------------------------------------------
class Worker:
    """Runs the virtual clients with the given account numbers in this event loop.

    It is the ``SessionOwner`` of their sessions (that keeps the 'connected'
    gauge) and calls ``send`` with a Snapshot once a second and a final one
    when stopped. ``index`` of ``processes``: this worker's place in the run
    (a scenario that splits a shared resource, e.g. the key file, uses both).
    """

    def __init__(
        self,
        config: DummyConfig,
        index: int,
        accounts: Sequence[int],
        send: Callable[[Snapshot], None],
        processes: int = 1,
    ) -> None:
        self.config = config
        self.index = index
        self.processes = processes
        # Kept: asyncio.get_running_loop() is a getpid() system call each time,
        # and login mode needs the loop several times per flow.
        self.loop = asyncio.get_running_loop()
        self.meter = Meter()
        self.netstats = NetStats()
        self.deps = SessionDeps(net_framing(config.codec), self.netstats, self)
        self.clients = [VirtualClient(a) for a in accounts]
        self.stopping = False
        self.game_address: tuple[str, int] = (config.game_host, config.game_port)
        self.login_addresses: list[tuple[str, int]] = list(config.login_servers)
        # Round-robin over the login servers, each process from another one.
        self._next_login = index
        self.chat_address: tuple[str, int] = (config.chat_host, config.chat_port)
        self._send = send
        self._snapshots = SnapshotMaker(index, self.meter)
        self._sessions: set[Session] = set()
        self._last_tick = 0.0
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self.scenario = load_scenario(config.mode)(self)

    # --- SessionOwner ------------------------------------------------------------------------
    def admit(self, session: Session) -> bool:
        self._sessions.add(session)
        self._all_closed.clear()
        self.meter.connected += 1
        return True

    def release(self, session: Session) -> None:
        self._sessions.discard(session)
        self.meter.connected -= 1
        if not self._sessions:
            self._all_closed.set()

    # --- for scenarios ------------------------------------------------------------------------
    async def connect(
        self,
        address: tuple[str, int],
        factory: Callable[[SessionDeps], S],
        what: str = "",
        failure: str = "connect_fail",
    ) -> S | None:
        """Open one connection with a fresh session from ``factory``. Counts the
        attempt, and the failure (returning None) in ``failure``; ``what`` names
        the server in the failure's detail ("connect:<what>:timeout")."""
        meter = self.meter
        meter.connect_total += 1

        deps = self.deps
        loop = self.loop
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the connect in a new
            # task, and login mode connects twice per flow, >1,000 flows/s.
            async with asyncio.timeout(self.config.connect_timeout):
                _, session = await loop.create_connection(
                    lambda: factory(deps), address[0], address[1]
                )
        except TimeoutError:
            meter.error(failure, f"connect:{what}:timeout" if what else "connect:timeout")
            return None
        except OSError as exc:
            name = type(exc).__name__
            meter.error(failure, f"connect:{what}:{name}" if what else f"connect:{name}")
            return None
        # No TCP_NODELAY here: asyncio and uvloop set it on every TCP transport
        # (each echo is a small write waiting for its answer; Nagle would hold it).
        return session

    # --- run -------------------------------------------------------------------------------
    async def resolve(self) -> None:
        """Resolve the server names once, not per connect (reconnect storms)."""
        self.game_address = await _resolve(self.game_address)
        if self.config.through_login_server:
            self.login_addresses = [await _resolve(a) for a in self.login_addresses]
        elif self.config.mode == "chat":
            self.chat_address = await _resolve(self.chat_address)

    def next_login_address(self) -> tuple[str, int]:
        """The login server of the next flow: each in turn."""
        addresses = self.login_addresses
        self._next_login += 1
        return addresses[self._next_login % len(addresses)]

    def gauges(self) -> Gauges:
        logged_in = wait = 0
        for c in self.clients:
            link = c.link
            if link is not None:
                logged_in += link.logged_in
                wait += link.outstanding()
        m = self.meter
        return m.connected, logged_in, wait, m.in_login, m.in_game

    async def run(self, stop: asyncio.Event) -> None:
        """Run the clients until ``stop`` is set, then close every connection
        and send the final snapshot."""
        loop = asyncio.get_running_loop()
        start = self._last_tick = loop.time()
        starter = loop.create_task(self._start_clients(start))
        ticker = loop.create_task(self._tick(start))
        try:
            await stop.wait()
        finally:
            self.stopping = True
            starter.cancel()
            ticker.cancel()
            now = time.monotonic_ns()
            for c in self.clients:
                if c.link is not None:
                    c.link.finish(now)
            final = self._snapshots.take(loop.time() - self._last_tick, self.gauges(), final=True)
            for c in self.clients:
                if c.link is not None:
                    c.link.shutdown()
            tasks = [t for t in (starter, ticker, *(c.task for c in self.clients)) if t]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), 2.0)
            self._send(final)

    async def _start_clients(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        ramp = self.config.ramp_up
        total = self.config.clients
        for c in self.clients:
            if ramp > 0:
                # Spread by the global account number, so with several workers
                # the connects of all of them interleave evenly over the ramp.
                delay = start + ramp * (c.account_no - 1) / total - loop.time()
                if delay > 0.001:
                    await asyncio.sleep(delay)
            c.task = loop.create_task(self._client_loop(c))

    async def _client_loop(self, client: VirtualClient) -> None:
        backoff = self.config.reconnect_backoff
        while not self.stopping:
            failed = await self.scenario.run_once(client)
            if failed and not self.stopping:
                # Jitter, so clients that failed together do not retry together.
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))

    async def _tick(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        rate = self.config.disconnect_rate
        next_tick = start + 1.0
        while True:
            await asyncio.sleep(next_tick - loop.time())
            now_ns = time.monotonic_ns()
            for c in self.clients:
                if c.link is not None:
                    c.link.check(now_ns)
            if rate > 0:
                rand = random.random
                for c in self.clients:
                    link = c.link
                    if link is not None and link.logged_in and rand() < rate:
                        link.leave()
            t = loop.time()
            self._send(self._snapshots.take(t - self._last_tick, self.gauges()))
            self._last_tick = t
            next_tick = max(next_tick + 1.0, t + 0.5)


async def _resolve(address: tuple[str, int]) -> tuple[str, int]:
    host, port = address
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if infos:
            return str(infos[0][4][0]), port
    return address


def accounts_of(worker: int, processes: int, clients: int) -> range:
    """Account numbers (from 1) of one worker: strided, so that every worker
    holds early and late numbers alike and the ramp-up interleaves."""
    return range(worker + 1, clients + 1, processes)
