"""The dummy client's engine: connections, counters, processes, run control.

What a virtual client *does* (log in, echo, ...) is a scenario
(``scenario_echo.py``, ``scenario_login.py``, one per ``--mode``); the engine
gives every scenario the same machinery:

- ``Worker``: one process's share of virtual clients. Starts them (spread over
  the ramp-up), reconnects them after a failure or a planned leave, sweeps them
  once a second (timeouts, heartbeats, the disconnect rate) and sends a
  ``Snapshot`` of its ``Meter`` to the parent once a second.
- ``run_dummy_async`` / ``run_dummy``: run one Worker in this process, or spawn
  worker processes (one event loop each, uvloop when available), merge their
  snapshots into an ``Aggregate`` and return a ``DummyResult``.

Worker processes are started with 'spawn', not 'fork': the parent may be inside
a running event loop (a test, the demo command), and a forked child would
inherit that loop's selector and wakeup descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import multiprocessing
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

from serverlink.dummy.config import SCENARIOS, DummyConfig, resolve_processes
from serverlink.dummy.metrics import (
    COUNTERS,
    ERROR_COUNTERS,
    GAME_LOGIN_STATUS,
    LOGIN_SERVER_STATUS,
    Aggregate,
    Gauges,
    Meter,
    Snapshot,
    SnapshotMaker,
)
from serverlink.net.session import Session, SessionDeps
from serverlink.net.stats import NetStats
from serverlink.protocol.framing import net_framing

T = TypeVar("T")
S = TypeVar("S", bound=Session)

#: How long the parent waits for spawned workers to import and report ready.
WORKER_START_TIMEOUT = 60.0
#: How long the parent waits for the final snapshots after "stop".
WORKER_STOP_TIMEOUT = 15.0
#: The parent's display tick lags the workers' snapshot tick by this much, so a
#: tick shows the interval that just ended rather than the one before.
TICK_LAG = 0.1


# --- what a scenario provides ---------------------------------------------------------
class ClientLink(Protocol):
    """A virtual client's current connection, as the engine sees it."""

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
        when it ended in a failure, so the engine waits reconnect_backoff first."""


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
        self.login_address: tuple[str, int] = (config.login_host, config.login_port)
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
        self, address: tuple[str, int], factory: Callable[[SessionDeps], S], what: str = ""
    ) -> S | None:
        """Open one connection with a fresh session from ``factory``. Counts the
        attempt, and the failure (returning None); ``what`` names the server in
        the failure's detail ("connect:<what>:timeout")."""
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
            meter.error("connect_fail", f"connect:{what}:timeout" if what else "connect:timeout")
            return None
        except OSError as exc:
            name = type(exc).__name__
            meter.error("connect_fail", f"connect:{what}:{name}" if what else f"connect:{name}")
            return None
        # No TCP_NODELAY here: asyncio and uvloop set it on every TCP transport
        # (each echo is a small write waiting for its answer; Nagle would hold it).
        return session

    # --- run -------------------------------------------------------------------------------
    async def resolve(self) -> None:
        """Resolve the server names once, not per connect (reconnect storms)."""
        self.game_address = await _resolve(self.game_address)
        if self.config.mode == "login":
            self.login_address = await _resolve(self.login_address)

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


# --- result --------------------------------------------------------------------------------
@dataclass
class DummyResult:
    """What a run counted. ``report()`` is the JSON document of ``--report``."""

    config: DummyConfig
    processes: int
    #: Measured duration in seconds (from the start signal to the stop signal).
    duration: float
    counters: dict[str, int]
    errors: dict[str, int]
    error_details: dict[str, int]
    latency_ms: dict[str, float]
    #: Verified echoes in each second of the run.
    series: list[int] = field(default_factory=list)
    #: Login mode: flow completion times (login server connect -> game login reply).
    login_latency_ms: dict[str, float] = field(default_factory=dict)
    #: Login flows completed in each second of the run.
    login_series: list[int] = field(default_factory=list)
    #: Refused logins by Status name: the login server's, the game server's.
    login_failures: dict[str, int] = field(default_factory=dict)
    game_login_failures: dict[str, int] = field(default_factory=dict)

    @property
    def echo_per_s(self) -> float:
        return self.counters["echo_recv"] / self.duration if self.duration > 0 else 0.0

    @property
    def login_flows_per_s(self) -> float:
        return self.counters["login_flows"] / self.duration if self.duration > 0 else 0.0

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())

    @property
    def exit_code(self) -> int:
        """0 when no error was counted, 1 otherwise."""
        return 1 if self.errors_total else 0

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "mode": self.config.mode,
            "echo_per_s": self.echo_per_s,
            "errors_total": self.errors_total,
            "latency_ms": self.latency_ms,
        }
        if self.config.mode == "login":
            report.update(
                login_flows_per_s=self.login_flows_per_s,
                login_latency_ms=self.login_latency_ms,
                login_failures=self.login_failures,
                game_login_failures=self.game_login_failures,
                relogin=self.config.relogin,
            )
        report.update(
            seconds=self.duration,
            clients=self.config.clients,
            echo_depth=self.config.echo_depth,
            processes=self.processes,
            target=self.config.target,
            counters=self.counters,
            errors=self.errors,
            error_details=self.error_details,
            echo_per_s_series=self.series,
        )
        if self.config.mode == "login":
            report["login_flows_per_s_series"] = self.login_series
        report["config"] = asdict(self.config)
        return report


def _result(config: DummyConfig, processes: int, duration: float, agg: Aggregate) -> DummyResult:
    return DummyResult(
        config=config,
        processes=processes,
        duration=duration,
        counters=dict(agg.totals),
        errors=agg.errors(),
        error_details=dict(sorted(agg.details.items())),
        latency_ms=agg.latency_ms(),
        series=list(agg.series),
        login_latency_ms=agg.login_latency_ms(),
        login_series=list(agg.login_series),
        login_failures=agg.refusals(LOGIN_SERVER_STATUS),
        game_login_failures=agg.refusals(GAME_LOGIN_STATUS),
    )


# --- worker processes -------------------------------------------------------------------------
def accounts_of(worker: int, processes: int, clients: int) -> range:
    """Account numbers (from 1) of one worker: strided, so that every worker
    holds early and late numbers alike and the ramp-up interleaves."""
    return range(worker + 1, clients + 1, processes)


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Fewer, cheaper garbage collections while a process generates load (only
    in processes the dummy owns: worker processes, ``run_dummy``).

    A login flow allocates a few dozen short-lived containers (sessions,
    futures, closures): at the default gen-0 threshold of 700 that is a
    collection every ~20 flows, and every few of those an older-generation pass
    over every object the process holds (6% of a login mode worker's time).
    What is alive before the run (modules, classes, config) is moved out of the
    collector's sight and gen 0 is collected less often; the previous settings
    come back afterwards."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, old[1], old[2])
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)


#: quiet_gc's gen-0 threshold (allocations minus deallocations of containers).
GC_GEN0_THRESHOLD = 20_000


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a new event loop, uvloop's when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def _worker_process(
    conn: Connection, config: DummyConfig, index: int, processes: int, accounts: Sequence[int]
) -> None:
    """Entry point of a spawned worker process."""
    # Ctrl-C reaches the whole process group; the parent turns it into "stop"
    # so that every worker still sends its final snapshot.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with quiet_gc():
        run_loop(_worker_main(conn, config, index, processes, accounts))


async def _worker_main(
    conn: Connection, config: DummyConfig, index: int, processes: int, accounts: Sequence[int]
) -> None:
    loop = asyncio.get_running_loop()
    go = asyncio.Event()
    stop = asyncio.Event()
    fd = conn.fileno()

    def on_message() -> None:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            # The parent is gone: stop, there is nobody to report to.
            loop.remove_reader(fd)
            go.set()
            stop.set()
            return
        if msg == "go":
            go.set()
        elif msg == "stop":
            stop.set()

    def send(snap: Snapshot) -> None:
        try:
            conn.send(("snap", snap))
        except OSError:
            stop.set()

    loop.add_reader(fd, on_message)
    # uvloop makes a watched fd non-blocking; Connection.recv must block until a
    # whole message is in, or a large snapshot read in two parts raises
    # BlockingIOError (seen as a dead peer at 10,000 clients).
    os.set_blocking(fd, True)
    worker = Worker(config, index, accounts, send, processes)
    await worker.resolve()
    conn.send(("ready", index))
    await go.wait()
    await worker.run(stop)
    with contextlib.suppress(Exception):
        loop.remove_reader(fd)
    conn.close()


class _ProcessPool:
    """The parent's side of the worker processes."""

    def __init__(self, config: DummyConfig, processes: int, agg: Aggregate) -> None:
        self.config = config
        self.agg = agg
        self.n = processes
        self.ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.ready = [False] * processes
        self.done = [False] * processes
        self._ready = asyncio.Event()
        self._done = asyncio.Event()

    def _update(self) -> None:
        if all(r or d for r, d in zip(self.ready, self.done, strict=True)):
            self._ready.set()
        if all(self.done):
            self._done.set()

    def _on_message(self, i: int) -> None:
        conn = self.conns[i]
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            if not self.done[i]:
                self.agg.worker_failed(i, "exited")
                self.done[i] = True
            self._update()
            return
        kind = msg[0]
        if kind == "snap":
            snap: Snapshot = msg[1]
            self.agg.add(snap)
            if snap.final:
                self.done[i] = True
        elif kind == "ready":
            self.ready[i] = True
        self._update()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.n):
            parent, child = self.ctx.Pipe()
            accounts = accounts_of(i, self.n, self.config.clients)
            proc = self.ctx.Process(
                target=_worker_process,
                args=(child, self.config, i, self.n, accounts),
                name=f"serverlink-dummy-{i}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
            loop.add_reader(parent.fileno(), self._on_message, i)
            os.set_blocking(parent.fileno(), True)  # see _worker_main
        await asyncio.wait_for(self._ready.wait(), WORKER_START_TIMEOUT)

    def broadcast(self, msg: str) -> None:
        for i, conn in enumerate(self.conns):
            if not self.done[i]:
                with contextlib.suppress(OSError):
                    conn.send(msg)

    @property
    def all_done(self) -> bool:
        return self._done.is_set()

    async def finish(self) -> None:
        """After "stop": wait for every final snapshot, then for the processes."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), WORKER_STOP_TIMEOUT)
        for i, done in enumerate(self.done):
            if not done:
                self.agg.worker_failed(i, "no_final_snapshot")
        await self.close(loop)

    async def close(self, loop: asyncio.AbstractEventLoop) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                loop.remove_reader(conn.fileno())
            conn.close()
        for proc in self.procs:
            await loop.run_in_executor(None, proc.join, 5.0)
            if proc.is_alive():
                proc.terminate()
                await loop.run_in_executor(None, proc.join, 5.0)


# --- entry points --------------------------------------------------------------------------
TickCallback = Callable[[Aggregate, float], None]


async def run_dummy_async(
    config: DummyConfig,
    on_tick: TickCallback | None = None,
    stop: asyncio.Event | None = None,
) -> DummyResult:
    """Run the dummy in the running event loop and return what it counted.

    ``on_tick(aggregate, elapsed_seconds)`` is called about once a second with
    the merged live counters (the dashboard). Setting ``stop`` ends the run
    early; with ``config.seconds == 0`` only ``stop`` ends it. With more than
    one process (``config.processes``, 0 = auto) the clients run in spawned
    worker processes and this loop only merges their snapshots. Inputs the
    mode needs (login mode's key file) are checked first: ValueError.
    """
    preflight(config)
    processes = resolve_processes(config)
    agg = Aggregate(processes)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    if processes == 1:
        worker = Worker(config, 0, accounts_of(0, 1, config.clients), agg.add)
        await worker.resolve()
        worker_stop = asyncio.Event()
        t0 = loop.time()
        task = loop.create_task(worker.run(worker_stop))
        try:
            await _wait_run(config, agg, on_tick, stop, t0, lambda: task.done())
        finally:
            worker_stop.set()
            t1 = loop.time()
            await task
        return _result(config, processes, t1 - t0, agg)

    pool = _ProcessPool(config, processes, agg)
    try:
        await pool.start()
        pool.broadcast("go")
        t0 = loop.time()
        try:
            await _wait_run(config, agg, on_tick, stop, t0, lambda: pool.all_done)
        finally:
            pool.broadcast("stop")
            t1 = loop.time()
        await pool.finish()
    except BaseException:
        await pool.close(loop)
        raise
    return _result(config, processes, t1 - t0, agg)


async def _wait_run(
    config: DummyConfig,
    agg: Aggregate,
    on_tick: TickCallback | None,
    stop: asyncio.Event,
    t0: float,
    workers_gone: Callable[[], bool],
) -> None:
    loop = asyncio.get_running_loop()
    deadline = t0 + config.seconds if config.seconds > 0 else float("inf")
    next_tick = t0 + 1.0 + TICK_LAG
    while not stop.is_set() and not workers_gone():
        now = loop.time()
        if now >= deadline:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(next_tick, deadline) - now)
        now = loop.time()
        if now >= next_tick:
            if on_tick is not None:
                on_tick(agg, now - t0)
            next_tick += 1.0


def run_dummy(config: DummyConfig, on_tick: TickCallback | None = None) -> DummyResult:
    """Run the dummy on a new event loop (uvloop when available) until
    ``config.seconds`` have passed or Ctrl-C, and return what it counted."""

    async def main() -> DummyResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Not available off the main thread or on Windows: Ctrl-C then interrupts.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        try:
            return await run_dummy_async(config, on_tick, stop)
        finally:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGINT)

    with quiet_gc():
        return run_loop(main())


__all__ = [
    "COUNTERS",
    "ERROR_COUNTERS",
    "ClientLink",
    "DummyResult",
    "Scenario",
    "VirtualClient",
    "Worker",
    "run_dummy",
    "run_dummy_async",
]
