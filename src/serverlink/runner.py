"""Runs a server until SIGINT/SIGTERM, in this process or in N worker processes.

A *server* is anything with ``async start()``, ``async stop()`` and
``snapshot() -> dict`` (``GameServer``, later the login server). A
``ServerSpec`` says how to build one in any process: a name, a picklable config
(a dataclass) and a top-level ``build(config) -> server`` function, so worker
processes (started with ``spawn``) can build their own.

    spec = ServerSpec("game", build_game_server, GameConfig(port=12211))
    exit_status = serve(spec, RunOptions(workers=2), console)

One process (``workers == 1``): the server runs in this process's event loop
(uvloop when importable), the console screen is fed its ``snapshot()`` each
second; SIGINT/SIGTERM stop accepting, close the sessions (``server.stop()``)
and return 0.

Workers (``workers > 1``): the parent checks the address is free (a second
serverlink already on the port with SO_REUSEPORT would otherwise silently share
it), holds the port, and starts N processes that each build and start their own
server with ``reuse_port=True`` (the kernel spreads connections over them).
Each worker sends its snapshot to the parent once a second over a pipe, and its
log records too, so that the parent prints every line (above its screen, and to
``--log-file``). The parent merges the snapshots (``monitor.stats``) and shows
one screen. SIGINT/SIGTERM to the parent stop every worker gracefully (Ctrl-C,
which the terminal sends to all of them, is ignored by the workers: the parent
decides); a worker whose parent vanishes stops by itself.

Worker death policy: a worker that dies after it started serving is logged,
counted (``worker_restarts`` on the screen) and restarted, at most once per
second per worker; its counters stay in the totals. A worker that fails while
starting (port taken, permission, a bad setting) stops the whole server with
that worker's one-line error, exit status 1: it would fail the same way again.

Errors the user can fix (address in use, permission, unknown host) are raised
as ``ServeError`` with one line; the CLI prints it and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Generic, Protocol, TypeVar

from rich.console import Console

from serverlink import logs
from serverlink.errors import StartupError
from serverlink.monitor.console import Monitor
from serverlink.monitor.screen import ScreenSpec, default_screen
from serverlink.monitor.stats import Aggregator

log = logging.getLogger("serverlink.runner")

#: Seconds a worker has to start serving before the start counts as failed.
START_TIMEOUT = 30.0
#: A dead worker is restarted at most this often (seconds), per worker.
RESTART_INTERVAL = 1.0


class Server(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def snapshot(self) -> Mapping[str, Any]: ...


C = TypeVar("C")


@dataclass(frozen=True)
class ServerSpec(Generic[C]):
    """How to build a server in any process. ``build`` must be a module-level
    function and ``config`` picklable (for worker processes). With workers,
    ``config`` must be a dataclass with ``port`` and ``reuse_port`` fields,
    which the runner sets."""

    name: str
    build: Callable[[C], Server]
    config: C

    @property
    def host(self) -> str:
        return str(getattr(self.config, "host", "0.0.0.0"))

    @property
    def port(self) -> int:
        return int(getattr(self.config, "port", 0))


@dataclass(frozen=True)
class RunOptions:
    workers: int = 1
    #: The live screen (on a terminal); False: a summary line every stats_interval.
    live: bool = True
    stats_interval: float = 5.0
    screen: ScreenSpec | None = None
    #: Level of the worker processes' loggers (their lines are printed by the parent).
    log_level: int = logging.INFO
    #: Seconds sessions get to close at shutdown before the workers are killed.
    grace: float = 5.0


class ServeError(Exception):
    """A problem the user can fix, in one line; exit status 1."""

    exit_code = 1


# --- event loop -------------------------------------------------------------------------------


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when importable, else None (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` in a new event loop (uvloop when importable)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


# --- errors -----------------------------------------------------------------------------------


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


# --- one process ------------------------------------------------------------------------------


class _Stop:
    """Set by the first SIGINT/SIGTERM; a second one ends the process at once."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal_name = ""

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.event.is_set():
            log.warning("second %s: exiting now, without a graceful shutdown", sig.name)
            logging.shutdown()
            os._exit(1)
        self.signal_name = sig.name
        self.event.set()

    @staticmethod
    def remove(loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _ticks(stop: _Stop, every: float, tick: Callable[[], None]) -> None:
    """Call ``tick`` every ``every`` seconds (no drift) until stop."""
    loop = asyncio.get_running_loop()
    next_at = loop.time() + every
    while not stop.event.is_set():
        try:
            await asyncio.wait_for(stop.event.wait(), max(0.0, next_at - loop.time()))
        except TimeoutError:
            next_at += every
            if next_at < loop.time():  # the loop was stalled: do not catch up in a burst
                next_at = loop.time() + every
            tick()


def _closing_line(name: str, snapshot: Mapping[str, Any], uptime: float) -> str:
    errors = sum(snapshot.get("errors", {}).values())
    disconnects = sum(snapshot.get("disconnects", {}).values())
    return (
        f"stopped after {uptime:.1f} s: accepted {snapshot.get('accepted', 0)}, "
        f"logins {snapshot.get('logins', 0)}, packets in {snapshot.get('packets_in', 0)} / "
        f"out {snapshot.get('packets_out', 0)}, disconnects {disconnects}, "
        f"protocol errors {errors}"
    )


async def _serve_here(spec: ServerSpec[Any], options: RunOptions, console: Console) -> int:
    loop = asyncio.get_running_loop()
    server = spec.build(spec.config)
    try:
        await server.start()
    except OSError as exc:
        raise ServeError(describe_listen_error(spec.name, spec.host, spec.port, exc)) from None
    except StartupError as exc:
        raise ServeError(f"{spec.name}: {exc}") from None
    stop = _Stop()
    stop.install(loop)
    started = time.monotonic()
    port = int(getattr(server, "port", spec.port))
    address = f"{spec.host}:{port}"
    log.info("ready: listening on %s (pid %d)", address, os.getpid())
    screen = options.screen or default_screen(spec.name)
    monitor = Monitor(
        screen,
        console,
        address=address,
        live=options.live,
        interval=options.stats_interval,
        logger=logging.getLogger(f"serverlink.{spec.name}"),
    )
    monitor.start(server.snapshot())
    try:
        await _ticks(stop, 1.0, lambda: monitor.update(server.snapshot()))
    finally:
        monitor.stop(server.snapshot())
    log.info(
        "%s: stopping: closing %s sessions", stop.signal_name, server.snapshot().get("sessions", 0)
    )
    await server.stop()
    _Stop.remove(loop)
    log.info("%s", _closing_line(spec.name, server.snapshot(), time.monotonic() - started))
    return 0


# --- worker processes -------------------------------------------------------------------------


@dataclass(frozen=True)
class _WorkerArgs:
    name: str
    index: int
    build: Callable[[Any], Server]
    config: Any
    log_level: int


def _worker_main(args: _WorkerArgs, conn: Connection) -> None:
    """Entry point of a worker process (module level: spawn imports it)."""
    # Ctrl-C goes to the whole process group; the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.set_process_server(f"{args.name}/{args.index}")

    def send_log(record: logging.LogRecord) -> None:
        conn.send(("log", record))

    logs.setup_worker_logging(args.log_level, send_log)
    try:
        code = run_loop(_worker_serve(args, conn))
    except (BrokenPipeError, EOFError, ConnectionResetError):
        code = 0  # the parent is gone
    except Exception as exc:
        log.debug("worker failed", exc_info=True)
        with contextlib.suppress(OSError):
            conn.send(("fatal", f"{args.name} worker {args.index}: {type(exc).__name__}: {exc}"))
        code = 1
    sys.exit(code)


async def _worker_serve(args: _WorkerArgs, conn: Connection) -> int:
    loop = asyncio.get_running_loop()
    stop = _Stop()
    loop.add_signal_handler(signal.SIGTERM, stop.event.set)

    def from_parent() -> None:
        try:
            while conn.poll():
                message = conn.recv()
                if message and message[0] == "stop":
                    stop.event.set()
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            stop.event.set()

    loop.add_reader(conn.fileno(), from_parent)
    server = args.build(args.config)
    host = str(getattr(args.config, "host", "?"))
    port = int(getattr(args.config, "port", 0))
    try:
        await server.start()
    except OSError as exc:
        conn.send(("fatal", describe_listen_error(args.name, host, port, exc)))
        return 1
    except StartupError as exc:
        conn.send(("fatal", f"{args.name}: {exc}"))
        return 1
    conn.send(("ready", int(getattr(server, "port", port)), os.getpid()))
    await _ticks(stop, 1.0, lambda: conn.send(("snap", dict(server.snapshot()))))
    await server.stop()
    conn.send(("stopped", dict(server.snapshot())))
    return 0


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    started_at: float = 0.0
    ready: bool = False
    pid: int = 0
    restart_at: float | None = None
    fatal: str = ""
    done: bool = False  # exited (and not to be restarted)


@dataclass
class _PoolState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


class WorkerPool:
    """N worker processes each running ``spec``'s server on one port.

    Usable from plain code or from an event loop (its methods block briefly; an
    event loop calls ``start``/``stop`` through ``asyncio.to_thread``). A thread
    reads the workers' pipes: snapshots into the aggregate, log records emitted
    here, deaths handled as the module docstring says.
    """

    def __init__(
        self,
        spec: ServerSpec[Any],
        count: int,
        *,
        log_level: int = logging.INFO,
        merge_rules: Mapping[str, str] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        if not dataclasses.is_dataclass(spec.config) or isinstance(spec.config, type):
            raise ServeError(f"{spec.name}: worker processes need a dataclass config")
        names = {f.name for f in dataclasses.fields(spec.config)}
        if not {"port", "reuse_port"} <= names:
            raise ServeError(f"{spec.name}: its config has no port/reuse_port: no worker processes")
        self.spec = spec
        self.count = count
        self.log_level = log_level
        self.aggregate = Aggregator(merge_rules)
        self.restarts = 0
        self.fatal: str | None = None
        self.port = 0
        self._config: Any = None
        self._mp = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i + 1) for i in range(count)]
        self._state = _PoolState()
        self._stopping = False
        self._reader: threading.Thread | None = None
        self._hold: socket.socket | None = None

    # --- public ------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> int:
        """Start every worker and wait until all serve; return the port.
        Raises ServeError (after stopping the others) when one cannot start."""
        self.port, self._hold = _reserve_port(self.spec.name, self.spec.host, self.spec.port)
        self._config = dataclasses.replace(self.spec.config, port=self.port, reuse_port=True)
        try:
            with self._state.lock:
                for slot in self._slots:
                    self._spawn(slot)
            self._reader = threading.Thread(
                target=self._read_loop, name=f"{self.spec.name}-workers", daemon=True
            )
            self._reader.start()
            deadline = time.monotonic() + timeout
            with self._state.changed:
                while not self.fatal and not all(s.ready for s in self._slots):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.fatal = (
                            f"{self.spec.name}: workers did not start within {timeout:.0f} s"
                        )
                        break
                    self._state.changed.wait(left)
        finally:
            if self._hold is not None:
                self._hold.close()
                self._hold = None
        if self.fatal:
            message = self.fatal
            self.stop(grace=1.0)
            raise ServeError(message)
        return self.port

    def pids(self) -> list[int]:
        with self._state.lock:
            return [s.pid for s in self._slots if s.pid and not s.done]

    def snapshot(self) -> dict[str, Any]:
        with self._state.lock:
            return self.aggregate.snapshot()

    def stop(self, grace: float = 5.0) -> None:
        """Ask every worker to stop (sessions closed gracefully), wait up to
        ``grace`` + 2 s, then terminate (and kill) what is left."""
        with self._state.lock:
            self._stopping = True
            for slot in self._slots:
                slot.restart_at = None
                if slot.conn is not None and not slot.done:
                    with contextlib.suppress(OSError):
                        slot.conn.send(("stop",))
        deadline = time.monotonic() + grace + 2.0
        with self._state.changed:
            while not self._all_done():
                left = deadline - time.monotonic()
                if left <= 0 or self._reader is None or not self._reader.is_alive():
                    break
                self._state.changed.wait(min(left, 0.5))
        for slot in self._slots:
            proc = slot.process
            if proc is not None and proc.is_alive():
                log.warning(
                    "worker %d (pid %d) did not stop in time: terminated", slot.index, slot.pid
                )
                proc.terminate()
                proc.join(2.0)
                if proc.is_alive():
                    proc.kill()
                    proc.join(1.0)
        if self._reader is not None:
            self._reader.join(2.0)
        for slot in self._slots:
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None

    # --- internals (the lock is held unless said otherwise) ---------------------------------
    def _all_done(self) -> bool:
        return all(s.done or s.process is None for s in self._slots)

    def _spawn(self, slot: _Slot) -> None:
        parent_end, child_end = self._mp.Pipe(duplex=True)
        config = self._config
        if "worker_index" in {f.name for f in dataclasses.fields(config)}:
            # Servers that need to tell their workers apart (the linked game
            # server writes its id + index as the account status) get the index.
            config = dataclasses.replace(config, worker_index=slot.index)
        args = _WorkerArgs(self.spec.name, slot.index, self.spec.build, config, self.log_level)
        proc = self._mp.Process(
            target=_worker_main,
            args=(args, child_end),
            name=f"serverlink-{self.spec.name}-{slot.index}",
            daemon=True,
        )
        proc.start()
        child_end.close()
        slot.process, slot.conn = proc, parent_end
        slot.pid = proc.pid or 0
        slot.started_at = time.monotonic()
        slot.ready = False
        slot.done = False
        slot.restart_at = None

    def _read_loop(self) -> None:
        """The pool's thread: worker messages and deaths, restarts."""
        while True:
            with self._state.lock:
                if self._stopping and self._all_done():
                    self._state.changed.notify_all()
                    return
                waitables: dict[Any, tuple[str, _Slot]] = {}
                for slot in self._slots:
                    if slot.process is not None and not slot.done:
                        waitables[slot.process.sentinel] = ("exit", slot)
                        if slot.conn is not None:
                            waitables[slot.conn] = ("msg", slot)
                    if slot.restart_at is not None and time.monotonic() >= slot.restart_at:
                        log.info("restarting worker %d", slot.index)
                        self._spawn(slot)
                        self._state.changed.notify_all()
            ready = wait(list(waitables), timeout=0.2)
            with self._state.lock:
                # messages first, so a worker's last words come before its death
                for obj in sorted(ready, key=lambda o: waitables[o][0] != "msg"):
                    kind, slot = waitables[obj]
                    if kind == "msg":
                        self._drain(slot)
                    else:
                        self._drain(slot)
                        self._on_exit(slot)
                self._state.changed.notify_all()

    def _drain(self, slot: _Slot) -> None:
        conn = slot.conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._on_message(slot, conn.recv())
        except (EOFError, OSError):
            pass

    def _on_message(self, slot: _Slot, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "log":
            logs.emit_forwarded(message[1])
        elif kind in ("snap", "stopped"):
            self.aggregate.update(slot.index, message[1])
        elif kind == "ready":
            slot.ready = True
            slot.pid = message[2]
        elif kind == "fatal":
            slot.fatal = message[1]

    def _on_exit(self, slot: _Slot) -> None:
        proc = slot.process
        assert proc is not None
        proc.join(1.0)
        code = proc.exitcode
        slot.done = True
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None
        if self._stopping:
            if code not in (0, None):
                log.warning("worker %d (pid %d) exited with %s", slot.index, slot.pid, _exit(code))
            return
        if not slot.ready:
            # It never served: it would fail the same way again.
            self.fatal = slot.fatal or (
                f"{self.spec.name}: worker {slot.index} failed to start ({_exit(code)})"
            )
            return
        self.aggregate.retire(slot.index)
        self.restarts += 1
        log.error("worker %d (pid %d) died (%s); restarting it", slot.index, slot.pid, _exit(code))
        slot.restart_at = max(time.monotonic(), slot.started_at + RESTART_INTERVAL)


def _exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


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
    stop = _Stop()
    stop.install(loop)  # a signal while the workers start stops them cleanly
    start = asyncio.ensure_future(asyncio.to_thread(pool.start))
    await asyncio.wait(
        [start, asyncio.ensure_future(stop.event.wait())], return_when="FIRST_COMPLETED"
    )
    if not start.done():
        log.info("%s while starting: stopping the workers", stop.signal_name)
        try:
            await start
        except ServeError:
            return 0
        await asyncio.to_thread(pool.stop, options.grace)
        return 0
    port = start.result()  # raises ServeError
    started = time.monotonic()
    address = f"{spec.host}:{port}"
    log.info(
        "ready: listening on %s with %d workers (pids %s)",
        address,
        options.workers,
        ", ".join(str(p) for p in pool.pids()),
    )
    monitor = Monitor(
        screen,
        console,
        address=address,
        live=options.live,
        interval=options.stats_interval,
        pids=lambda: [os.getpid(), *pool.pids()],
        workers=options.workers,
        logger=logging.getLogger(f"serverlink.{spec.name}"),
    )
    monitor.start(pool.snapshot())

    def tick() -> None:
        monitor.worker_restarts = pool.restarts
        monitor.update(pool.snapshot())
        if pool.fatal:
            stop.signal_name = "worker failure"
            stop.event.set()

    try:
        await _ticks(stop, 1.0, tick)
    finally:
        monitor.stop(pool.snapshot())
    log.info("%s: stopping %d workers", stop.signal_name, options.workers)
    await asyncio.to_thread(pool.stop, options.grace)
    _Stop.remove(loop)
    log.info("%s", _closing_line(spec.name, pool.snapshot(), time.monotonic() - started))
    if pool.fatal:
        raise ServeError(pool.fatal)
    return 0


# --- entry point ------------------------------------------------------------------------------


def serve(spec: ServerSpec[Any], options: RunOptions, console: Console | None = None) -> int:
    """Run ``spec``'s server until SIGINT/SIGTERM; return the exit status (0).
    Raises ServeError for problems the user can fix (one line)."""
    console = console or logs.make_console()
    if options.workers <= 1:
        logs.set_process_server(spec.name)
        return run_loop(_serve_here(spec, options, console))
    logs.set_process_server(spec.name)
    return run_loop(_serve_workers(spec, options, console))
