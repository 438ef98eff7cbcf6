"""The parent's side of the supervisor: ``ProcessSupervisor`` and ``Supervisor`` (see
``serverlink.supervise``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from serverlink import logs
from serverlink.supervise.launch import Channel, Launcher, ProcessHandle, SpawnLauncher
from serverlink.supervise.messages import (
    Command,
    Exited,
    Fatal,
    Log,
    Message,
    Policy,
    Ready,
    Stop,
    Stopped,
    SuperviseError,
)
from serverlink.supervise.worker import WorkerTarget

log = logging.getLogger("serverlink.supervise")

A = TypeVar("A")


@dataclass(eq=False)
class WorkerState:
    """The parent's view of one worker (of its current process)."""

    index: int
    process: ProcessHandle | None = None
    conn: Channel | None = None
    pid: int = 0
    #: From its Ready message.
    port: int = 0
    about: str = ""
    ready: bool = False
    #: It sent Stopped.
    stopped: bool = False
    alive: bool = False
    exitcode: int | None = None
    #: Its Fatal message.
    fatal: str = ""
    started_at: float = 0.0
    restart: asyncio.TimerHandle | None = None
    #: It was ready at least once (a process before this one, or this one).
    served: bool = False
    #: Deaths in a row, each less than ``Policy.stable_after`` after its start.
    failures: int = 0


MessageHandler = Callable[[int, Message], None]


class ProcessSupervisor:
    """N child processes started by ``launcher``, index 1..N.

    ``on_message(index, message)`` gets every message but ``Log`` (emitted
    here), and ``Exited``; it runs on the event loop and must not block.
    """

    def __init__(
        self,
        name: str,
        launcher: Launcher,
        count: int,
        *,
        policy: Policy | None = None,
        on_message: MessageHandler | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a supervisor needs at least one worker")
        self.name = name
        self.launcher = launcher
        self.policy = policy or Policy()
        self.on_message = on_message
        self.workers = [WorkerState(i) for i in range(1, count + 1)]
        #: Workers restarted after they died.
        self.restarts = 0
        #: The one-line reason of a fatal failure (set with ``failed``).
        self.failure: str | None = None
        self.failed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._change = asyncio.Event()

    # --- public ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every worker and wait until each is ready. Raises
        SuperviseError (after stopping the others) when one cannot start."""
        self._loop = asyncio.get_running_loop()
        try:
            for worker in self.workers:
                self._spawn(worker)
        except OSError as exc:
            self._fail(f"{self.name}: cannot start a worker process: {exc.strerror or exc}")
        except BaseException:
            await self.stop(grace=1.0)
            raise
        timeout = self.policy.start_timeout
        try:
            async with asyncio.timeout(timeout):
                await self.until(lambda: self.failure is not None or self.all_ready)
        except TimeoutError:
            self._fail(f"{self.name}: workers did not start within {timeout:.0f} s")
        if self.failure is not None:
            await self.stop(grace=1.0)
            raise SuperviseError(self.failure)

    @property
    def all_ready(self) -> bool:
        """Every worker is ready (or was, and died without being restarted)."""
        return all(w.ready for w in self.workers)

    @property
    def all_exited(self) -> bool:
        """No worker runs, nor is about to be restarted."""
        return not any(w.alive or w.restart is not None for w in self.workers)

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.alive]

    def send(self, index: int, command: Command) -> None:
        worker = self.workers[index - 1]
        if worker.alive and worker.conn is not None:
            with contextlib.suppress(OSError):  # it is exiting: its sentinel tells
                worker.conn.send(command)

    def broadcast(self, command: Command) -> None:
        for worker in self.workers:
            self.send(worker.index, command)

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until ``check()`` holds, checking after every message, exit and
        start of a worker."""
        while not check():
            await self._change.wait()

    async def stop(self, grace: float = 5.0) -> None:
        """``Stop`` to every worker; after ``grace`` seconds SIGTERM, 2 s later SIGKILL."""
        self._stopping = True
        for worker in self.workers:
            if worker.restart is not None:
                worker.restart.cancel()
                worker.restart = None
        if self._loop is None:
            return
        self.broadcast(Stop())
        if await self._exited_within(grace):
            return
        for worker, process in self._alive():
            log.warning(
                "%s (pid %d) did not stop within %.0f s: terminated",
                self.label(worker),
                worker.pid,
                grace,
            )
            process.terminate()
        if await self._exited_within(2.0):
            return
        for _, process in self._alive():
            process.kill()
        if not await self._exited_within(2.0):
            for worker, _ in self._alive():
                log.error("%s (pid %d) does not exit; left behind", self.label(worker), worker.pid)
                self._forget(worker)

    # --- internals --------------------------------------------------------------------------
    def _alive(self) -> list[tuple[WorkerState, ProcessHandle]]:
        return [(w, w.process) for w in self.workers if w.alive and w.process is not None]

    async def _exited_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.until(lambda: not self._alive())
        except TimeoutError:
            return False
        return True

    def _notify(self) -> None:
        change, self._change = self._change, asyncio.Event()
        change.set()

    def _fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            self.failed.set()
        self._notify()

    def label(self, worker: WorkerState) -> str:
        return self.launcher.label(worker.index)

    def _spawn(self, worker: WorkerState) -> None:
        assert self._loop is not None
        process, parent_end = self.launcher.launch(worker.index)
        worker.process, worker.conn, worker.pid = process, parent_end, process.pid or 0
        worker.ready = worker.stopped = False
        worker.alive = True
        worker.exitcode = None
        worker.fatal = ""
        worker.started_at = time.monotonic()
        worker.restart = None
        self._loop.add_reader(parent_end.fileno(), self._drain, worker)
        os.set_blocking(parent_end.fileno(), True)  # see WorkerLink._listen
        self._loop.add_reader(process.sentinel, self._on_sentinel, worker)
        self._notify()

    def _respawn(self, worker: WorkerState) -> None:
        worker.restart = None
        if self._stopping:
            return
        log.debug("restarting %s", self.label(worker))
        try:
            self._spawn(worker)
        except Exception as exc:  # e.g. out of processes: a failure, in one line
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._fail(f"{self.name}: cannot restart {self.label(worker)}: {reason}")

    def _drain(self, worker: WorkerState) -> None:
        conn = worker.conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._on_message(worker, conn.recv())
        except (EOFError, OSError):
            self._unwatch_conn(worker)  # the worker closed its end: it is exiting
        except Exception as exc:  # an unreadable message: the stream is lost
            log.error(
                "%s: unreadable message (%s: %s)", self.label(worker), type(exc).__name__, exc
            )
            self._unwatch_conn(worker)

    def _on_message(self, worker: WorkerState, message: Message) -> None:
        if isinstance(message, Log):
            logs.emit_forwarded(message.record)
            return
        if isinstance(message, Ready):
            worker.ready = worker.served = True
            worker.pid, worker.port, worker.about = message.pid, message.port, message.about
        elif isinstance(message, Stopped):
            worker.stopped = True
        elif isinstance(message, Fatal):
            worker.fatal = message.message
            if worker.ready:
                log.error("%s: %s", self.label(worker), message.message)
        self._deliver(worker, message)

    def _deliver(self, worker: WorkerState, message: Message) -> None:
        if self.on_message is not None:
            try:
                self.on_message(worker.index, message)
            except Exception as exc:  # the owner's bug must not break the supervision
                log.error(
                    "%s handler failed: %s: %s", type(message).__name__, type(exc).__name__, exc
                )
                log.debug("handler failure", exc_info=True)
        self._notify()

    def _on_sentinel(self, worker: WorkerState, tries: int = 0) -> None:
        assert self._loop is not None and worker.process is not None
        if tries == 0:
            self._loop.remove_reader(worker.process.sentinel)
            self._drain(worker)  # its last words come before its death
        code = worker.process.exitcode
        if code is None and tries < 200:  # the sentinel can close just before the exit status
            self._loop.call_later(0.005, self._on_sentinel, worker, tries + 1)
            return
        self._forget(worker)
        worker.exitcode = code
        restart = False
        name, pid = self.label(worker), worker.pid
        if self._stopping:
            if code not in (0, None):
                log.warning("%s (pid %d) exited with %s", name, pid, _exit(code))
        elif not worker.ready and not (worker.served and self.policy.backoff is not None):
            self._fail(worker.fatal or f"{self.name}: {name} failed to start ({_exit(code)})")
        elif self.policy.restart:
            restart = True
            served, worker.ready = worker.ready, False  # until its new process says so
            self.restarts += 1
            delay = self._restart_delay(worker)
            log.error(
                "%s (pid %d) %s (%s); restarting it in %.1f s (restart %d)",
                name,
                pid,
                "died" if served else "failed to start again",
                worker.fatal or _exit(code),
                delay,
                self.restarts,
            )
            worker.restart = self._loop.call_later(delay, self._respawn, worker)
        else:
            log.error("%s (pid %d) died (%s)", name, pid, _exit(code))
        self._deliver(worker, Exited(code, restart))

    def _restart_delay(self, worker: WorkerState) -> float:
        """At most one start per ``restart_interval``; with a ``backoff``, its
        delay after the deaths in a row (a process that ran ``stable_after``
        seconds starts the count again)."""
        now = time.monotonic()
        delay = max(0.0, worker.started_at + self.policy.restart_interval - now)
        if self.policy.backoff is None:
            return delay
        if now - worker.started_at >= self.policy.stable_after:
            worker.failures = 0
        worker.failures += 1
        return max(delay, self.policy.backoff.delay(worker.failures))

    def _unwatch_conn(self, worker: WorkerState) -> None:
        if worker.conn is not None and self._loop is not None:
            self._loop.remove_reader(worker.conn.fileno())
            worker.conn.close()
            worker.conn = None

    def _forget(self, worker: WorkerState) -> None:
        """The process is gone (or given up): stop watching it, free its descriptors."""
        self._unwatch_conn(worker)
        process, worker.process = worker.process, None
        worker.alive = False
        if process is not None and self._loop is not None:
            self._loop.remove_reader(process.sentinel)
            if process.exitcode is not None:
                process.close()


def _exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor(ProcessSupervisor, Generic[A]):
    """N worker processes running ``target(link, args(index))``, index 1..N
    (``SpawnLauncher``)."""

    def __init__(
        self,
        name: str,
        target: WorkerTarget[A],
        args: Callable[[int], A],
        count: int,
        *,
        policy: Policy | None = None,
        on_message: MessageHandler | None = None,
        log_level: int = logging.INFO,
    ) -> None:
        launcher = SpawnLauncher(name, target, args, log_level)
        super().__init__(name, launcher, count, policy=policy, on_message=on_message)
