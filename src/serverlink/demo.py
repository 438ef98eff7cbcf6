"""The demo: the linked system on the embedded database, driven by the dummy.

``run_demo(options, console)`` seeds the demo database (first run), starts a
monitoring server (its dashboard's URL is printed), a login server, a linked
game server and a linked chat server (one worker process each, free ports,
through the supervisor; all report to the monitoring server), then runs two
dummies at once through the login server: one in login mode (game traffic:
login, game login, echoes; the live dashboard, or one line a second) and one
in chat mode (moves and messages, every delivery checked), each on accounts
of its own; then it stops the servers and prints the summaries (stdout), a
line per server. ``standalone``: only a standalone game server and the dummy
in echo mode.

Readiness is told by messages, never by polling: the login server's worker
announces its LAN port (event ``lan``, before it is ready) and every change of
its linked servers (event ``links``); the demo starts the game server on that
port and runs the dummy once a ``links`` event counts a game server.

SIGINT/SIGTERM end the dummy's run early (then the summary as usual, and
``DemoInterrupted``: exit status 130); a second one exits at once; SIGHUP
reopens the log file. Failures the user can fix are ``DemoError``, one line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from serverlink import logs
from serverlink.aio import StopSignal, run_loop
from serverlink.dummy import DummyConfig, DummyResult, run_dummy_async
from serverlink.dummy.dashboard import LiveDashboard, QuietPrinter, summary_table
from serverlink.runner import ServeError, ServerSpec
from serverlink.servers.chat import ChatConfig, build_chat_server
from serverlink.servers.game import GameConfig, build_game_server
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginConfig, build_login_server
from serverlink.servers.monitor import MonitorConfig, build_monitor_server
from serverlink.servers.reporter import ObserveConfig, Observers
from serverlink.store import parse_db_url
from serverlink.store.admin import seed_db
from serverlink.store.config import StoreConfig
from serverlink.supervise import Event, SuperviseError
from serverlink.workers import WorkerPool

log = logging.getLogger("serverlink.demo")

HOST = "127.0.0.1"
#: Seconds the game server has to link to the login server.
LINK_TIMEOUT = 15.0
#: Seconds the servers get to close their sessions at the end.
STOP_GRACE = 2.0


class DemoError(Exception):
    """A failure the user can fix, in one line; exit status 1."""


class DemoInterrupted(DemoError):
    """Ctrl-C or SIGTERM before --seconds were over (after the summary)."""


@dataclass(frozen=True)
class DemoOptions:
    seconds: float = 30.0
    clients: int = 200
    echo_depth: int = 5
    disconnect_rate: float = 0.02
    db: str = "sqlite:///serverlink-demo.db"
    standalone: bool = False
    #: One status line a second instead of the live dashboard.
    quiet: bool = False
    #: Level of the server processes' loggers.
    log_level: int = logging.INFO
    #: The monitoring dashboard's port (0: a free one; its URL is printed).
    http_port: int = 0
    #: Virtual chat players (moving, one message a second each); 0: no chat server.
    chat_clients: int = 100


def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo on a new event loop; the exit status (0: no side counted
    an error). Raises DemoError."""
    logs.set_process_server("demo")
    return run_loop(_demo(options, console))


async def _demo(options: DemoOptions, console: Console) -> int:
    stop = StopSignal()
    stop.install(asyncio.get_running_loop())
    pools: list[tuple[str, WorkerPool]] = []
    monitored = Monitored()
    try:
        await monitored.start_monitor(pools, options)
        if options.standalone:
            spec = ServerSpec("game", build_game_server, GameConfig(host=HOST, port=0))
            port = await _start(pools, spec, options.log_level)
            dummy = DummyConfig(
                mode="echo", game_host=HOST, game_port=port, clients=options.clients
            )
            chat = None
        else:
            dummy, chat = await _start_linked(pools, options)
        await monitored.report(pools)
        dummy = dataclasses.replace(
            dummy,
            echo_depth=options.echo_depth,
            seconds=options.seconds,
            disconnect_rate=options.disconnect_rate,
        )
        log.info(
            "dummy: %d clients in %s mode, echo depth %d, %.0f s",
            options.clients,
            dummy.mode,
            options.echo_depth,
            options.seconds,
        )
        if chat is not None:
            chat = dataclasses.replace(chat, seconds=options.seconds)
            log.info("dummy: %d chat clients through the login server", options.chat_clients)
        result, chat_result = await _run_dummies(dummy, chat, options.quiet, console, stop.event)
    finally:
        await monitored.stop()
        for _, pool in reversed(pools):
            await pool.stop(STOP_GRACE)
    code = _summary(result, chat_result, pools)
    print(f"demo: the dashboard was at {monitored.url}", flush=True)
    return code


class Monitored:
    """The demo's monitoring server (a worker process) and the reports of the
    other servers to it, made here from their pools' merged snapshots."""

    def __init__(self) -> None:
        self.lan_port = 0
        self.url = ""
        self.observers: list[Observers] = []

    async def start_monitor(
        self, pools: list[tuple[str, WorkerPool]], options: DemoOptions
    ) -> None:
        def on_event(event: Event) -> None:
            if event.name == "ports":
                self.lan_port = int(event.data["lan"])
                self.url = f"http://{HOST}:{event.data['http']}/"

        config = MonitorConfig(
            host=HOST,
            port=0,
            lan_port=0,
            http_port=options.http_port,
            history_db=demo_history_url(options.db),
        )
        await _start(
            pools, ServerSpec("monitor", build_monitor_server, config), options.log_level, on_event
        )
        if not self.lan_port:
            raise DemoError("demo: the monitoring server did not tell its ports")
        log.info("dashboard: %s", self.url)

    async def report(self, pools: list[tuple[str, WorkerPool]]) -> None:
        """Every server but the monitor reports to it from now on."""
        for name, pool in pools:
            if name != "monitor":
                observers = Observers(
                    name, ObserveConfig(monitor=(HOST, self.lan_port)), pool.snapshot, pool.pids
                )
                await observers.start()
                self.observers.append(observers)

    async def stop(self) -> None:
        for observers in self.observers:
            await observers.stop()


async def _start(
    pools: list[tuple[str, WorkerPool]],
    spec: ServerSpec[Any],
    level: int,
    on_event: Callable[[Event], None] | None = None,
) -> int:
    pool = WorkerPool(spec, 1, log_level=level, on_event=on_event)
    pools.append((spec.name, pool))
    try:
        port = await pool.start()
    except ServeError as exc:
        raise DemoError(str(exc)) from None
    log.info("%s server on %s:%d (pid %s)", spec.name, HOST, port, ", ".join(map(str, pool.pids())))
    return port


async def _start_linked(
    pools: list[tuple[str, WorkerPool]], options: DemoOptions
) -> tuple[DummyConfig, DummyConfig | None]:
    """Seed the demo database if needed, start a login server and the game and
    chat servers linked to it, wait until they are linked; the configs of the
    login-mode dummy and of the chat-mode dummy (None without chat clients),
    each with accounts of its own (one key file each)."""
    db = options.db
    keys = demo_keys_path(db)
    game_accounts = max(2 * options.clients, 100)
    await _seed(db, keys, game_accounts + options.chat_clients)
    chat_keys = keys.with_suffix(".chat.txt")
    lines = keys.read_text().splitlines(keepends=True)
    keys_game = keys.with_suffix(".game.txt")
    keys_game.write_text("".join(lines[:game_accounts]))
    chat_keys.write_text("".join(lines[game_accounts : game_accounts + options.chat_clients]))
    lan_port = 0
    linked = asyncio.Event()
    wanted_chat = 1 if options.chat_clients else 0

    def on_login_event(event: Event) -> None:
        nonlocal lan_port
        if event.name == "lan":
            lan_port = int(event.data["port"])
        elif (
            event.name == "links"
            and event.data.get("game", 0) >= 1
            and event.data.get("chat", 0) >= wanted_chat
        ):
            linked.set()

    login = LoginConfig(host=HOST, port=0, lan_host=HOST, lan_port=0, store=StoreConfig(db))
    login_spec = ServerSpec("login", build_login_server, login)
    # The "lan" event comes before the worker's Ready: the port is known here.
    login_port = await _start(pools, login_spec, options.log_level, on_login_event)
    if not lan_port:
        raise DemoError("demo: the login server did not tell its LAN port")
    game = GameConfig(
        host=HOST, port=0, link=LinkConfig(login_servers=((HOST, lan_port),)), store=StoreConfig(db)
    )
    await _start(pools, ServerSpec("game", build_game_server, game), options.log_level)
    if options.chat_clients:
        chat = ChatConfig(host=HOST, port=0, link=LinkConfig(login_servers=((HOST, lan_port),)))
        await _start(pools, ServerSpec("chat", build_chat_server, chat), options.log_level)
    try:
        async with asyncio.timeout(LINK_TIMEOUT):
            await linked.wait()
    except TimeoutError:
        raise DemoError(
            f"demo: the game and chat servers did not link to the login server in "
            f"{LINK_TIMEOUT:.0f} s"
        ) from None
    login_mode = DummyConfig(
        mode="login",
        login_host=HOST,
        login_port=login_port,
        keys_file=str(keys_game),
        clients=options.clients,
    )
    if not options.chat_clients:
        return login_mode, None
    chat_mode = dataclasses.replace(
        login_mode, mode="chat", keys_file=str(chat_keys), clients=options.chat_clients, processes=1
    )
    return login_mode, chat_mode


async def _seed(db: str, keys: Path, wanted: int) -> None:
    have = len(keys.read_text().splitlines()) if keys.exists() else 0
    if have >= wanted:
        return
    try:
        result = await seed_db(db, wanted, keys_out=keys)
    except Exception as exc:  # a store error: one line
        raise DemoError(f"demo: cannot seed {db}: {exc}") from None
    log.info("seeded %d demo accounts into %s (keys in %s)", result.count, db, keys)


def demo_history_url(db: str) -> str:
    """The demo's monitoring history: next to an SQLite database, else in the working directory."""
    path = getattr(parse_db_url(db), "path", None)
    if isinstance(path, str) and path != ":memory:":
        return f"sqlite:///{Path(path).with_suffix('.monitor.db')}"
    return "sqlite:///serverlink-demo.monitor.db"


def demo_keys_path(db: str) -> Path:
    """The demo's key file lives next to an SQLite database, else in the working directory."""
    target = parse_db_url(db)
    path = getattr(target, "path", None)
    if isinstance(path, str) and path != ":memory:":
        return Path(path).with_suffix(".keys.txt")
    return Path("serverlink-demo.keys.txt")


async def _run_dummies(
    config: DummyConfig,
    chat: DummyConfig | None,
    quiet: bool,
    console: Console,
    stop: asyncio.Event,
) -> tuple[DummyResult, DummyResult | None]:
    """The game-traffic dummy (with the live display) and, at the same time,
    the chat dummy (summarised at the end)."""
    try:
        chat_run = (
            asyncio.ensure_future(run_dummy_async(chat, None, stop)) if chat is not None else None
        )
        try:
            if quiet:
                result = await run_dummy_async(config, QuietPrinter(sys.stderr), stop)
            else:
                with LiveDashboard(config, console) as dashboard:
                    result = await run_dummy_async(config, dashboard, stop)
        finally:
            chat_result = await chat_run if chat_run is not None else None
    except (SuperviseError, ValueError) as exc:
        raise DemoError(f"demo: {exc}") from None
    return result, chat_result


def _summary(
    result: DummyResult, chat: DummyResult | None, pools: list[tuple[str, WorkerPool]]
) -> int:
    """Print the summaries (stdout), a line per server; the exit status."""
    Console().print(summary_table(result))
    if chat is not None:
        Console().print(summary_table(chat))
    server_errors = 0
    for name, pool in pools:
        snap = pool.snapshot()
        errors = sum(snap.get("errors", {}).values())
        server_errors += errors
        if name == "monitor":
            print(
                f"demo: monitoring server: {snap.get('updates', 0):,} figures from "
                f"{snap.get('servers_known', 0)} servers, "
                f"{snap.get('history_rows', 0)} history rows",
                flush=True,
            )
            continue
        extra = ""
        if name == "chat":
            extra = (
                f"; {snap.get('messages_in', 0):,} messages, "
                f"{snap.get('deliveries', 0):,} deliveries, {snap.get('mutes', 0)} mutes"
            )
        if name == "login":
            by_status = ", ".join(
                f"{k} {v}" for k, v in sorted(snap.get("login_by_status", {}).items())
            )
            extra = (
                f"; results: {by_status or 'none'}; avg {snap.get('login_time_avg_ms', 0):.1f} ms"
            )
        print(
            f"demo: {name} server: {snap.get('logins', 0):,} logins, "
            f"{snap.get('packets_in', 0):,} packets in, {errors} protocol errors{extra}",
            flush=True,
        )
    print(
        f"demo: {result.echo_per_s:,.0f} echoes/s verified over {result.duration:.1f} s, "
        f"latency p50 {result.latency_ms.get('p50', 0):.2f} ms / "
        f"p99 {result.latency_ms.get('p99', 0):.2f} ms; dummy errors {result.errors_total}",
        flush=True,
    )
    errors = result.errors_total
    if chat is not None:
        errors += chat.errors_total
        print(
            f"demo: {chat.messages_per_s:,.0f} chat messages/s, {chat.deliveries_per_s:,.0f} "
            f"deliveries/s verified, latency p50 {chat.latency_ms.get('p50', 0):.2f} ms / "
            f"p99 {chat.latency_ms.get('p99', 0):.2f} ms; chat dummy errors {chat.errors_total}",
            flush=True,
        )
    if result.end.interrupted:
        raise DemoInterrupted(
            f"demo: interrupted after {result.duration:.1f} s of {result.config.seconds:g} s"
        )
    return 1 if errors or server_errors else 0
