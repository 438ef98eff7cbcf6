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

Workers (``workers > 1``, ``WorkerPool``): the parent checks the address is
free (a second serverlink already on the port with SO_REUSEPORT would otherwise
silently share it), holds the port, and starts N processes through the
supervisor (``serverlink.supervise``) that each build and start their own
server with ``reuse_port=True`` (the kernel spreads connections over them).
Each worker sends its snapshot once a second and its log records, which the
parent prints (above its screen, and to ``--log-file``). The parent merges the
snapshots (``monitor.stats.Aggregator``) and shows one screen. SIGINT/SIGTERM
to the parent stop every worker gracefully.

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
import dataclasses
import errno
import logging
import os
import socket
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from rich.console import Console

from serverlink import logs
from serverlink.aio import StopSignal, notify, run_loop, ticks
from serverlink.errors import StartupError
from serverlink.monitor.console import Monitor
from serverlink.monitor.screen import ScreenSpec, default_screen
from serverlink.monitor.stats import Aggregator
from serverlink.supervise import (
    Event,
    Exited,
    Message,
    Policy,
    Snapshot,
    Stopped,
    SuperviseError,
    Supervisor,
    WorkerLink,
)

log = logging.getLogger("serverlink.runner")

#: Seconds a worker has to start serving before the start counts as failed.
START_TIMEOUT = 30.0
#: A dead worker is restarted at most this often (seconds), per worker.
RESTART_INTERVAL = 1.0


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
    def max_workers(self) -> int | None:
        """The server class's ``max_workers`` (None: any number): ``build`` is
        the class, or a function whose return annotation names it."""
        server_class: object = self.build
        if not isinstance(server_class, type):
            try:
                server_class = typing.get_type_hints(self.build).get("return")
            except Exception:  # an annotation that does not resolve: no declared limit
                return None
        limit = getattr(server_class, "max_workers", None)
        return limit if isinstance(limit, int) else None

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


def describe_listen_error(name: str, host: str, port: int, exc: BaseException) -> str:
    """One line for an error of binding a listening socket."""
    where = f"{name}: cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{name}: cannot resolve host {host!r}: {exc.strerror or exc}"
    code = getattr(exc, "errno", None)
    if code == errno.EADDRINUSE:
        return f"{where}: address already in use (is another server running? try another --port)"
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


def describe(server: object, spec: ServerSpec[Any]) -> str:
    """What the start line says of a server (its ``describe()``, else its name)."""
    about = getattr(server, "describe", None)
    return str(about()) if callable(about) else spec.name


def _closing_line(snapshot: Mapping[str, Any], uptime: float) -> str:
    errors = sum(snapshot.get("errors", {}).values())
    disconnects = sum(snapshot.get("disconnects", {}).values())
    return (
        f"stopped after {uptime:.1f} s: accepted {snapshot.get('accepted', 0)}, "
        f"logins {snapshot.get('logins', 0)}, packets in {snapshot.get('packets_in', 0)} / "
        f"out {snapshot.get('packets_out', 0)}, disconnects {disconnects}, "
        f"protocol errors {errors}"
    )


# --- one process ------------------------------------------------------------------------------


async def _serve_here(spec: ServerSpec[Any], options: RunOptions, console: Console) -> int:
    loop = asyncio.get_running_loop()
    server = await start_server(spec)
    stop = StopSignal()
    stop.install(loop)
    started = time.monotonic()
    address = f"{spec.host}:{int(getattr(server, 'port', spec.port))}"
    log.info("ready: listening on %s (pid %d): %s", address, os.getpid(), describe(server, spec))
    notify("READY=1")
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
    await server.stop()
    StopSignal.remove(loop)
    log.info("%s", _closing_line(server.snapshot(), time.monotonic() - started))
    return 0


# --- worker processes -------------------------------------------------------------------------


async def _serve_in_worker(link: WorkerLink, spec: ServerSpec[Any]) -> None:
    """A worker process's server (the supervisor's target: module level)."""
    server = await start_server(spec, on_event=link.event)
    link.ready(int(getattr(server, "port", spec.port)), describe(server, spec))
    await ticks(link.stop, 1.0, lambda: link.snapshot(dict(server.snapshot())))
    await server.stop()
    link.stopped(dict(server.snapshot()))


class WorkerPool:
    """N worker processes each running ``spec``'s server on one port, on the
    running event loop. Their snapshots merge into ``aggregate``; their events
    go to ``on_event``."""

    def __init__(
        self,
        spec: ServerSpec[Any],
        count: int,
        *,
        log_level: int = logging.INFO,
        merge_rules: Mapping[str, str] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        spec.check_workers(count)
        if not dataclasses.is_dataclass(spec.config) or isinstance(spec.config, type):
            raise ServeError(f"{spec.name}: worker processes need a dataclass config")
        fields = {f.name for f in dataclasses.fields(spec.config)}
        if not {"port", "reuse_port"} <= fields:
            raise ServeError(f"{spec.name}: its config has no port/reuse_port: no worker processes")
        self.spec = spec
        self.aggregate = Aggregator(merge_rules)
        self.port = 0
        self.on_event = on_event
        self._indexed = "worker_index" in fields
        self.supervisor: Supervisor[ServerSpec[Any]] = Supervisor(
            spec.name,
            _serve_in_worker,
            self._worker_spec,
            count,
            policy=Policy(
                restart=True, restart_interval=RESTART_INTERVAL, start_timeout=START_TIMEOUT
            ),
            on_message=self._on_message,
            log_level=log_level,
        )

    @property
    def shares_port(self) -> bool:
        """Whether the workers share one port (SO_REUSEPORT) or each has its own
        (a config's ``shares_port``: a linked game server's workers are linked
        servers of their own, each with its address)."""
        return bool(getattr(self.spec.config, "shares_port", True))

    async def start(self) -> int:
        """Start every worker and wait until all serve; return the port (the
        first worker's when each has its own). Raises ServeError (after
        stopping the others) when one cannot start."""
        hold: socket.socket | None = None
        if self.shares_port:
            self.port, hold = _reserve_port(self.spec.name, self.spec.host, self.spec.port)
        else:
            self.port = self.spec.port
        try:
            await self.supervisor.start()
        except SuperviseError as exc:
            raise ServeError(str(exc)) from None
        finally:
            if hold is not None:
                hold.close()
        if not self.shares_port:
            self.port = min(w.port for w in self.supervisor.workers)
        return self.port

    @property
    def restarts(self) -> int:
        return self.supervisor.restarts

    @property
    def failure(self) -> str | None:
        return self.supervisor.failure

    def pids(self) -> list[int]:
        return self.supervisor.pids()

    def snapshot(self) -> dict[str, Any]:
        return self.aggregate.snapshot()

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until ``check()`` holds, checking after each message or worker change."""
        await self.supervisor.until(check)

    async def stop(self, grace: float = 5.0) -> None:
        await self.supervisor.stop(grace)

    def _worker_spec(self, index: int) -> ServerSpec[Any]:
        if not self.shares_port:
            # Its own port: the next ones after --port (or any free one with 0).
            port = self.spec.port + index - 1 if self.spec.port else 0
            config = dataclasses.replace(self.spec.config, port=port, reuse_port=False)
        else:
            config = dataclasses.replace(self.spec.config, port=self.port, reuse_port=True)
        if self._indexed:
            # Servers that tell their workers apart (the linked game server
            # writes its id + index as the account status) get the index.
            config = dataclasses.replace(config, worker_index=index)
        return ServerSpec(self.spec.name, self.spec.build, config)

    def _on_message(self, index: int, message: Message) -> None:
        if isinstance(message, Snapshot | Stopped) and message.data is not None:
            self.aggregate.update(index, message.data)
        elif isinstance(message, Exited) and message.restart:
            self.aggregate.retire(index)  # its counters stay in the totals
        elif isinstance(message, Event) and self.on_event is not None:
            self.on_event(message)


def _reserve_port(name: str, host: str, port: int) -> tuple[int, socket.socket]:
    """Check ``host:port`` is free and hold it until the workers listen.

    The check binds without SO_REUSEPORT, so it fails when anything listens
    there, even another serverlink with SO_REUSEPORT (which the workers would
    otherwise silently share the port with). Port 0 picks a free port. The
    returned socket (bound with SO_REUSEPORT, not listening: it takes no
    connections) keeps the port from being taken while the workers start.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            port = probe.getsockname()[1]
        hold = socket.socket(family, kind, proto)
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        hold.bind((address[0], port, *address[2:]))
    except OSError as exc:
        raise ServeError(describe_listen_error(name, host, port, exc)) from None
    return port, hold


async def _serve_workers(spec: ServerSpec[Any], options: RunOptions, console: Console) -> int:
    loop = asyncio.get_running_loop()
    screen = options.screen or default_screen(spec.name)
    pool = WorkerPool(
        spec, options.workers, log_level=options.log_level, merge_rules=screen.merge_rules
    )
    stop = StopSignal()
    stop.install(loop)  # a signal while the workers start stops them cleanly
    start = asyncio.ensure_future(pool.start())
    signalled = asyncio.ensure_future(stop.event.wait())
    await asyncio.wait([start, signalled], return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    if not start.done():
        log.info("%s while starting: stopping the workers", stop.signal_name)
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        await pool.stop(options.grace)
        return 0
    port = start.result()  # raises ServeError
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
    notify("READY=1")
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
    await pool.stop(options.grace)
    StopSignal.remove(loop)
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
