"""The one place that picks and runs an event loop, and the stop signals.

Every process of the stack (a server, a supervisor's worker, the dummy, the
demo) runs its main coroutine with ``run_loop``: uvloop's loop when it is
importable, asyncio's otherwise.

``StopSignal``: the first SIGINT/SIGTERM sets an event (a graceful stop), a
second one ends the process at once; SIGHUP reopens the log file (logrotate)
and never stops anything. ``ticks``: call something every N seconds, without
drift, until an event is set. ``cancel_and_wait``: end tasks before a
stop returns. ``notify``: tell systemd (``Type=notify`` units,
``NOTIFY_SOCKET`` set) that the service is ready or stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from serverlink import logs

log = logging.getLogger("serverlink.runner")

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when importable, else None (asyncio's default)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` in a new event loop (uvloop when importable)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


class StopSignal:
    """Set by the first SIGINT/SIGTERM; a second one ends the process at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal_name = ""

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)

    @staticmethod
    def _on_hangup() -> None:
        logs.reopen_log_files()
        log.info("SIGHUP: log file reopened")

    def trip(self, reason: str) -> None:
        """Stop for another reason than a signal (e.g. "worker failure")."""
        if not self.event.is_set():
            self.signal_name = reason
            self.event.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.event.is_set():
            log.warning("second %s: exiting now, without a graceful shutdown", sig.name)
            logging.shutdown()
            os._exit(1)
        self.trip(sig.name)

    @classmethod
    def remove(cls, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (*cls.SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def notify(state: str) -> None:
    """``sd_notify``: send ``state`` (``READY=1``, ``STOPPING=1``, ...) to systemd
    when it asked for it (``NOTIFY_SOCKET``); a no-op otherwise."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.debug("sd_notify %s to %s failed: %s", state, address, exc)


async def ticks(stop: asyncio.Event, every: float, tick: Callable[[], None]) -> None:
    """Call ``tick`` every ``every`` seconds (no drift) until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    next_at = loop.time() + every
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))
        except TimeoutError:
            next_at += every
            if next_at < loop.time():  # the loop was stalled: do not catch up in a burst
                next_at = loop.time() + every
            tick()


async def unless_set(work: Awaitable[T], event: asyncio.Event) -> asyncio.Future[T] | None:
    """Run ``work`` until it is done (its future: ``result()`` returns or
    raises) or ``event`` is set first (None: ``work`` was cancelled, and has
    ended): a start that a signal can interrupt."""
    task = asyncio.ensure_future(work)
    waited = asyncio.ensure_future(event.wait())
    await asyncio.wait([task, waited], return_when=asyncio.FIRST_COMPLETED)
    waited.cancel()
    if task.done():
        return task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel ``tasks`` and wait until each has ended: a stop that returned
    while one still ran would let it use what the stop closes next."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task
