"""A group of commands run as one service: ``serverlink up``'s loop.

``run_group`` starts every ``ChildCommand`` (``supervise.command``) through the
one ``ProcessSupervisor``, waits until each is ready, logs one line per child
saying where it listens, restarts a child that exits with the one backoff policy
(``retry.CHILD_RETRY``; one log line per restart), and on SIGINT/SIGTERM stops
them all: SIGTERM (their graceful stop), SIGKILL after ``stop_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from serverlink.aio import StopSignal, notify, unless_set
from serverlink.retry import CHILD_RETRY
from serverlink.supervise.command import ChildCommand, CommandLauncher
from serverlink.supervise.messages import Policy, SuperviseError
from serverlink.supervise.parent import ProcessSupervisor

log = logging.getLogger("serverlink.up")


@dataclass(frozen=True)
class GroupConfig:
    #: Seconds every server has to be ready (listening) before the start fails.
    start_timeout: float = 30.0
    #: Seconds the servers have to stop gracefully (SIGTERM) before SIGKILL.
    stop_timeout: float = 10.0


async def run_group(
    commands: Sequence[ChildCommand], config: GroupConfig, out: IO[str] | None = None
) -> int:
    """Run ``commands`` until SIGINT/SIGTERM; 0 after a graceful stop. Raises
    SuperviseError (one line) when one cannot start, or cannot be restarted."""
    loop = asyncio.get_running_loop()
    launcher = CommandLauncher(commands, out)
    supervisor = ProcessSupervisor(
        "up",
        launcher,
        len(commands),
        # The one backoff alone paces the restarts (it waits 0.25 s at least).
        policy=Policy(
            restart=True,
            restart_interval=0.0,
            start_timeout=config.start_timeout,
            backoff=CHILD_RETRY,
        ),
    )
    stop = StopSignal()
    stop.install(loop)  # a signal while they start stops them cleanly
    try:
        start = await unless_set(supervisor.start(), stop.event)
        if start is None:
            log.info("%s while starting: stopping the servers", stop.signal_name)
            await supervisor.stop(config.stop_timeout)
            return 0
        start.result()  # raises SuperviseError (the others stopped)
        for worker in supervisor.workers:
            log.info("%s (pid %d): %s", supervisor.label(worker), worker.pid, worker.about)
        log.info("%d servers ready; Ctrl-C or SIGTERM stops them all", len(commands))
        notify(f"READY=1\nSTATUS={len(commands)} servers ready")
        if await unless_set(supervisor.failed.wait(), stop.event) is not None:
            stop.trip("a failure")
        notify("STOPPING=1")
        log.info("%s: stopping %d servers", stop.signal_name, len(supervisor.pids()))
        await supervisor.stop(config.stop_timeout)
        if supervisor.failure is not None:
            raise SuperviseError(supervisor.failure)
        log.info("stopped: %d servers, restarts %d", len(commands), supervisor.restarts)
        return 0
    finally:
        StopSignal.remove(loop)
        launcher.close()
