"""The dummy client (echo mode) over real sockets: against the real game server
(no errors, echoes counted) and against deliberately broken servers (the
error is counted and the run fails)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from conftest import short_run
from serverlink.cli.dummy import dummy_command
from serverlink.dummy import DummyResult, run_dummy_async
from serverlink.dummy.config import DummyConfig, resolve_processes
from serverlink.dummy.metrics import Aggregate, Meter, SnapshotMaker, percentiles
from serverlink.dummy.scenario_echo import ECHO_SIZE, encode_fixed, frame_headers
from serverlink.dummy.worker import accounts_of
from serverlink.protocol.codec import NetCodec, encode_net_frame, split_net_frames
from serverlink.protocol.packets import (
    CS_GAME_REQ_ECHO,
    CS_GAME_REQ_LOGIN,
    CS_GAME_RES_ECHO,
    CS_GAME_RES_LOGIN,
    packet_type,
)
from serverlink.servers.game import GameConfig, GameServer

CODEC = NetCodec()


# --- units ------------------------------------------------------------------------------------
def test_inline_encoder_matches_codec() -> None:
    headers = frame_headers(CODEC.code, ECHO_SIZE)
    rng = random.Random(7)
    for _ in range(2000):
        payload = CS_GAME_REQ_ECHO.build(rng.getrandbits(40), rng.getrandbits(62))
        x = rng.getrandbits(8)
        frame = encode_fixed(headers, payload, x)
        assert frame == encode_net_frame(payload, CODEC.code, x)
        assert CODEC.decode_frame(frame) == payload


def test_percentiles_and_aggregate() -> None:
    # 10 µs buckets; the upper edge of the bucket is reported.
    hist = {0: 50, 9: 49, 99: 1}
    assert percentiles(hist, (0.5, 0.99, 1.0)) == [0.01, 0.1, 1.0]
    assert percentiles({}, (0.5,)) == [0.0]

    meter = Meter()
    maker = SnapshotMaker(0, meter)
    meter.echo_recv = 10
    meter.hist[3] = 10
    meter.lat_max_ns = 35_000
    meter.error("packet_error", "packet:wrong_tick")
    first = maker.take(1.0, (2, 2, 8))
    meter.echo_recv = 25
    meter.hist[4] = 15
    second = maker.take(1.0, (2, 2, 8), final=True)
    agg = Aggregate(1)
    agg.add(first)
    agg.add(second)
    assert agg.totals["echo_recv"] == 25
    assert agg.totals["packet_error"] == 1
    assert agg.details == {"packet:wrong_tick": 1}
    assert agg.hist == {3: 10, 4: 15}
    assert agg.errors_total == 1
    assert agg.series == [10]


def test_config_checks_and_process_split() -> None:
    with pytest.raises(ValueError):
        DummyConfig(clients=0)
    with pytest.raises(ValueError):
        DummyConfig(disconnect_rate=1.5)
    assert resolve_processes(DummyConfig(clients=10)) == 1
    assert resolve_processes(DummyConfig(clients=3, processes=8)) == 3
    accounts = sorted(a for w in range(3) for a in accounts_of(w, 3, 10))
    assert accounts == list(range(1, 11))


# --- against the real game server -----------------------------------------------------------------
@pytest.fixture
async def game_server() -> AsyncIterator[GameServer]:
    server = GameServer(GameConfig(port=0))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def echo_run(port: int, **options: Any) -> DummyResult:
    """A dummy run against the game server on ``port``: 4 clients for 2.6 s in
    one process unless told."""
    settings = {"game_port": port, "clients": 4, "seconds": 2.6, **options}
    return await run_dummy_async(short_run("echo", **settings))


def _check_report(result: DummyResult) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(json.dumps(result.report()))
    assert isinstance(report["echo_per_s"], float)
    assert isinstance(report["errors_total"], int)
    assert set(report["latency_ms"]) >= {"p50", "p99", "max"}
    return report


@pytest.mark.parametrize("processes", [1, 2])
async def test_echo_against_game_server(game_server: GameServer, processes: int) -> None:
    config = DummyConfig(
        game_port=game_server.port, clients=6, echo_depth=4, seconds=3.0, processes=processes
    )
    result = await run_dummy_async(config)
    assert result.processes == processes
    assert result.errors_total == 0, result.error_details
    assert result.exit_code == 0
    assert result.counters["login_ok"] == 6
    assert result.counters["echo_recv"] > 0
    assert result.echo_per_s > 0
    assert game_server.game_stats.logins == 6
    report = _check_report(result)
    assert report["errors_total"] == 0
    latency = report["latency_ms"]
    assert isinstance(latency, dict)
    assert 0 < latency["p50"] <= latency["p99"]
    assert latency["max"] > 0


async def test_echo_interval_paces_each_client(game_server: GameServer) -> None:
    # 4 clients, depth 1, one request per 200 ms of think time, for 1.5 s: each
    # client can send at most 1 + 1.5 / 0.2 requests; unpaced it sends thousands.
    result = await echo_run(
        game_server.port, clients=4, echo_depth=1, seconds=1.5, echo_interval=0.2
    )
    assert result.errors_total == 0, result.error_details
    assert 4 <= result.counters["echo_sent"] <= 4 * (1 + 1.5 / 0.2)


async def test_disconnect_rate_ramp_and_login_delay(game_server: GameServer) -> None:
    result = await echo_run(
        game_server.port, echo_depth=2, disconnect_rate=1.0, ramp_up=0.3, login_delay=0.05
    )
    assert result.errors_total == 0, result.error_details
    # Every logged-in client leaves each second, then comes back.
    assert result.counters["disconnect_planned"] >= 4
    assert result.counters["login_ok"] >= 8
    # Only a client caught between reconnect and login at the stop lacks a login.
    assert result.counters["connect_total"] - 4 <= result.counters["login_ok"]


async def test_depth_zero_logs_in_and_sends_heartbeats(game_server: GameServer) -> None:
    result = await echo_run(
        game_server.port, clients=3, echo_depth=0, seconds=2.3, heartbeat_interval=0.2
    )
    assert result.exit_code == 0, result.error_details
    assert result.counters["login_ok"] == 3
    assert result.counters["echo_sent"] == 0
    assert result.counters["heartbeat_sent"] >= 3
    assert game_server.stats.errors.total() == 0


async def test_stop_event_ends_an_open_ended_run(game_server: GameServer) -> None:
    config = DummyConfig(game_port=game_server.port, clients=2, seconds=0, processes=1)
    stop = asyncio.Event()
    ticks: list[float] = []

    def on_tick(agg: Aggregate, elapsed: float) -> None:
        ticks.append(elapsed)
        if agg.totals["echo_recv"]:
            stop.set()

    result = await run_dummy_async(config, on_tick, stop)
    assert ticks
    assert result.exit_code == 0
    assert result.counters["echo_recv"] > 0


async def test_a_worker_process_dying_mid_run_is_counted_not_restarted(
    game_server: GameServer,
) -> None:
    config = DummyConfig(
        game_port=game_server.port, clients=4, echo_depth=2, seconds=0, processes=2
    )
    stop = asyncio.Event()
    killed: list[int] = []

    def on_tick(agg: Aggregate, elapsed: float) -> None:
        if not killed:
            workers = [
                c
                for c in psutil.Process().children()
                if any("spawn_main" in part for part in c.cmdline())
            ]
            victim = max(workers, key=lambda c: c.create_time())
            victim.kill()
            killed.append(victim.pid)
        elif agg.workers_failed:
            stop.set()

    result = await asyncio.wait_for(run_dummy_async(config, on_tick, stop), 60)
    assert killed
    assert result.errors["worker_failed"] == 1
    assert result.error_details == {"worker:exited": 1}
    assert result.exit_code == 1
    assert result.counters["echo_recv"] > 0 and result.counters["login_ok"] == 4


# --- against broken servers -----------------------------------------------------------------
class FaultyProtocol(asyncio.Protocol):
    """A game server with one deliberate fault."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.buf = b""
        self.held: bytes | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def reply(self, payload: bytes) -> bytes:
        frame = CODEC.encode_frame(payload)
        if self.fault == "bad_checksum":
            frame = frame[:4] + bytes([frame[4] ^ 0x5A]) + frame[5:]
        return frame

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        payloads, end = split_net_frames(self.buf, 0, CODEC.code, CODEC.max_payload)
        self.buf = self.buf[end:]
        out: list[bytes] = []
        for p in payloads:
            kind = packet_type(p)
            if kind == CS_GAME_REQ_LOGIN.type:
                login = CS_GAME_REQ_LOGIN.parse(p)
                status = 0 if self.fault == "login_refused" else 1
                if self.fault == "no_login_reply":
                    continue
                out.append(CODEC.encode_frame(CS_GAME_RES_LOGIN.build(status, login.AccountNo)))
                if self.fault == "close_after_login":
                    self.transport.write(b"".join(out))
                    self.transport.close()
                    return
            elif kind == CS_GAME_REQ_ECHO.type:
                echo = CS_GAME_REQ_ECHO.parse(p)
                account, tick = echo.AccountNo, echo.SendTick
                if self.fault == "wrong_account":
                    account += 1
                elif self.fault == "no_echo":
                    continue
                reply = self.reply(CS_GAME_RES_ECHO.build(account, tick))
                if self.fault == "reorder":
                    # Answer each pair of requests in reverse order.
                    if self.held is None:
                        self.held = reply
                        continue
                    out += [reply, self.held]
                    self.held = None
                elif self.fault == "late":
                    loop = asyncio.get_running_loop()
                    loop.call_later(0.08, self.transport.write, reply)
                else:
                    out.append(reply)
        if out:
            self.transport.write(b"".join(out))


@pytest.fixture
async def faulty_server(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    fault: str = request.param
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FaultyProtocol(fault), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.mark.parametrize(
    ("faulty_server", "counter", "detail"),
    [
        ("wrong_account", "packet_error", "packet:wrong_account"),
        ("reorder", "packet_error", "packet:wrong_tick"),
        ("bad_checksum", "packet_error", "packet:bad_checksum"),
        ("login_refused", "login_fail", "login:status_0"),
        ("close_after_login", "disconnect_server", "disconnect:peer_closed_in_echo"),
        ("late", "echo_late", None),
        ("no_echo", "echo_timeout", "echo:timeout"),
        ("no_login_reply", "login_timeout", "login:timeout"),
    ],
    indirect=["faulty_server"],
)
async def test_errors_are_counted(faulty_server: int, counter: str, detail: str | None) -> None:
    result = await echo_run(
        faulty_server, clients=3, echo_depth=4, seconds=1.6, late=0.05, reply_timeout=0.5
    )
    assert result.counters[counter] > 0, result.error_details
    if detail is not None:
        assert result.error_details.get(detail, 0) > 0, result.error_details
    assert result.errors_total > 0
    assert result.exit_code == 1
    assert _check_report(result)["errors_total"] == result.errors_total


@pytest.mark.parametrize("faulty_server", ["wrong_account"], indirect=True)
async def test_errors_counted_across_processes(faulty_server: int) -> None:
    config = DummyConfig(game_port=faulty_server, clients=4, echo_depth=2, seconds=1.5, processes=2)
    result = await run_dummy_async(config)
    assert result.processes == 2
    assert result.counters["packet_error"] >= 4
    assert result.exit_code == 1


async def test_connect_failures_are_counted() -> None:
    # A port that was just free: nothing listens there.
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    config = DummyConfig(game_port=port, clients=2, seconds=1.0, processes=1, reconnect_backoff=0.2)
    result = await run_dummy_async(config)
    assert result.counters["connect_fail"] >= 2
    assert result.exit_code == 1


# --- command line ---------------------------------------------------------------------------------
@pytest.fixture
def threaded_game_server() -> Iterator[int]:
    """A game server on its own loop in a thread, for the synchronous CLI."""
    loop = asyncio.new_event_loop()
    server = GameServer(GameConfig(port=0))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield server.port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_cli_run_writes_report(threaded_game_server: int, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        dummy_command,
        [
            "--game-server",
            f"127.0.0.1:{threaded_game_server}",
            "--clients",
            "3",
            "--echo-depth",
            "2",
            "--seconds",
            "1.2",
            "--processes",
            "1",
            "--quiet",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "echo/s=" in result.output
    data = json.loads(report.read_text())
    assert data["errors_total"] == 0
    assert data["echo_per_s"] > 0
    assert set(data["latency_ms"]) >= {"p50", "p99", "max"}
    assert data["counters"]["login_ok"] == 3


@pytest.mark.parametrize(
    "args",
    [
        ["--game-server", "nohostport"],
        ["--game-server", "host:99999"],
        ["--game-server", "host:http"],
        ["--clients", "0"],
        ["--disconnect-rate", "2"],
        ["--code", "300"],
    ],
)
def test_cli_rejects_bad_values(args: list[str]) -> None:
    result = CliRunner().invoke(dummy_command, args)
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1
    assert "Traceback" not in result.output
