"""The process supervisor over real worker processes: typed messages arrive
(ready with the port, snapshots, events, log records), a worker that dies after
it was ready is restarted with its counters kept in the totals (or only
reported), a worker that fails at start stops everything with its one line,
stop is graceful (then forceful), a worker whose parent vanishes stops.

Every wait is on a message or a process exit (``Supervisor.until``), never a
fixed sleep."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import psutil
import pytest

from serverlink.monitor.stats import Aggregator
from serverlink.retry import ExponentialBackoff, Retry
from serverlink.supervise import (
    Event,
    Exited,
    Message,
    Policy,
    Ready,
    Snapshot,
    Stopped,
    SuperviseError,
    Supervisor,
)
from supervised import Plan, work


async def within(waiting: Awaitable[None], timeout: float = 20.0) -> None:
    await asyncio.wait_for(waiting, timeout)


class Inbox:
    """Every message the supervisor delivered, by worker; the figures merged
    as the servers' pool merges them."""

    def __init__(self) -> None:
        self.messages: dict[int, list[Message]] = {}
        self.totals = Aggregator()

    def __call__(self, index: int, message: Message) -> None:
        self.messages.setdefault(index, []).append(message)
        if isinstance(message, Snapshot | Stopped):
            self.totals.update(index, message.data)
        elif isinstance(message, Exited) and message.restart:
            self.totals.retire(index)

    def of(self, index: int, kind: type[Message]) -> list[Message]:
        return [m for m in self.messages.get(index, []) if isinstance(m, kind)]


class Caught(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def supervisor(count: int, plan: Plan, inbox: Inbox, restart: bool = True) -> Supervisor[Plan]:
    return Supervisor(
        "test",
        work,
        lambda index: plan,
        count,
        policy=Policy(restart=restart, restart_interval=0.2, start_timeout=30),
        on_message=inbox,
    )


@pytest.fixture
async def stopped_at_end() -> AsyncIterator[list[Supervisor[Plan]]]:
    started: list[Supervisor[Plan]] = []
    yield started
    for sup in started:
        await sup.stop(grace=1.0)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_typed_messages_arrive_and_stop_is_graceful(
    stopped_at_end: list[Supervisor[Plan]],
) -> None:
    inbox = Inbox()
    caught = Caught()
    logger = logging.getLogger("serverlink.supervised")
    logger.addHandler(caught)
    try:
        sup = supervisor(2, Plan(), inbox)
        stopped_at_end.append(sup)
        await sup.start()
        assert sup.all_ready and len(sup.pids()) == 2
        for i in (1, 2):
            # in the order sent: the event before Ready, the snapshot after it
            kinds = [type(m) for m in inbox.messages[i]]
            assert kinds[:2] == [Event, Ready], kinds
            assert inbox.of(i, Event) == [Event("hello", {"index": i})]
            assert inbox.of(i, Ready) == [Ready(1000 + i, sup.workers[i - 1].pid)]
            assert sup.workers[i - 1].port == 1000 + i
        await within(sup.until(lambda: all(inbox.of(i, Snapshot) for i in (1, 2))))
        assert inbox.of(1, Snapshot) == [Snapshot({"done": 5, "sessions": 1})]
        assert inbox.totals.snapshot()["done"] == 10
        # the workers' log records are emitted here
        lines = sorted(r.getMessage() for r in caught.records)
        assert lines == ["worker 1 starting", "worker 2 starting"]
        assert {r.process for r in caught.records} == set(sup.pids())

        pids = sup.pids()
        began = time.monotonic()
        await sup.stop(grace=10.0)
        assert time.monotonic() - began < 5  # they stopped when asked, not at the deadline
        for i in (1, 2):
            assert inbox.messages[i][-2:] == [Stopped({"done": 6, "sessions": 0}), Exited(0, False)]
            assert sup.workers[i - 1].stopped and sup.workers[i - 1].exitcode == 0
        assert inbox.totals.snapshot()["done"] == 12
        assert sup.all_exited and all(gone(pid) for pid in pids)
    finally:
        logger.removeHandler(caught)


async def test_a_worker_that_ignores_stop_is_terminated_then_killed(
    stopped_at_end: list[Supervisor[Plan]],
) -> None:
    inbox = Inbox()
    sup = supervisor(2, Plan(deaf=2), inbox)
    stopped_at_end.append(sup)
    await sup.start()
    await sup.stop(grace=0.3)
    assert inbox.of(1, Exited) == [Exited(0, False)]
    # SIGTERM only asks it to stop (which it ignores): SIGKILL follows
    assert inbox.of(2, Exited) == [Exited(-signal.SIGKILL, False)]
    assert not inbox.of(2, Stopped) and sup.all_exited


async def test_a_worker_dead_after_ready_is_restarted_and_its_counters_kept(
    stopped_at_end: list[Supervisor[Plan]],
) -> None:
    inbox = Inbox()
    sup = supervisor(2, Plan(), inbox)
    stopped_at_end.append(sup)
    await sup.start()
    await within(sup.until(lambda: inbox.totals.snapshot().get("done") == 10))
    victim = sup.workers[0].pid
    os.kill(victim, signal.SIGKILL)
    await within(sup.until(lambda: sup.restarts == 1 and sup.all_ready))
    assert inbox.of(1, Exited) == [Exited(-signal.SIGKILL, True)]
    assert sup.workers[0].pid != victim and gone(victim)
    assert len(inbox.of(1, Ready)) == 2 and len(sup.pids()) == 2
    # the dead worker's 5 stay in the totals; the new one adds its own 5
    await within(sup.until(lambda: len(inbox.of(1, Snapshot)) == 2))
    totals = inbox.totals.snapshot()
    assert totals["done"] == 15
    assert totals["sessions"] == 2  # a gauge: only the live workers count
    assert sup.failure is None


async def test_with_a_backoff_restarts_of_a_worker_dying_again_wait_longer_each_time(
    stopped_at_end: list[Supervisor[Plan]],
) -> None:
    backoff = Retry(ExponentialBackoff(base=0.2, cap=10.0), retries=-1)
    sup = Supervisor(
        "test",
        work,
        lambda index: Plan(flaky=1),
        1,
        policy=Policy(restart=True, restart_interval=0.0, backoff=backoff),
    )
    stopped_at_end.append(sup)
    caught = Caught()
    logger = logging.getLogger("serverlink.supervise")
    logger.addHandler(caught)
    try:
        await sup.start()
        await within(sup.until(lambda: sup.restarts >= 3))
    finally:
        logger.removeHandler(caught)
    lines = [r.getMessage() for r in caught.records if "restarting it in" in r.getMessage()]
    assert lines[0].startswith("worker 1 (pid ") and "(exit status 5)" in lines[0], lines
    delays = [float(line.split("restarting it in ")[1].split(" s")[0]) for line in lines[:3]]
    # equal jitter: half of base * 2**(n - 1) fixed, half random
    for n, delay in enumerate(delays, 1):
        assert 0.1 * 2 ** (n - 1) - 0.05 <= delay <= 0.2 * 2 ** (n - 1) + 0.05, delays
    assert [f"(restart {n})" in line for n, line in enumerate(lines[:3], 1)] == [True] * 3
    assert sup.failure is None


async def test_without_restart_a_dead_worker_is_only_reported(
    stopped_at_end: list[Supervisor[Plan]],
) -> None:
    inbox = Inbox()
    sup = supervisor(2, Plan(), inbox, restart=False)
    stopped_at_end.append(sup)
    await sup.start()
    os.kill(sup.workers[1].pid, signal.SIGKILL)
    await within(sup.until(lambda: bool(inbox.of(2, Exited))))
    assert inbox.of(2, Exited) == [Exited(-signal.SIGKILL, False)]
    assert sup.restarts == 0 and sup.failure is None
    assert len(sup.pids()) == 1 and not sup.all_exited
    await sup.stop()
    assert sup.all_exited and inbox.of(1, Exited) == [Exited(0, False)]


@pytest.mark.parametrize(
    ("plan", "line"),
    [
        (Plan(refuse=2), "test/2: cannot start: port 7 is taken"),
        (Plan(crash=2), "test worker 2: RuntimeError: boom"),
        (Plan(vanish=2), "test: worker 2 failed to start (exit status 3)"),
    ],
    ids=["its-line", "unexpected", "no-word"],
)
async def test_a_worker_failing_at_start_stops_everything_with_one_line(
    stopped_at_end: list[Supervisor[Plan]], plan: Plan, line: str
) -> None:
    inbox = Inbox()
    sup = supervisor(3, plan, inbox)
    stopped_at_end.append(sup)
    with pytest.raises(SuperviseError) as failed:
        await sup.start()
    assert str(failed.value) == line
    assert sup.failure == line and sup.failed.is_set()
    assert sup.all_exited and sup.restarts == 0
    for i in (1, 3):  # the others were stopped, whether they got ready or not
        assert all(gone(m.pid) for m in inbox.of(i, Ready) if isinstance(m, Ready))
        assert sup.workers[i - 1].exitcode == 0


async def test_start_timeout_is_one_line() -> None:
    sup = Supervisor("slow", work, lambda index: Plan(), 1, policy=Policy(start_timeout=0.001))
    with pytest.raises(SuperviseError, match=r"^slow: workers did not start within 0 s$"):
        await sup.start()
    assert sup.all_exited


def test_a_worker_whose_parent_vanishes_stops_by_itself(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.path.insert(0, sys.argv[1])
        from serverlink.aio import run_loop
        from serverlink.supervise import Supervisor
        from supervised import Plan, work

        async def main() -> None:
            sup = Supervisor("orphan", work, lambda index: Plan(), 2)
            await sup.start()
            print(*sup.pids(), flush=True)
            await asyncio.Event().wait()

        run_loop(main())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2, pids
        workers = [psutil.Process(pid) for pid in pids]
        parent.kill()  # no goodbye: the workers only see their pipe close
        parent.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=20)
        assert not alive, alive
    finally:
        parent.kill()
        parent.wait(10)
