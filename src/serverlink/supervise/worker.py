"""A worker process's side of the supervisor: its entry point and its
``WorkerLink`` to the parent (see ``serverlink.supervise``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from serverlink import logs
from serverlink.aio import run_loop
from serverlink.supervise.messages import (
    Drain,
    Event,
    Fatal,
    Go,
    Log,
    Message,
    Ready,
    Snapshot,
    Stop,
    Stopped,
    SuperviseError,
)

log = logging.getLogger("serverlink.supervise")

A = TypeVar("A")


class WorkerLink:
    """A worker's side of its pipe: the parent's commands as events (``go``,
    ``stop``; both are set when the parent is gone, and SIGTERM sets ``stop``),
    and the messages to it. Sending never raises: with the parent gone a
    message is dropped."""

    def __init__(self, conn: Connection, name: str, index: int) -> None:
        self.name = name
        #: The worker's number, from 1.
        self.index = index
        self.go = asyncio.Event()
        self.stop = asyncio.Event()
        self._conn = conn
        self._lock = threading.Lock()  # log records may come from other threads
        self._gone = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Told each ``Drain`` command (a server that drains sets it).
        self.on_drain: Callable[[bool], object] | None = None

    def send(self, message: Message) -> None:
        if self._gone:
            return
        try:
            with self._lock:
                self._conn.send(message)
        except (OSError, ValueError):
            self._parent_gone()

    def ready(self, port: int = 0, about: str = "") -> None:
        self.send(Ready(port, os.getpid(), about))

    def snapshot(self, data: Any) -> None:
        self.send(Snapshot(data))

    def event(self, name: str, data: Any = None) -> None:
        self.send(Event(name, data))

    def stopped(self, data: Any = None) -> None:
        self.send(Stopped(data))

    async def wait_go(self) -> bool:
        """Wait for ``Go``: True, or False when told to stop first."""
        if not (self.go.is_set() or self.stop.is_set()):
            waits = [asyncio.ensure_future(e.wait()) for e in (self.go, self.stop)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        return not self.stop.is_set()

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        fd = self._conn.fileno()
        loop.add_reader(fd, self._on_command)
        # uvloop makes a watched fd non-blocking; Connection.recv must block until
        # a whole message is in, or a message read in two parts raises
        # BlockingIOError (seen as a dead peer).
        os.set_blocking(fd, True)
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)

    def _on_command(self) -> None:
        try:
            while self._conn.poll():
                command = self._conn.recv()
                if isinstance(command, Go):
                    self.go.set()
                elif isinstance(command, Stop):
                    self.stop.set()
                elif isinstance(command, Drain) and self.on_drain is not None:
                    self.on_drain(command.draining)
        except (EOFError, OSError):
            self._parent_gone()

    def _parent_gone(self) -> None:
        self._gone = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.current_thread() is threading.main_thread():
            self._release()
        else:
            loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._conn.fileno())
        self.go.set()
        self.stop.set()


WorkerTarget = Callable[[WorkerLink, A], Awaitable[None]]


@dataclass(frozen=True)
class WorkerBoot(Generic[A]):
    """What a worker process needs (pickled by 'spawn')."""

    name: str
    index: int
    target: WorkerTarget[A]
    args: A
    log_level: int


def worker_main(boot: WorkerBoot[Any], conn: Connection) -> None:
    """Entry point of a worker process (module level: spawn imports it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a hangup reopens the parent's log file
    logs.set_process_server(f"{boot.name}/{boot.index}")
    link = WorkerLink(conn, boot.name, boot.index)
    logs.setup_worker_logging(boot.log_level, lambda record: link.send(Log(record)))
    code = 0
    try:
        run_loop(_worker_run(boot, link))
    except SuperviseError as exc:
        link.send(Fatal(str(exc)))
        code = 1
    except Exception as exc:
        log.debug("worker failed", exc_info=True)
        link.send(Fatal(f"{boot.name} worker {boot.index}: {type(exc).__name__}: {exc}"))
        code = 1
    sys.exit(code)


async def _worker_run(boot: WorkerBoot[Any], link: WorkerLink) -> None:
    link._listen(asyncio.get_running_loop())
    await boot.target(link, boot.args)
