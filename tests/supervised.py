"""Worker targets for the supervisor tests (a module of their own: a spawned
worker imports it, and only it, to find its target)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import NamedTuple

from serverlink.supervise import SuperviseError, WorkerLink

log = logging.getLogger("serverlink.supervised")


class Plan(NamedTuple):
    """What worker ``index`` does; the other workers behave."""

    #: Raises SuperviseError (its one line) before it is ready.
    refuse: int = 0
    #: Raises an unexpected exception before it is ready.
    crash: int = 0
    #: Exits with status 3, without a word, before it is ready.
    vanish: int = 0
    #: Ignores Stop (and SIGTERM).
    deaf: int = 0
    #: Exits with status 5 as soon as it is ready, every time it is started.
    flaky: int = 0
    #: Its work count, sent in every snapshot.
    done: int = 5


async def work(link: WorkerLink, plan: Plan) -> None:
    i = link.index
    if i == plan.refuse:
        raise SuperviseError(f"test/{i}: cannot start: port 7 is taken")
    if i == plan.crash:
        raise RuntimeError("boom")
    if i == plan.vanish:
        os._exit(3)
    log.info("worker %d starting", i)
    link.event("hello", {"index": i})
    link.ready(port=1000 + i)
    link.snapshot({"done": plan.done, "sessions": 1})
    if i == plan.flaky:
        os._exit(5)
    if i == plan.deaf:
        await asyncio.sleep(3600)
    await link.stop.wait()
    link.stopped({"done": plan.done + 1, "sessions": 0})
