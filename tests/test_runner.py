"""The runner's worker pool over real processes and sockets (every wait on a
message from the workers), the worker limit of a server class, and the numbers
and drawing of the console screen."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from rich.console import Console

from serverlink import logs
from serverlink.monitor.console import Monitor
from serverlink.monitor.screen import (
    Row,
    ScreenSpec,
    View,
    rate,
    render_screen,
    standard_rows,
    summary_line,
    value,
)
from serverlink.monitor.stats import Aggregator, RateTracker, merge_snapshots
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.packets import CS_GAME_REQ_ECHO, CS_GAME_REQ_LOGIN, CS_GAME_RES_ECHO
from serverlink.runner import RunOptions, ServeError, ServerSpec, describe_listen_error, serve
from serverlink.servers.game import GAME_SCREEN, GameConfig, build_game_server
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginConfig, LoginServer, build_login_server
from serverlink.store.admin import init_db
from serverlink.store.config import StoreConfig
from serverlink.supervise import Event
from serverlink.workers import WorkerPool

CODEC = NetCodec()


async def within(waiting: Awaitable[None], timeout: float = 20.0) -> None:
    await asyncio.wait_for(waiting, timeout)


def echo_once(port: int, account: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            CODEC.encode_frame(CS_GAME_REQ_LOGIN.build(account, b"x" * 64, 1))
            + CODEC.encode_frame(CS_GAME_REQ_ECHO.build(account, 42))
        )
        buf = b""
        while True:
            chunk = sock.recv(4096)
            assert chunk, "server closed the connection"
            buf += chunk
            payloads, _ = CODEC.split_frames(buf)
            if len(payloads) == 2:
                echo = CS_GAME_RES_ECHO.parse(payloads[1])
                assert (echo.AccountNo, echo.SendTick) == (account, 42)
                return


# --- worker pool ---------------------------------------------------------------------------


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    spec = ServerSpec("game", build_game_server, GameConfig(host="127.0.0.1", port=0))
    p = WorkerPool(spec, 2)
    yield p
    await p.stop(grace=1.0)


async def test_pool_serves_restarts_a_dead_worker_and_stops(pool: WorkerPool) -> None:
    port = await pool.start()
    assert port > 0 and len(pool.pids()) == 2
    for account in range(1, 11):
        await asyncio.to_thread(echo_once, port, account)
    await within(pool.until(lambda: pool.snapshot().get("logins") == 10))
    snap = pool.snapshot()
    assert snap["max_sessions"] == 2 * 20000  # a gauge summed over the workers
    assert snap["packets_in"] == 20 and snap["packets_out"] == 20

    victim = pool.pids()[0]
    os.kill(victim, signal.SIGKILL)
    await within(pool.until(lambda: pool.restarts == 1 and pool.supervisor.all_ready))
    assert len(pool.pids()) == 2 and victim not in pool.pids()
    # the counters of the dead worker stay in the totals, exactly
    snap = pool.snapshot()
    assert (snap["logins"], snap["accepted"], snap["packets_in"]) == (10, 10, 20)
    for account in range(11, 21):
        await asyncio.to_thread(echo_once, port, account)
    await within(pool.until(lambda: pool.snapshot()["logins"] == 20))
    snap = pool.snapshot()
    assert (snap["accepted"], snap["packets_in"], snap["packets_out"]) == (20, 40, 40)
    pids = pool.pids()
    await pool.stop(grace=2.0)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert pool.snapshot()["logins"] == 20  # the final snapshots (Stopped) are in
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


async def test_pool_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = ServerSpec("game", build_game_server, GameConfig(host="127.0.0.1", port=port))
        # the other listener has SO_REUSEPORT too: without the check the
        # workers would silently share its port
        with pytest.raises(ServeError, match="address already in use"):
            await WorkerPool(spec, 2).start()


async def test_pool_worker_failing_at_start_is_its_one_line() -> None:
    # A linked game server whose account database refuses connections: each
    # worker fails while starting; the pool stops and says why, in one line.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    config = GameConfig(
        host="127.0.0.1",
        port=0,
        link=LinkConfig(login_servers=(("127.0.0.1", dead_port),)),
        store=StoreConfig(f"mysql://root@127.0.0.1:{dead_port}/nothing", timeout=2.0),
    )
    pool = WorkerPool(ServerSpec("game", build_game_server, config), 2)
    with pytest.raises(ServeError) as failed:
        await pool.start()
    line = str(failed.value)
    assert line.startswith("game: account database mysql://root@127.0.0.1:"), line
    assert "\n" not in line
    assert pool.pids() == [] and pool.supervisor.all_exited


async def test_login_worker_forwards_its_lan_port_and_links(tmp_path: Path) -> None:
    """What the demo waits on: the login server's worker announces its LAN port
    (before Ready) and each change of its linked servers, as Event messages."""
    db = f"sqlite:///{tmp_path / 'accounts.db'}"
    await init_db(db)
    events: list[Event] = []
    login_config = LoginConfig(port=0, lan_port=0, store=StoreConfig(db))
    login = WorkerPool(
        ServerSpec("login", build_login_server, login_config), 1, on_event=events.append
    )
    game: WorkerPool | None = None
    try:
        await login.start()
        assert [e.name for e in events] == ["lan"]
        lan_port = events[0].data["port"]
        assert lan_port > 0
        game_config = GameConfig(
            port=0, link=LinkConfig(login_servers=(("127.0.0.1", lan_port),)), store=StoreConfig(db)
        )
        game = WorkerPool(ServerSpec("game", build_game_server, game_config), 2)
        await game.start()
        await within(login.until(lambda: events[-1] == Event("links", {"game": 2, "chat": 0})))
        await game.stop(grace=2.0)
        await within(login.until(lambda: events[-1] == Event("links", {"game": 0, "chat": 0})))
    finally:
        if game is not None:
            await game.stop(grace=1.0)
        await login.stop(grace=1.0)


def test_pool_needs_a_dataclass_config() -> None:
    spec = ServerSpec("odd", build_game_server, object())  # type: ignore[arg-type]
    with pytest.raises(ServeError, match="dataclass"):
        WorkerPool(spec, 2)


def test_the_server_class_declares_its_worker_limit() -> None:
    login = ServerSpec("login", build_login_server, LoginConfig(port=0, lan_port=0))
    assert login.max_workers == LoginServer.max_workers == 1
    assert ServerSpec("login", LoginServer, LoginConfig()).max_workers == 1  # the class itself
    game = ServerSpec("game", build_game_server, GameConfig())
    assert game.max_workers is None
    game.check_workers(64)
    expected = "login: --workers must be at most 1 (the login server's max_workers), not 2"
    with pytest.raises(ServeError) as refused:
        WorkerPool(login, 2)
    assert str(refused.value) == expected
    with pytest.raises(ServeError) as refused:  # before anything starts
        serve(login, RunOptions(workers=2))
    assert str(refused.value) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(errno.EADDRINUSE, "x"), "address already in use"),
        (OSError(errno.EACCES, "x"), "permission denied (ports below 1024 need privileges)"),
        (OSError(errno.EADDRNOTAVAIL, "x"), "10.9.9.9 is not an address of this machine"),
        (socket.gaierror(-2, "Name or service not known"), "cannot resolve host"),
    ],
)
def test_listen_errors(exc: OSError, expected: str) -> None:
    line = describe_listen_error("game", "10.9.9.9", 80, exc)
    assert expected in line and "\n" not in line


# --- screen numbers --------------------------------------------------------------------------


def test_merge_snapshots_rules() -> None:
    a = {"accepted": 3, "sessions": 2, "sessions_peak": 5, "errors": {"bad_code": 1}, "x_min": 4}
    b = {"accepted": 4, "sessions": 1, "sessions_peak": 3, "errors": {"bad_code": 2, "y": 1}}
    c = {"x_min": 2, "name": "w"}
    merged = merge_snapshots([a, b, c])
    assert merged["accepted"] == 7 and merged["sessions"] == 3
    assert merged["sessions_peak"] == 5 and merged["x_min"] == 2
    assert merged["errors"] == {"bad_code": 3, "y": 1} and merged["name"] == "w"
    assert a["errors"] == {"bad_code": 1}  # inputs untouched


def test_aggregator_keeps_counters_of_dead_workers() -> None:
    agg = Aggregator()
    agg.update(1, {"accepted": 10, "sessions": 4, "max_sessions": 100, "disconnects": {"a": 1}})
    agg.update(2, {"accepted": 5, "sessions": 3, "max_sessions": 100})
    assert agg.snapshot()["sessions_peak"] == 7
    agg.retire(1)
    agg.update(1, {"accepted": 1, "sessions": 1, "max_sessions": 100})
    snap = agg.snapshot()
    assert snap["accepted"] == 16  # 10 (dead) + 5 + 1
    assert snap["sessions"] == 4 and snap["max_sessions"] == 200  # gauges: live workers only
    assert snap["disconnects"] == {"a": 1}
    assert snap["sessions_peak"] == 7


def test_rate_tracker() -> None:
    rates = RateTracker()
    rates.update({"packets_in": 100, "errors": {"x": 1}}, 10.0)
    r = rates.update({"packets_in": 400, "errors": {"x": 3}}, 12.0)
    assert r["packets_in"] == 150.0 and r["errors.x"] == 1.0
    r = rates.update({"packets_in": 0}, 13.0)  # a counter reset never shows negative
    assert r["packets_in"] == 0.0


def view(**snapshot: object) -> View:
    return View(
        name="game",
        address="127.0.0.1:12211",
        uptime=3725.0,
        snapshot=snapshot,
        rates={"packets_in": 51234.0, "logins": 12.0},
        cpu_percent=45.3,
        rss_bytes=42 << 20,
        workers=2,
    )


def test_screen_and_summary_line() -> None:
    v = view(
        sessions=120,
        max_sessions=20000,
        sessions_peak=200,
        logins=300,
        packets_in=1234567,
        disconnects={"peer_closed": 10, "idle_timeout": 2},
        errors={},
    )
    console = Console(file=io.StringIO(), width=110, force_terminal=False)
    console.print(render_screen(GAME_SCREEN, v))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for expected in (
        "serverlink game  127.0.0.1:12211  up 01:02:05",
        "120 / 20,000",
        "peak 200",
        "51,234/s",
        "12.0/s",
        "RSS 42.0 MiB",
        "2 workers",
        "peer_closed 10, idle_timeout 2",
    ):
        assert expected in text, (expected, text)
    line = summary_line(GAME_SCREEN, v)
    assert "\n" not in line
    assert "sessions 120 / 20,000, peak 200" in line
    assert "protocol errors none" in line


def test_screen_is_extensible_and_never_raises() -> None:
    spec = ScreenSpec(
        "login",
        (
            *standard_rows(),
            Row("Login success", (rate("login_ok"), value("login_ok", "total"))),
            Row("Broken", (lambda v: str(1 / 0),)),
        ),
    )
    line = summary_line(spec, view(login_ok=5))
    assert "login success 0.0/s, total 5" in line and "broken ?" in line


def test_monitor_quiet_lines_on_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    logger = logging.getLogger("serverlink.test-monitor")
    logger.propagate = True
    monitor = Monitor(
        GAME_SCREEN,
        Console(file=io.StringIO()),
        address="h:1",
        live=True,  # not a terminal: quiet lines anyway
        interval=5.0,
        logger=logger,
        clock=lambda: now[0],
    )
    monitor.start({"packets_in": 0})
    assert not monitor.is_live
    with caplog.at_level(logging.INFO, logger="serverlink.test-monitor"):
        for t in range(1, 11):
            now[0] = 100.0 + t
            monitor.update({"packets_in": 1000 * t})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "packets in 1,000/s" in lines[0]


def test_log_lines_print_above_the_live_screen() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    logs.setup_logging("info", None, console)
    try:
        monitor = Monitor(GAME_SCREEN, console, address="127.0.0.1:1", live=True)
        monitor.start({"sessions": 0, "max_sessions": 10})
        assert monitor.is_live
        logging.getLogger("serverlink.net").warning("127.0.0.1:5123: protocol error (bad_code)")
        monitor.update({"sessions": 1, "max_sessions": 10})
        monitor.stop({"sessions": 1, "max_sessions": 10})
    finally:
        logs.setup_logging("info", None)
    text = out.getvalue()
    assert "WARNING net: 127.0.0.1:5123: protocol error (bad_code)" in text
    assert "1 / 10" in text


def test_log_line_format_and_names() -> None:
    formatter = logs.LineFormatter()
    logs.set_process_server("game")
    try:
        record = logging.LogRecord("serverlink.net", logging.WARNING, "", 0, "%s: x", ("p",), None)
        line = formatter.format(record)
        assert line.endswith(" WARNING game: p: x")
        # 2026-11-25T13:00:00.123Z: UTC, said so
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", line), line
        record = logging.LogRecord("serverlink.login", logging.INFO, "", 0, "hello", None, None)
        assert formatter.format(record).endswith("INFO    login: hello")
        summary = logging.LogRecord(logs.SUMMARY, logging.INFO, "", 0, "up 00:00:01", None, None)
        assert formatter.format(summary).endswith("INFO    game: up 00:00:01")
    finally:
        logs.set_process_server(None)


def test_json_log_lines_for_shippers() -> None:
    record = logging.LogRecord("serverlink.login", logging.WARNING, "", 0, "a %s", ("b",), None)
    doc = json.loads(logs.JsonFormatter().format(record))
    assert doc["level"] == "warning" and doc["message"] == "a b" and doc["server"] == "login"
    assert doc["logger"] == "serverlink.login" and doc["time"].endswith("Z")


def test_summary_lines_are_kept_at_warning_level() -> None:
    out = io.StringIO()
    logs.setup_logging("warning", None, Console(file=out, width=200))
    try:
        logging.getLogger(logs.SUMMARY).info("up 00:00:05; sessions 3")
        logging.getLogger("serverlink.net").info("an info line")
    finally:
        logs.setup_logging("info", None)
    text = out.getvalue()
    assert "up 00:00:05; sessions 3" in text and "an info line" not in text
