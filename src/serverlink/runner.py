"""Runs a server until SIGINT/SIGTERM, in this process or in N worker processes.

A *server* is anything with ``async start()``, ``async stop()`` and
``snapshot() -> dict`` (``GameServer``, ``LoginServer``). A ``ServerSpec`` says
how to build one in any process: a name, a picklable config (a dataclass) and
a top-level ``build(config) -> server`` function (or the server class), so
worker processes (started with ``spawn``) can build their own.

    spec = ServerSpec("game", build_game_server, GameConfig(port=12211))
    exit_status = serve(spec, RunOptions(workers=2), console)

The server class declares how many worker processes it can run in
(``max_workers``, None: any); ``serve`` refuses more with one line.

One process (``workers == 1``): the server runs in this process's event loop
(``aio.run_loop``), the console screen is fed its ``snapshot()`` each second;
SIGINT/SIGTERM stop accepting, close the sessions (``server.stop()``) and
return 0.

Workers (``workers > 1``): ``serverlink.workers.WorkerPool`` starts N
processes that each build and start their own server. Each worker sends its
snapshot once a second and its log records, which the parent prints (above its
screen, and to ``--log-file``); the parent shows one screen of the merged
snapshots. SIGINT/SIGTERM to the parent stop every worker gracefully.

Worker death policy: a worker that dies after it started serving is logged,
counted (``worker_restarts`` on the screen) and restarted, at most once per
second per worker; its counters stay in the totals. A worker that fails while
starting (port taken, permission, a bad setting) stops the whole server with
that worker's one-line error, exit status 1: it would fail the same way again.

Errors the user can fix (address in use, permission, unknown host, too many
workers) are raised as ``ServeError`` with one line; the CLI prints it and
exits 1.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from rich.console import Console

from serverlink import logs
from serverlink.aio import StopSignal, notify, run_loop, ticks, unless_set
from serverlink.errors import StartupError
from serverlink.monitor.console import Monitor
from serverlink.monitor.screen import ScreenSpec, default_screen
from serverlink.net.server import ListenError
from serverlink.servers.reporter import ObserveConfig, Observers
from serverlink.supervise import Drain, SuperviseError

log = logging.getLogger("serverlink.runner")


class Server(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def snapshot(self) -> Mapping[str, Any]: ...


@runtime_checkable
class EventSource(Protocol):
    """A server that announces events (the login server: ``links`` when the
    linked servers change); in a worker process they go to the supervisor."""

    on_event: Callable[[str, Any], None]


C = TypeVar("C")


class ServeError(SuperviseError):
    """A problem the user can fix, in one line; exit status 1."""

    exit_code = 1


@dataclass(frozen=True)
class ServerSpec(Generic[C]):
    """How to build a server in any process. ``build`` must be a module-level
    function (or the server class) and ``config`` picklable (for worker
    processes). With workers, ``config`` must be a dataclass with ``port`` and
    ``reuse_port`` fields, which the runner sets (and ``worker_index``, 1..N,
    when it has one); a ``shares_port`` property that is False gives each worker
    its own port instead of one shared with SO_REUSEPORT."""

    name: str
    build: Callable[[C], Server]
    config: C

    @property
    def host(self) -> str:
        return str(getattr(self.config, "host", "0.0.0.0"))

    @property
    def port(self) -> int:
        return int(getattr(self.config, "port", 0))

    @property
    def server_class(self) -> object:
        """``build`` if it is the class, else the class its return annotation
        names (None: one that does not resolve)."""
        if isinstance(self.build, type):
            return self.build
        try:
            return typing.get_type_hints(self.build).get("return")
        except Exception:  # an annotation that does not resolve
            return None

    @property
    def max_workers(self) -> int | None:
        """The server class's ``max_workers`` (None: any number)."""
        limit = getattr(self.server_class, "max_workers", None)
        return limit if isinstance(limit, int) else None

    @property
    def drains(self) -> bool:
        """Its server can drain (``set_draining``: a linked game or chat server)."""
        return callable(getattr(self.server_class, "set_draining", None))

    def check_workers(self, count: int) -> None:
        limit = self.max_workers
        if limit is not None and count > limit:
            raise ServeError(
                f"{self.name}: --workers must be at most {limit} "
                f"(the {self.name} server's max_workers), not {count}"
            )


@dataclass(frozen=True)
class RunOptions:
    workers: int = 1
    #: The live screen (on a terminal); False: a summary line every stats_interval.
    live: bool = True
    stats_interval: float = 5.0
    screen: ScreenSpec | None = None
    #: Level of the worker processes' loggers (their lines are printed by the parent).
    log_level: int = logging.INFO
    #: Seconds the workers get to close their sessions at shutdown before they are killed.
    grace: float = 5.0
    #: Reports to a monitoring server, the server's own /metrics (servers.reporter).
    observe: ObserveConfig = field(default_factory=ObserveConfig)


#: Listeners by the end of their name: what they are, and the flag of their port.
LISTENERS = {"-lan": ("the LAN port", "--lan-port")}
CLIENT_PORT = ("the client port", "--port")


def describe_listen_error(name: str, host: str, port: int, exc: BaseException) -> str:
    """One line for an error of binding a listening socket: which port (the
    client port, the LAN port) and the flag that sets it."""
    what, flag = CLIENT_PORT
    if isinstance(exc, ListenError):
        host, port = exc.host, exc.port
        what, flag = next(
            (v for end, v in LISTENERS.items() if exc.listener.endswith(end)), CLIENT_PORT
        )
    where = f"{name}: cannot listen on {host}:{port} ({what}, {flag})"
    if isinstance(exc, socket.gaierror):
        return f"{name}: cannot resolve host {host!r}: {exc.strerror or exc}"
    code = getattr(exc, "errno", None)
    if code == errno.EADDRINUSE:
        return f"{where}: address already in use (is another server running? try another {flag})"
    if code in (errno.EACCES, errno.EPERM):
        hint = " (ports below 1024 need privileges)" if 0 < port < 1024 else ""
        return f"{where}: permission denied{hint}"
    if code == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine"
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{where}: {text}"


async def start_server(
    spec: ServerSpec[Any], on_event: Callable[[str, Any], None] | None = None
) -> Server:
    """Build and start ``spec``'s server; ServeError (one line) when it cannot."""
    server = spec.build(spec.config)
    if on_event is not None and isinstance(server, EventSource):
        server.on_event = on_event
    try:
        await server.start()
    except OSError as exc:
        raise ServeError(describe_listen_error(spec.name, spec.host, spec.port, exc)) from None
    except StartupError as exc:
        raise ServeError(f"{spec.name}: {exc}") from None
    return server


class Draining:
    """A game or chat server's draining, from outside: SIGUSR1 toggles it, the
    metrics port's POST /drain and /resume set it. ``apply`` tells the server
    (or every worker); the state is kept here, so /drain twice still drains."""

    def __init__(self, apply: Callable[[bool], object]) -> None:
        self.draining = False
        self._apply = apply

    def set(self, draining: bool | None = None) -> bool:
        """Drain (True), serve again (False) or toggle (None); whether it drains now."""
        self.draining = not self.draining if draining is None else draining
        self._apply(self.draining)
        return self.draining

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGUSR1, self.set)

    @staticmethod
    def remove(loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_signal_handler(signal.SIGUSR1)


async def start_observers(
    spec: ServerSpec[Any],
    config: ObserveConfig,
    snapshot: Callable[[], Mapping[str, Any]],
    pids: Callable[[], list[int]],
    draining: Draining | None = None,
) -> Observers:
    """The server's reports to a monitoring server and its /metrics port (with
    POST /drain and /resume when ``draining``); ServeError (one line) when that
    port cannot be had."""
    drain = draining.set if draining is not None else None
    observers = Observers(spec.name, config, snapshot, pids, drain=drain)
    try:
        await observers.start()
    except OSError as exc:
        await observers.stop()
        port = config.metrics_port or 0
        raise ServeError(
            describe_listen_error(f"{spec.name} metrics", config.metrics_host, port, exc)
        ) from None
    if observers.active:
        log.info("%s: %s", spec.name, observers.describe())
    return observers


def describe(server: object, spec: ServerSpec[Any]) -> str:
    """What the start line says of a server (its ``describe()``, else its name)."""
    about = getattr(server, "describe", None)
    return str(about()) if callable(about) else spec.name


def _closing_line(snapshot: Mapping[str, Any], uptime: float) -> str:
    errors = sum(snapshot.get("errors", {}).values())
    disconnects = sum(snapshot.get("disconnects", {}).values())
    # Refusals by reason (a linked server's): the one summary an operator
    # reads after a run that ended before the next status line.
    refusals = "".join(
        f"refused logins {reason} {count}, "
        for reason, count in sorted(snapshot.get("refusals", {}).items())
        if count
    )
    return (
        f"stopped after {uptime:.1f} s: accepted {snapshot.get('accepted', 0)}, "
        f"logins {snapshot.get('logins', 0)}, packets in {snapshot.get('packets_in', 0)} / "
        f"out {snapshot.get('packets_out', 0)}, disconnects {disconnects}, {refusals}"
        f"protocol errors {errors}"
    )


def notify_ready(address: str, about: str) -> None:
    """sd_notify READY=1, and where the server listens as its status (shown by
    ``systemctl status``; ``serverlink up`` prints it)."""
    notify(f"READY=1\nSTATUS=listening on {address}: {about}")


# --- one process ------------------------------------------------------------------------------


async def _serve_here(spec: ServerSpec[Any], options: RunOptions, console: Console) -> int:
    loop = asyncio.get_running_loop()
    server = await start_server(spec)
    set_draining = getattr(server, "set_draining", None)
    draining = Draining(set_draining) if callable(set_draining) else None
    try:
        observers = await start_observers(
            spec, options.observe, server.snapshot, lambda: [os.getpid()], draining
        )
    except ServeError:
        await server.stop()
        raise
    stop = StopSignal()
    stop.install(loop)
    if draining is not None:
        draining.install(loop)
    started = time.monotonic()
    address = f"{spec.host}:{int(getattr(server, 'port', spec.port))}"
    about = describe(server, spec)
    log.info("ready: listening on %s (pid %d): %s", address, os.getpid(), about)
    notify_ready(address, about)
    monitor = Monitor(
        options.screen or default_screen(spec.name),
        console,
        address=address,
        live=options.live,
        interval=options.stats_interval,
        logger=logging.getLogger(logs.SUMMARY),
    )
    monitor.start(server.snapshot())
    try:
        await ticks(stop.event, 1.0, lambda: monitor.update(server.snapshot()))
    finally:
        monitor.stop(server.snapshot())
    notify("STOPPING=1")
    log.info(
        "%s: stopping: closing %s sessions", stop.signal_name, server.snapshot().get("sessions", 0)
    )
    await observers.stop()
    await server.stop()
    StopSignal.remove(loop)
    if draining is not None:
        Draining.remove(loop)
    log.info("%s", _closing_line(server.snapshot(), time.monotonic() - started))
    return 0


async def _serve_workers(spec: ServerSpec[Any], options: RunOptions, console: Console) -> int:
    from serverlink.workers import WorkerPool

    loop = asyncio.get_running_loop()
    screen = options.screen or default_screen(spec.name)
    pool = WorkerPool(
        spec, options.workers, log_level=options.log_level, merge_rules=screen.merge_rules
    )
    stop = StopSignal()
    stop.install(loop)  # a signal while the workers start stops them cleanly
    # Every worker is told (a worker restarted meanwhile starts serving).
    draining = Draining(lambda on: pool.supervisor.broadcast(Drain(on))) if spec.drains else None
    if draining is not None:
        draining.install(loop)
    start = await unless_set(pool.start(), stop.event)
    if start is None:
        log.info("%s while starting: stopping the workers", stop.signal_name)
        await pool.stop(options.grace)
        return 0
    port = start.result()  # raises ServeError
    try:
        observers = await start_observers(
            spec,
            options.observe,
            pool.snapshot,
            lambda: [os.getpid(), *pool.pids()],
            draining,
        )
    except ServeError:
        await pool.stop(options.grace)
        raise
    started = time.monotonic()
    address = f"{spec.host}:{port}"
    first = pool.supervisor.workers[0]
    log.info(
        "ready: listening on %s with %d workers%s (pids %s): %s",
        address,
        options.workers,
        "" if pool.shares_port else ", each on its own port from there",
        ", ".join(str(p) for p in pool.pids()),
        first.about or spec.name,
    )
    notify_ready(address, first.about or spec.name)
    failure = asyncio.ensure_future(pool.supervisor.failed.wait())

    def on_failure(waited: asyncio.Future[Any]) -> None:
        if not waited.cancelled():
            stop.trip("worker failure")

    failure.add_done_callback(on_failure)
    monitor = Monitor(
        screen,
        console,
        address=address,
        live=options.live,
        interval=options.stats_interval,
        pids=lambda: [os.getpid(), *pool.pids()],
        workers=options.workers,
        logger=logging.getLogger(logs.SUMMARY),
    )
    monitor.start(pool.snapshot())

    def tick() -> None:
        monitor.worker_restarts = pool.restarts
        monitor.update(pool.snapshot())

    try:
        await ticks(stop.event, 1.0, tick)
    finally:
        failure.cancel()
        monitor.stop(pool.snapshot())
    notify("STOPPING=1")
    log.info("%s: stopping %d workers", stop.signal_name, options.workers)
    await observers.stop()
    await pool.stop(options.grace)
    StopSignal.remove(loop)
    if draining is not None:
        Draining.remove(loop)
    log.info("%s", _closing_line(pool.snapshot(), time.monotonic() - started))
    if pool.failure:
        raise ServeError(pool.failure)
    return 0


# --- entry point ------------------------------------------------------------------------------


def serve(spec: ServerSpec[Any], options: RunOptions, console: Console | None = None) -> int:
    """Run ``spec``'s server until SIGINT/SIGTERM; return the exit status (0).
    Raises ServeError for problems the user can fix (one line)."""
    spec.check_workers(options.workers)
    console = console or logs.make_console()
    logs.set_process_server(spec.name)
    if options.workers <= 1:
        return run_loop(_serve_here(spec, options, console))
    return run_loop(_serve_workers(spec, options, console))
