"""The monitoring server: servers report on its LAN port, monitoring tools
(the original Windows tool among them) log in on its client port and receive
every server's figures as they arrive (``servers.relay``); it adds the
machine's figures and its own (ServerNo 0) once a second, keeps a history
(``store.history``) and serves the web dashboard and /metrics (``web.dashboard``),
all on one event loop.

One process (``max_workers = 1``): the board of servers lives in it. A second
monitoring server is a second process on its own ports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from serverlink.aio import cancel_and_wait
from serverlink.errors import StartupError
from serverlink.logs import RateLimitedLog
from serverlink.monitor.figures import GAME, LOGIN, MACHINE
from serverlink.monitor.machine import MachineSampler
from serverlink.monitor.screen import Row, ScreenSpec, breakdown, fmt, rate, value
from serverlink.net.server import ServerLimits, SessionServer
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import lan_framing, net_framing
from serverlink.servers.relay import ORIGINAL_LOGIN_KEY, MonitorCore, ReportingSession, ToolSession
from serverlink.servers.reporter import Sampler
from serverlink.store import StoreError
from serverlink.store.history import DEFAULT_HISTORY_URL, HistoryStore, Sample

log = logging.getLogger("serverlink.monitor")

#: Report links at most (servers and their workers).
MAX_REPORTERS = 256
#: Seconds a connection has to log in (either port).
LOGIN_DEADLINE = 5.0
#: Bytes queued for a tool that does not read before it is dropped.
TOOL_SEND_BUFFER_LIMIT = 256 * 1024
DAY = 86400.0


def _no_event(name: str, data: Any) -> None:
    pass


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    #: The tools' port (Net frame, the monitoring code and keys).
    host: str = "127.0.0.1"
    port: int = 12212
    #: The servers' port (LAN frame); None: ``host``.
    lan_host: str | None = None
    lan_port: int = 20150
    #: Addresses that may report; none given: loopback only (unless lan_allow_any).
    lan_allow: tuple[str, ...] = ()
    lan_allow_any: bool = False
    #: The dashboard, its JSON API and /metrics; None: ``host``. Port 0: a free one.
    http_host: str | None = None
    http_port: int = 8080
    #: CS_MONITOR_TOOL_REQ_LOGIN's key: 32 bytes (the original tool's LOGIN_KEY).
    login_key: str = ORIGINAL_LOGIN_KEY
    #: The tools' Net frame (the original tool's PACKET_CODE, PACKET_KEY1, PACKET_KEY2).
    tool_code: int = 109
    tool_key1: int = 30
    tool_key2: int = 91
    max_tools: int = 64
    #: A server that sent nothing for this long is off (and its connection dropped).
    silent_after: float = 10.0
    #: The history: sqlite:///path.db or mysql://user@host/status_server.
    history_db: str = DEFAULT_HISTORY_URL
    #: Seconds between history rows.
    save_interval: float = 10.0
    #: Rows older than this many seconds are deleted.
    retention: float = 7 * DAY
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if len(self.key_bytes) != 32:
            raise ValueError(f"the tool login key must be 32 bytes, got {len(self.key_bytes)}")

    @property
    def key_bytes(self) -> bytes:
        return self.login_key.encode("utf-8")

    @property
    def codec(self) -> NetCodec:
        return NetCodec(self.tool_code, self.tool_key1, self.tool_key2)


class MonitorServer:
    name = "monitor"
    max_workers: ClassVar[int | None] = 1

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.core = MonitorCore(
            config.key_bytes,
            net_framing(config.codec),
            config.lan_allow,
            config.lan_allow_any,
            config.silent_after,
        )
        self.lan = SessionServer(
            "monitor-lan",
            lambda deps: ReportingSession(deps, self.core),
            lan_framing(),
            config.lan_host or config.host,
            config.lan_port,
            ServerLimits(
                max_sessions=MAX_REPORTERS,
                idle_timeout=0,  # silence is the core's: off after silent_after
                login_deadline=LOGIN_DEADLINE,
                tcp_keepalive=True,
            ),
        )
        self.tools = SessionServer(
            "monitor",
            lambda deps: ToolSession(deps, self.core),
            net_framing(config.codec),
            config.host,
            config.port,
            ServerLimits(
                max_sessions=config.max_tools,
                idle_timeout=0,  # the original tool sends nothing after its login
                login_deadline=LOGIN_DEADLINE,
                send_buffer_limit=TOOL_SEND_BUFFER_LIMIT,
            ),
        )
        self.stats = self.tools.stats
        self.history = HistoryStore(config.history_db)
        self.history_rows = 0
        self.history_errors = 0
        self._history_log = RateLimitedLog(log, burst=1, interval=60.0)
        self.machine = MachineSampler()
        self.sampler = Sampler(self._own_snapshot, lambda: [os.getpid()])
        self.web: Any = None  # web.dashboard.Dashboard
        #: ``ports`` {"lan", "tools", "http"} once listening (the demo links servers to it).
        self.on_event: Callable[[str, Any], None] = _no_event
        #: Called once a second after the figures are published (the dashboard's push).
        self.on_tick: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        return self.tools.port

    @property
    def lan_port(self) -> int:
        return self.lan.port

    @property
    def http_port(self) -> int:
        return int(self.web.port) if self.web is not None else 0

    async def start(self) -> None:
        from serverlink.web.dashboard import Dashboard

        config = self.config
        started: list[Any] = []
        try:
            for part in (self.lan, self.tools):
                await part.start()
                started.append(part)
            self.web = Dashboard(self, config.http_host or config.host, config.http_port)
            await self.web.start()
            started.append(self.web)
            await self.history.connect()
        except (OSError, StoreError) as exc:
            for part in reversed(started):
                await part.stop()
            await self.history.close()
            if isinstance(exc, StoreError):
                raise StartupError(f"history database {self.history.display_url}: {exc}") from None
            raise
        self.on_event("ports", {"lan": self.lan_port, "tools": self.port, "http": self.http_port})
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._ticker()), loop.create_task(self._saver())]
        if config.lan_allow_any:
            log.warning("--lan-allow-any: servers may report from any address")

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        if self.web is not None:
            await self.web.stop()
        await self.tools.stop()
        await self.lan.stop()
        await self.history.close()

    def describe(self) -> str:
        lan = f"{self.lan.host}:{self.lan_port}"
        return (
            f"monitoring server; servers report on {lan}; dashboard on "
            f"http://{self.web.host}:{self.http_port}/; history in {self.history.display_url}"
        )

    # --- once a second: the machine and the monitoring server itself (ServerNo 0) ---------
    def _own_snapshot(self) -> dict[str, Any]:
        return {
            **self.machine.sample(),
            "queued_bytes": self.core.queued_bytes(),
            "login_servers": self.core.count_on(LOGIN),
            "game_servers": self.core.count_on(GAME),
        }

    def tick(self) -> None:
        self.core.tick(MACHINE.values(self.sampler.read()))
        for hook in self.on_tick:
            hook()

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("monitoring tick failed")
            next_at = max(next_at + 1.0, loop.time())
            await asyncio.sleep(next_at - loop.time())

    # --- history ----------------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        """Each known server's latest figures (only "on" = 0 for one that is off)."""
        out: list[Sample] = []
        for state in self.core.servers.values():
            kind = state.kind
            if kind is None or not state.values:
                continue
            values: dict[str, int | None] = {f.name: None for f in kind.figures}
            if state.on:
                for data_type, (figure_value, _) in state.values.items():
                    figure = kind.figure(data_type)
                    if figure is not None:
                        values[figure.name] = figure_value
            values[kind.on.name] = 1 if state.on else 0
            out.append((kind, state.server_no, values))
        return out

    async def save(self) -> int:
        """Write one history row per server and delete the rows past the retention."""
        now = time.time()
        try:
            written = await self.history.save(self.samples(), now)
            await self.history.prune(now - self.config.retention)
        except StoreError as exc:
            self.history_errors += 1
            self._history_log.warning("history", "history not saved: %s", exc)
            return 0
        self.history_rows += written
        return written

    async def _saver(self) -> None:
        while True:
            await asyncio.sleep(self.config.save_interval)
            await self.save()

    # --- console ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = self.stats.snapshot()
        counters = self.core.counters
        servers = [s for s in self.core.servers.values() if s.server_no]
        snap.update(
            tools=len(self.core.tools),
            servers_on=sum(1 for s in servers if s.on),
            servers_known=len(servers),
            updates=counters["updates"],
            relayed=counters["relayed"],
            tool_logins=counters["tool_logins"],
            tool_refused=counters["tool_refused"],
            refused_links=counters["refused_links"],
            history_rows=self.history_rows,
            history_errors=self.history_errors,
            lan_errors=dict(self.lan.stats.errors),
        )
        return snap


def build_monitor_server(config: MonitorConfig) -> MonitorServer:
    """Builder of the monitoring server (module level: worker processes import it)."""
    return MonitorServer(config)


MONITOR_SCREEN = ScreenSpec(
    "monitor",
    (
        Row(
            "Servers",
            (value("servers_on", "reporting"), value("servers_known", "known")),
        ),
        Row("Updates", (value("updates"), rate("updates"))),
        Row("Tools", (value("tools", "logged in"), rate("relayed", "frames relayed"))),
        Row(
            "Refused",
            (
                value("tool_refused", "wrong tool key"),
                value("refused_links", "untrusted servers"),
            ),
        ),
        Row("History", (value("history_rows", "rows"), value("history_errors", "failed saves"))),
        Row("Sessions", (fmt("{sessions} tools"), value("accepted", "accepted"))),
        breakdown("Tool errors", "errors"),
        breakdown("Server errors", "lan_errors"),
    ),
)
