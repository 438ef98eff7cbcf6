"""What a running server adds for its operators: reports to a monitoring
server, and its own /metrics, /healthz and /readyz.

``Observers`` is composed where a server's snapshot is (``runner``: the
server's own in one process, the merged one of its workers otherwise; the
demo: each worker pool's), so every server kind gets it the same way and
several worker processes report as one server. Once a second it reads the
server (``Sampler``: snapshot, per-second rates, CPU and memory of its
processes) and hands the ``Reading`` to:

- ``MonitorReporter``: a LAN link to the monitoring server (reconnecting with
  the shared retry policy) that sends SS_MONITOR_LOGIN (its ServerNo) once
  connected, then every figure of its kind (``monitor.figures``) as
  SS_MONITOR_DATA_UPDATE, all in one write. Reports never wait: while the link
  is down, or more than ``REPORT_BUFFER_LIMIT`` bytes still wait to be sent to
  a slow monitoring server, that second's figures are dropped and counted.
- ``web.probe.MetricsEndpoint`` (with ``metrics_port``): the snapshot and the
  figures for Prometheus, plus health and readiness.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from serverlink.aio import cancel_and_wait
from serverlink.monitor.figures import KIND_BY_NAME, SERVER_KINDS, Kind, Reading, kind_named
from serverlink.monitor.stats import ProcessSampler, RateTracker
from serverlink.net.client import ReconnectingLink
from serverlink.net.session import Session
from serverlink.protocol.framing import lan_framing
from serverlink.protocol.packets import SS_MONITOR_DATA_UPDATE, SS_MONITOR_LOGIN

log = logging.getLogger("serverlink.reporter")

#: Bytes still unsent to the monitoring server above which a second's figures are dropped.
REPORT_BUFFER_LIMIT = 64 * 1024
#: Seconds between reports (the original's once a second).
REPORT_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class ObserveConfig:
    #: The monitoring server's LAN address to report to; None: no reports.
    monitor: tuple[str, int] | None = None
    #: ServerNo to report as; 0: the kind's own (1 login, 2 game, 3 chat).
    monitor_server_no: int = 0
    #: Port of this server's /metrics, /healthz, /readyz; None: none (0: a free port).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"


class Sampler:
    """One ``Reading`` of a server per call: its snapshot, the per-second rates
    since the last call, its processes' CPU (% of the machine) and memory."""

    def __init__(
        self, snapshot: Callable[[], Mapping[str, Any]], pids: Callable[[], Iterable[int]]
    ) -> None:
        self._snapshot = snapshot
        self._pids = pids
        self._rates = RateTracker()
        self._processes = ProcessSampler()
        self._cpus = psutil.cpu_count() or 1

    def read(self) -> Reading:
        snap = self._snapshot()
        rates = self._rates.update(snap, time.monotonic())
        cpu, rss = self._processes.sample(self._pids())
        return Reading(snap, dict(rates), cpu / self._cpus, rss)


class ReportSession(Session):
    """The reporting side of the LAN connection; the monitoring server sends
    nothing back (anything it sends is a protocol error)."""

    __slots__ = ()


class MonitorReporter:
    """Reports one server's figures to a monitoring server once a second."""

    def __init__(self, kind: Kind, address: tuple[str, int], server_no: int = 0) -> None:
        self.kind = kind
        self.server_no = server_no or kind.server_no
        self.link = ReconnectingLink(
            f"{kind.name}-monitor",
            ReportSession,
            lan_framing(),
            address[0],
            address[1],
            on_up=self._on_up,
        )
        self._framing = self.link.deps.framing
        self._last_session: Session | None = None
        #: Seconds reported, and seconds dropped (link down, or the monitor not reading).
        self.sent = 0
        self.dropped = 0

    def start(self) -> None:
        self.link.start()

    async def stop(self) -> None:
        session = self.link.session
        if session is not None and not session.closed:
            # A graceful stop says so (its "on" figure 0) before the link closes:
            # the monitoring server then tells a stop from a crash.
            on = SS_MONITOR_DATA_UPDATE.build(self.kind.on.data_type, 0, int(time.time()))
            session.send(on)
        await self.link.stop()

    def _on_up(self, session: Session) -> None:
        session.send(SS_MONITOR_LOGIN.build(self.server_no))

    def report(self, reading: Reading) -> bool:
        """Send one second's figures now, or drop them; True when sent."""
        session = self.link.session
        transport = session.transport if session is not None else None
        if session is None or session.closed or transport is None:
            self.dropped += 1
            return False
        if transport.get_write_buffer_size() > REPORT_BUFFER_LIMIT:
            self.dropped += 1
            return False
        if session is self._last_session:
            # It stayed up for a report interval: a later drop is a lost link,
            # not a refusal (the monitoring server answers nothing to confirm).
            self.link.confirm()
        self._last_session = session
        now = int(time.time())
        encode, build = self._framing.encode, SS_MONITOR_DATA_UPDATE.build
        values = self.kind.values(reading)
        session.write_frames(b"".join(encode(build(t, v, now)) for t, v in values), len(values))
        self.sent += 1
        return True

    def snapshot(self) -> dict[str, Any]:
        up = self.link.session is not None and not self.link.session.closed
        return {
            "monitor_link": "up" if up else "down",
            "monitor_reports": self.sent,
            "monitor_dropped": self.dropped,
        }


class Observers:
    """The reporter and the metrics endpoint of one server, ticking once a second."""

    def __init__(
        self,
        name: str,
        config: ObserveConfig,
        snapshot: Callable[[], Mapping[str, Any]],
        pids: Callable[[], Iterable[int]],
        drain: Callable[[bool | None], bool] | None = None,
    ) -> None:
        """``drain``: the server's draining (``runner.Draining.set``), offered as
        POST /drain and /resume on the metrics port."""
        self.name = name
        self.drain = drain
        self.config = config
        self._snapshot = snapshot
        self.sampler = Sampler(snapshot, pids)
        kind = KIND_BY_NAME.get(name)
        #: Its figures (None for a server with none: the monitoring server itself).
        self.kind = kind if kind in SERVER_KINDS else None
        self.server_no = config.monitor_server_no or (kind.server_no if kind else 0)
        self.reporter: MonitorReporter | None = None
        if config.monitor is not None:
            self.reporter = MonitorReporter(kind_named(name), config.monitor, self.server_no)
        self.latest: Reading | None = None
        self.endpoint: Any = None  # web.probe.MetricsEndpoint (aiohttp loaded only then)
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.reporter is not None or self.config.metrics_port is not None

    async def start(self) -> None:
        """Bind the metrics port (OSError when it cannot), start reporting."""
        if self.config.metrics_port is not None:
            from serverlink.web.metrics import SnapshotCollector
            from serverlink.web.probe import MetricsEndpoint

            collector = SnapshotCollector(self.name, self._snapshot, self._figures)
            self.endpoint = MetricsEndpoint(
                self.config.metrics_host, self.config.metrics_port, collector, self.drain
            )
            await self.endpoint.start()
        if self.reporter is not None:
            self.reporter.start()
        if self.active:
            self.tick()
            self._task = asyncio.create_task(self._run(), name=f"{self.name}-observers")

    def _figures(self) -> tuple[Kind, int, Reading] | None:
        if self.kind is None or self.latest is None:
            return None
        return self.kind, self.server_no, self.latest

    def describe(self) -> str:
        """Words for the start line."""
        parts: list[str] = []
        if self.reporter is not None and self.config.monitor is not None:
            host, port = self.config.monitor
            parts.append(f"reports to the monitor at {host}:{port} as {self.reporter.server_no}")
        if self.endpoint is not None:
            parts.append(f"metrics on http://{self.config.metrics_host}:{self.endpoint.port}")
        return "; ".join(parts)

    def tick(self) -> None:
        self.latest = reading = self.sampler.read()
        if self.reporter is not None:
            self.reporter.report(reading)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + REPORT_INTERVAL
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at + REPORT_INTERVAL, loop.time())
            try:
                self.tick()
            except Exception:  # a report must never stop the server
                log.exception("%s: monitoring report failed", self.name)

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        if self.reporter is not None:
            await self.reporter.stop()
        if self.endpoint is not None:
            await self.endpoint.stop()

    def snapshot(self) -> dict[str, Any]:
        return self.reporter.snapshot() if self.reporter is not None else {}
