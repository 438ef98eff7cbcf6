"""The monitoring server over real sockets: the tool side byte for byte as
PROTOCOL.md says (the original tool's login frame, Status 1 / Status 0 and
disconnect, CS_MONITOR_TOOL_DATA_UPDATE for ServerNo 0-3 once a second), the
report side (SS_MONITOR_LOGIN / SS_MONITOR_DATA_UPDATE from reporters of each
kind, a chat-like snapshot included), on/off, and hostile peers dropping only
their own connection."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import until
from serverlink.monitor.figures import CHAT, GAME, LOGIN, MACHINE, Reading
from serverlink.net.client import FrameClient, connect_frame_client
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import lan_framing, net_framing
from serverlink.servers import monitor as monitor_module
from serverlink.servers.monitor import MonitorConfig, MonitorServer
from serverlink.servers.relay import ORIGINAL_LOGIN_KEY
from serverlink.servers.reporter import MonitorReporter

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
TOOL_CODEC = NetCodec(109, 30, 91)
TOOL = net_framing(TOOL_CODEC)
LAN = lan_framing()
KEY = ORIGINAL_LOGIN_KEY.encode()


def vector() -> dict[str, object]:
    for base in (VECTORS, Path("/work/shared/vectors")):
        path = base / "original_monitoring_tool_frames.json"
        if path.exists():
            frames = json.loads(path.read_text())["frames"]
            return dict(frames[0])
    pytest.skip("shared/vectors/original_monitoring_tool_frames.json not found")


def config(tmp_path: Path, **overrides: object) -> MonitorConfig:
    settings: dict[str, object] = {
        "port": 0,
        "lan_port": 0,
        "http_port": 0,
        "history_db": f"sqlite:///{tmp_path / 'history.db'}",
        **overrides,
    }
    return MonitorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[MonitorServer]:
    server = MonitorServer(config(tmp_path))
    await server.start()
    yield server
    await server.stop()


async def tool_login(
    server: MonitorServer, key: bytes = ORIGINAL_LOGIN_KEY.encode()
) -> FrameClient:
    c = await connect_frame_client(TOOL, "127.0.0.1", server.port)
    c.send(pk.CS_MONITOR_TOOL_REQ_LOGIN.build(key))
    answer = pk.CS_MONITOR_TOOL_RES_LOGIN.parse(await c.recv())
    assert answer.Status == 1
    return c


async def updates(c: FrameClient, seconds: float) -> list[pk.CsMonitorToolDataUpdate]:
    """Every CS_MONITOR_TOOL_DATA_UPDATE received for ``seconds``."""
    got: list[pk.CsMonitorToolDataUpdate] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(pk.CS_MONITOR_TOOL_DATA_UPDATE.parse(await c.recv(left)))
        except TimeoutError:
            break
    return got


def test_original_tool_login_frame_decodes_and_reencodes_exactly() -> None:
    frame = vector()
    raw = bytes.fromhex(str(frame["frame_hex"]))
    payload = TOOL_CODEC.decode_frame(raw)
    assert payload.hex() == frame["payload_hex"]
    request = pk.CS_MONITOR_TOOL_REQ_LOGIN.parse(payload)
    assert request.LoginSessionKey == ORIGINAL_LOGIN_KEY.encode()
    assert pk.CS_MONITOR_TOOL_REQ_LOGIN.build(request.LoginSessionKey) == payload
    rand = int(str(frame["randkey_field"])) ^ TOOL_CODEC.key
    assert TOOL_CODEC.encode_frame(payload, rand) == raw


def test_monitoring_packet_layouts_are_protocol_md() -> None:
    assert pk.SS_MONITOR_LOGIN.build(2) == struct.pack("<Hi", 20001, 2)
    assert pk.SS_MONITOR_DATA_UPDATE.build(30, -5, 1700000000) == struct.pack(
        "<HBii", 20002, 30, -5, 1700000000
    )
    assert pk.CS_MONITOR_TOOL_REQ_LOGIN.build(KEY) == struct.pack("<H", 25001) + KEY
    assert pk.CS_MONITOR_TOOL_RES_LOGIN.build(1) == struct.pack("<HB", 25002, 1)
    assert pk.CS_MONITOR_TOOL_DATA_UPDATE.build(3, 43, 250, 1700000000) == struct.pack(
        "<HBBii", 25003, 3, 43, 250, 1700000000
    )


async def test_tool_login_with_the_original_frame_then_figures_once_a_second(
    monitor: MonitorServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", monitor.port)
    writer.write(bytes.fromhex(str(vector()["frame_hex"])))  # the tool's bytes as captured
    header = await asyncio.wait_for(reader.readexactly(5), 5)
    code, size, _, _ = struct.unpack("<BHBB", header)
    assert (code, size) == (109, 3)
    body = await reader.readexactly(size)
    assert TOOL_CODEC.decode_frame(header + body) == pk.CS_MONITOR_TOOL_RES_LOGIN.build(1)
    # then the machine's and the monitoring server's own figures, ServerNo 0, each second
    seen: dict[int, list[int]] = {}
    deadline = time.monotonic() + 2.6
    while time.monotonic() < deadline:
        header = await asyncio.wait_for(reader.readexactly(5), 3)
        body = await reader.readexactly(header[1] | header[2] << 8)
        update = pk.CS_MONITOR_TOOL_DATA_UPDATE.parse(TOOL_CODEC.decode_frame(header + body))
        assert update.ServerNo == 0
        seen.setdefault(update.DataType, []).append(update.TimeStamp)
    assert set(seen) == {f.data_type for f in MACHINE.figures}
    stamps = sorted(set(seen[13]))
    assert len(stamps) >= 2 and all(b - a in (1, 2) for a, b in itertools.pairwise(stamps))
    writer.close()


async def test_wrong_key_is_status_0_and_disconnect(monitor: MonitorServer) -> None:
    c = await connect_frame_client(TOOL, "127.0.0.1", monitor.port)
    c.send(pk.CS_MONITOR_TOOL_REQ_LOGIN.build(b"x" * 32))
    assert pk.CS_MONITOR_TOOL_RES_LOGIN.parse(await c.recv()) == (0,)
    await c.wait_closed()
    assert monitor.snapshot()["tool_refused"] == 1


def chat_like_snapshot(messages: int) -> dict[str, object]:
    return {
        "sessions": 40,
        "players": 37,
        "messages_in": messages,
        "deliveries": messages * 9,
        "queued_bytes": 1234,
    }


async def test_figures_of_each_kind_reach_the_tools(monitor: MonitorServer) -> None:
    tool = await tool_login(monitor)
    address = ("127.0.0.1", monitor.lan_port)
    reporters = [MonitorReporter(kind, address) for kind in (LOGIN, GAME, CHAT)]
    for r in reporters:
        r.start()
    await until(lambda: sum(s.on for s in monitor.core.servers.values()) == 4)
    login = Reading({"sessions": 12, "authenticated": 3, "queued_bytes": 99}, {"logins": 41.6})
    game = Reading(
        {"sessions": 10, "authenticated": 7, "queued_bytes": 5},
        {"logins": 2.0, "login_fail": 1.0, "packets_in": 5000.4},
        cpu_percent=12.4,
        memory_bytes=50 * 2**20,
    )
    chat = Reading(chat_like_snapshot(100), {"messages_in": 250.0, "deliveries": 2250.0})
    for reporter, reading in zip(reporters, (login, game, chat), strict=True):
        assert reporter.report(reading)
    got = await updates(tool, 1.5)
    by_server = {(u.ServerNo, u.DataType): u.DataValue for u in got}
    assert by_server[(1, 6)] == 1 and by_server[(1, 10)] == 12 and by_server[(1, 11)] == 3
    assert by_server[(1, 9)] == 99 and by_server[(1, 12)] == 42
    assert by_server[(2, 24)] == 1 and by_server[(2, 25)] == 12 and by_server[(2, 26)] == 50
    assert by_server[(2, 28)] == 3 and by_server[(2, 29)] == 5000
    assert (by_server[(2, 30)], by_server[(2, 31)], by_server[(2, 32)]) == (10, 3, 7)
    assert by_server[(2, 34)] == by_server[(2, 35)] == 0
    assert (by_server[(3, 36)], by_server[(3, 39)], by_server[(3, 40)]) == (1, 1234, 40)
    assert (by_server[(3, 41)], by_server[(3, 42)], by_server[(3, 43)]) == (37, 2250, 250)
    assert {(0, f.data_type) for f in MACHINE.figures} <= set(by_server)
    assert by_server[(0, 19)] == 1 and by_server[(0, 22)] == 1
    assert {u.ServerNo for u in got} == {0, 1, 2, 3}
    # a server that goes away is off at once: its "on" figure 0 to the tools
    await reporters[1].stop()
    off = await updates(tool, 1.2)
    assert (2, 24, 0) in {(u.ServerNo, u.DataType, u.DataValue) for u in off}
    assert not monitor.core.servers[2].on
    for r in (reporters[0], reporters[2]):
        await r.stop()


async def test_a_silent_server_is_off_and_dropped(tmp_path: Path) -> None:
    server = MonitorServer(config(tmp_path, silent_after=1.0))
    await server.start()
    try:
        lan = await connect_frame_client(LAN, "127.0.0.1", server.lan_port)
        lan.send(pk.SS_MONITOR_LOGIN.build(7))
        lan.send(pk.SS_MONITOR_DATA_UPDATE.build(30, 5, int(time.time())))  # a game figure
        await until(lambda: 7 in server.core.servers and server.core.servers[7].on)
        assert server.core.servers[7].kind is GAME  # its own number: kind from its DataTypes
        await lan.wait_closed(4)
        assert not server.core.servers[7].on
        assert server.core.servers[7].values[24][0] == 0
    finally:
        await server.stop()


async def test_hostile_peers_drop_only_their_own_connection(
    monitor: MonitorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = await tool_login(monitor)
    # a bad frame on the tool port
    bad = await connect_frame_client(TOOL, "127.0.0.1", monitor.port)
    bad.send_raw(b"\x77\x03\x00\x00\x00abc")
    await bad.wait_closed()
    # a figure that is not its kind's, a ServerNo out of range, an update before login
    for payloads in (
        [pk.SS_MONITOR_LOGIN.build(1), pk.SS_MONITOR_DATA_UPDATE.build(30, 1, 0)],
        [pk.SS_MONITOR_LOGIN.build(256)],
        [pk.SS_MONITOR_DATA_UPDATE.build(6, 1, 0)],
        [pk.SS_MONITOR_LOGIN.build(9), pk.SS_MONITOR_DATA_UPDATE.build(99, 1, 0)],
    ):
        lan = await connect_frame_client(LAN, "127.0.0.1", monitor.lan_port)
        lan.send_many(payloads)
        await lan.wait_closed()
    # a second server under a ServerNo in use
    first = await connect_frame_client(LAN, "127.0.0.1", monitor.lan_port)
    first.send(pk.SS_MONITOR_LOGIN.build(2))
    await until(lambda: 2 in monitor.core.servers and monitor.core.servers[2].on)
    second = await connect_frame_client(LAN, "127.0.0.1", monitor.lan_port)
    second.send(pk.SS_MONITOR_LOGIN.build(2))
    await second.wait_closed()
    assert not first.closed
    errors = monitor.lan.stats.errors
    assert errors["bad_data_type"] == 2 and errors["bad_server_no"] == 1
    assert errors["not_logged_in"] == 1 and errors["server_no_in_use"] == 1
    # the good tool still gets its figures
    assert any(u.ServerNo == 0 for u in await updates(tool, 1.2))


async def test_a_tool_that_never_logs_in_or_never_reads_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitor_module, "LOGIN_DEADLINE", 0.5)
    monkeypatch.setattr(monitor_module, "TOOL_SEND_BUFFER_LIMIT", 4096)
    server = MonitorServer(config(tmp_path))
    await server.start()
    try:
        silent = await connect_frame_client(TOOL, "127.0.0.1", server.port)
        await silent.wait_closed(3)
        # a tool with a tiny receive buffer that never reads
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(TOOL.encode(pk.CS_MONITOR_TOOL_REQ_LOGIN.build(ORIGINAL_LOGIN_KEY.encode())))
        good = await tool_login(server)
        await until(lambda: len(server.core.tools) == 2)
        for i in range(1_000_000):  # updates pile up for the one that does not read
            server.core.push(0, 13, i, 0)
            if i % 1000 == 0:
                await asyncio.sleep(0)
                if len(server.core.tools) == 1:
                    break
                await good.received.get()  # the good one reads (bounded by its queue)
                while not good.received.empty():
                    good.received.get_nowait()
        assert not good.closed
        assert server.stats.errors["send_buffer_full"] == 1
        sock.close()
    finally:
        await server.stop()


async def test_only_trusted_addresses_may_report(tmp_path: Path) -> None:
    server = MonitorServer(config(tmp_path, lan_allow=("192.0.2.1",)))
    await server.start()
    try:
        lan = await connect_frame_client(LAN, "127.0.0.1", server.lan_port)
        await lan.wait_closed()
        assert server.snapshot()["refused_links"] == 1
    finally:
        await server.stop()
    server = MonitorServer(config(tmp_path, lan_allow=("127.0.0.1",)))
    await server.start()
    try:
        lan = await connect_frame_client(LAN, "127.0.0.1", server.lan_port)
        lan.send(pk.SS_MONITOR_LOGIN.build(1))
        await until(lambda: 1 in server.core.servers)
    finally:
        await server.stop()


async def test_an_absent_or_slow_monitor_never_delays_the_server() -> None:
    reading = Reading({"sessions": 1}, {})
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reporter = MonitorReporter(GAME, ("127.0.0.1", port))
    reporter.start()
    assert not reporter.report(reading) and reporter.dropped == 1
    await reporter.stop()
    # a monitor that accepts and never reads: what waits is bounded, the rest dropped
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    reporter = MonitorReporter(GAME, listener.getsockname())
    reporter.start()
    await asyncio.wait_for(reporter.link.connected.wait(), 5)
    started = time.perf_counter()
    for i in range(200_000):
        reporter.report(reading)
        if i % 1000 == 0:
            await asyncio.sleep(0)
            if reporter.dropped:
                break
    assert reporter.dropped > 0
    assert time.perf_counter() - started < 10
    session = reporter.link.session
    assert session is not None and session.transport is not None
    assert session.transport.get_write_buffer_size() <= 70_000
    await reporter.stop()
    listener.close()


def test_readme_names_every_figure() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for kind in (MACHINE, LOGIN, GAME, CHAT):
        assert f"history table `{kind.table}`" in readme
        for f in kind.figures:
            assert f"| {f.data_type} | `{f.name}` |" in readme, f
