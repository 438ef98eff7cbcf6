"""Runs the dummy: one ``Worker`` in this process, or worker processes through
the supervisor (``serverlink.supervise``, one event loop each, uvloop when
available) whose snapshots this process only merges into an ``Aggregate``;
returns a ``DummyResult``.

Worker processes wait for ``Go`` (so that all start together), send a
``Snapshot`` of their meter once a second and the final one as ``Stopped``. A
worker that fails before it is ready fails the run (``SuperviseError``, one
line); one that dies during the run is counted (``worker_failed``), not
restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from serverlink.aio import StopSignal, run_loop
from serverlink.dummy.config import DummyConfig, resolve_processes
from serverlink.dummy.metrics import Aggregate, Snapshot
from serverlink.dummy.result import DummyResult, RunEnd, result_of
from serverlink.dummy.verdict import hopeless
from serverlink.dummy.worker import Worker, accounts_of, preflight
from serverlink.supervise import Exited, Go, Message, Policy, Stopped, Supervisor, WorkerLink
from serverlink.supervise import Snapshot as SnapshotMessage

log = logging.getLogger("serverlink.dummy")

#: How long the parent waits for spawned workers to import and report ready.
WORKER_START_TIMEOUT = 60.0
#: How long the parent waits for the final snapshots after Stop.
WORKER_STOP_TIMEOUT = 15.0
#: The parent's display tick lags the workers' snapshot tick by this much, so a
#: tick shows the interval that just ended rather than the one before.
TICK_LAG = 0.1


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


#: ``on_tick(aggregate, elapsed_seconds)``: the dashboard, about once a second.
TickCallback = Callable[[Aggregate, float], None]


# --- worker processes -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Share:
    """One worker process's part of the run (pickled by spawn)."""

    config: DummyConfig
    worker: int  # from 0
    processes: int


async def _worker_process(link: WorkerLink, share: _Share) -> None:
    """A worker process's run (the supervisor's target: module level)."""

    def send(snap: Snapshot) -> None:
        if snap.final:
            link.stopped(snap)
        else:
            link.snapshot(snap)

    config, index = share.config, share.worker
    with quiet_gc():
        accounts = accounts_of(index, share.processes, config.clients)
        worker = Worker(config, index, accounts, send, share.processes)
        await worker.resolve()
        link.ready()
        if await link.wait_go():
            await worker.run(link.stop)


async def _run_processes(
    config: DummyConfig,
    agg: Aggregate,
    on_tick: TickCallback | None,
    stop: asyncio.Event,
) -> tuple[float, str | None]:
    """Run the clients in worker processes, merge their snapshots into ``agg``;
    return the measured duration and why the run stopped early (None: it did
    not). SuperviseError when a worker cannot start."""
    loop = asyncio.get_running_loop()
    processes = len(agg.workers)
    stopping = False

    def on_message(index: int, message: Message) -> None:
        if isinstance(message, SnapshotMessage | Stopped):
            agg.add(message.data)
        elif isinstance(message, Exited) and not agg.workers[index - 1].done:
            agg.worker_failed(index - 1, "no_final_snapshot" if stopping else "exited")

    supervisor = Supervisor(
        "dummy",
        _worker_process,
        lambda index: _Share(config, index - 1, processes),
        processes,
        policy=Policy(restart=False, start_timeout=WORKER_START_TIMEOUT),
        on_message=on_message,
    )
    try:
        await supervisor.start()
        supervisor.broadcast(Go())
        t0 = loop.time()
        try:
            why = await _wait_run(config, agg, on_tick, stop, t0, lambda: supervisor.all_exited)
        finally:
            t1 = loop.time()
    finally:
        stopping = True
        await supervisor.stop(WORKER_STOP_TIMEOUT)
    for index, view in enumerate(agg.workers):
        if not view.done:
            agg.worker_failed(index, "no_final_snapshot")
    return t1 - t0, why


# --- entry points --------------------------------------------------------------------------


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
    started_at = time.time()
    if processes == 1:
        worker = Worker(config, 0, accounts_of(0, 1, config.clients), agg.add)
        await worker.resolve()
        worker_stop = asyncio.Event()
        t0 = loop.time()
        task = loop.create_task(worker.run(worker_stop))
        try:
            why = await _wait_run(config, agg, on_tick, stop, t0, lambda: task.done())
        finally:
            worker_stop.set()
            t1 = loop.time()
            await task
        duration = t1 - t0
    else:
        duration, why = await _run_processes(config, agg, on_tick, stop)
    # Stopped from outside (Ctrl-C, SIGTERM) before its --seconds were over.
    interrupted = stop.is_set() and config.seconds > 0 and duration < config.seconds
    end = RunEnd(started_at, interrupted, why)
    return result_of(config, processes, duration, agg, end)


async def _wait_run(
    config: DummyConfig,
    agg: Aggregate,
    on_tick: TickCallback | None,
    stop: asyncio.Event,
    t0: float,
    workers_gone: Callable[[], bool],
) -> str | None:
    """Wait for the end of the run, calling ``on_tick`` once a second; why it
    cannot go on (``verdict.hopeless``), or None."""
    loop = asyncio.get_running_loop()
    deadline = t0 + config.seconds if config.seconds > 0 else float("inf")
    next_tick = t0 + 1.0 + TICK_LAG
    while not stop.is_set() and not workers_gone():
        now = loop.time()
        if now >= deadline:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(next_tick, deadline) - now)
        now = loop.time()
        if now >= next_tick:
            if on_tick is not None:
                on_tick(agg, now - t0)
            next_tick += 1.0
            why = hopeless(config, agg)
            if why is not None:
                return why
    return None


def run_dummy(config: DummyConfig, on_tick: TickCallback | None = None) -> DummyResult:
    """Run the dummy on a new event loop (uvloop when available) until
    ``config.seconds`` have passed or Ctrl-C / SIGTERM (a graceful end: the
    report says it was interrupted; a second one exits at once), and return
    what it counted. SIGHUP reopens the log file and stops nothing."""

    async def main() -> DummyResult:
        stop = StopSignal()
        loop = asyncio.get_running_loop()
        # Not available off the main thread or on Windows: Ctrl-C then interrupts.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            stop.install(loop)
        length = f"{config.seconds:g} s" if config.seconds else "until Ctrl-C"
        log.info(
            "start: %d clients in %s mode against %s, %s (Ctrl-C or SIGTERM ends it early)",
            config.clients,
            config.mode,
            config.target,
            length,
        )
        try:
            return await run_dummy_async(config, on_tick, stop.event)
        finally:
            with contextlib.suppress(Exception):
                StopSignal.remove(loop)

    with quiet_gc():
        return run_loop(main())
