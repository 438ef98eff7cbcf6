"""The monitoring history on both engines, /metrics in Prometheus' text
format (parsed by prometheus-client's own parser), each server's probe port,
and hostile HTTP clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import RawSql, http_request, until
from serverlink.monitor.figures import CHAT, GAME, KINDS, LOGIN, MACHINE, Reading
from serverlink.servers.game import GameConfig, GameServer
from serverlink.servers.link import LinkConfig
from serverlink.servers.monitor import MonitorServer
from serverlink.servers.reporter import MonitorReporter, ObserveConfig, Observers
from serverlink.store.admin import init_db
from serverlink.store.config import StoreConfig
from serverlink.store.history import HistoryStore, parse_duration
from test_monitor import config


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[MonitorServer]:
    server = MonitorServer(config(tmp_path, save_interval=3600))
    await server.start()
    yield server
    await server.stop()


def samples(on: bool = True) -> list[tuple[object, int, dict[str, int | None]]]:
    out: list[tuple[object, int, dict[str, int | None]]] = []
    for n, kind in enumerate(KINDS):
        values: dict[str, int | None] = {f.name: 10 * n + i for i, f in enumerate(kind.figures)}
        values[kind.on.name] = 1
        out.append((kind, kind.server_no, values))
    return out


async def test_history_tables_on_both_engines(db_url: str, raw_sql: RawSql) -> None:
    store = HistoryStore(db_url)
    await store.connect()
    try:
        now = time.time()
        assert await store.save(samples(), now - 7200) == 4  # type: ignore[arg-type]
        assert await store.save(samples(), now) == 4  # type: ignore[arg-type]
        off = [(GAME, 12, {"server_on": 0})]
        assert await store.save(off, now) == 1  # type: ignore[arg-type]
        rows = await store.query(GAME, now - 60)
        assert [(r.server_no, r.values["server_on"]) for r in rows] == [(2, 1), (12, 0)]
        assert rows[0].values["sessions"] == 20 + 6 and rows[1].values["sessions"] is None
        assert abs(rows[0].time - now) < 1.5
        assert [r.server_no for r in await store.query(GAME, now - 60, 12)] == [12]
        assert len(await store.query(MACHINE, now - 3 * 3600)) == 2
        assert await store.prune(now - 3600) == 4
        for kind in KINDS:  # the original's tables, one row per save with date and figures
            count = await raw_sql(db_url, f"SELECT COUNT(*), MIN(date) FROM {kind.table}", ())
            assert count[0][0] == (2 if kind is GAME else 1)
    finally:
        await store.close()


async def test_monitor_saves_every_kind_and_prunes(monitor: MonitorServer) -> None:
    reporters = [
        MonitorReporter(kind, ("127.0.0.1", monitor.lan_port)) for kind in (LOGIN, GAME, CHAT)
    ]
    for r in reporters:
        r.start()
    await until(lambda: monitor.snapshot()["servers_on"] == 3)
    for r in reporters:
        r.report(Reading({"sessions": 3}, {}))
    await until(lambda: all(len(s.values) > 1 for s in monitor.core.servers.values()))
    assert await monitor.save() == 4
    for r in reporters:
        await r.stop()
    await until(lambda: monitor.snapshot()["servers_on"] == 0)
    assert await monitor.save() == 4
    for kind in KINDS:
        rows = await monitor.history.query(kind, time.time() - 60)
        assert len(rows) == 2, kind
        if kind is not MACHINE:
            assert [r.values["server_on"] for r in rows] == [1, 0]
            assert rows[0].values["sessions"] == 3 and rows[1].values["sessions"] is None


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


get = http_request


async def test_monitor_metrics_parse(monitor: MonitorServer) -> None:
    reporter = MonitorReporter(GAME, ("127.0.0.1", monitor.lan_port))
    reporter.start()
    await until(lambda: 2 in monitor.core.servers)
    reporter.report(Reading({"sessions": 17, "authenticated": 15}, {}))
    await until(lambda: 30 in monitor.core.servers[2].values)
    status, text = await get(monitor.http_port, "/metrics")
    assert status == 200
    found = families(text)
    labels = {"kind": "game", "server_no": "2"}
    assert (labels, 17.0) in found["serverlink_monitor_sessions"]
    assert (labels, 2.0) in found["serverlink_monitor_sessions_auth"]
    assert (labels, 1.0) in found["serverlink_monitor_server_on"]
    assert found["serverlink_monitor_monitor_on"] == [({"kind": "machine", "server_no": "0"}, 1.0)]
    await reporter.stop()
    await until(lambda: not monitor.core.servers[2].on)
    found = families((await get(monitor.http_port, "/metrics"))[1])
    assert (labels, 0.0) in found["serverlink_monitor_server_on"]
    assert labels not in [s[0] for s in found.get("serverlink_monitor_sessions", [])]


async def test_server_probe_port(tmp_path: Path) -> None:
    game = GameServer(GameConfig(port=0))
    await game.start()
    observers = Observers("game", ObserveConfig(metrics_port=0), game.snapshot, lambda: [1])
    await observers.start()
    try:
        port = observers.endpoint.port
        assert await get(port, "/healthz") == (200, '{"status": "ok", "server": "game"}')
        status, body = await get(port, "/readyz")
        assert status == 200 and '"serving"' in body
        found = families((await get(port, "/metrics"))[1])
        assert found["serverlink_sessions"] == [({"server": "game"}, 0.0)]
        assert ({"kind": "game", "server_no": "2"}, 1.0) in found["serverlink_monitor_server_on"]
    finally:
        await observers.stop()
        await game.stop()
    # linked, with no login server to link to: not ready, with the reason
    url = f"sqlite:///{tmp_path / 'accounts.db'}"
    await init_db(url)
    link = LinkConfig(login_servers=(("127.0.0.1", 1),))
    linked = GameServer(GameConfig(port=0, link=link, store=StoreConfig(url)))
    await linked.start()
    observers = Observers("game", ObserveConfig(metrics_port=0), linked.snapshot, lambda: [1])
    await observers.start()
    try:
        status, body = await get(observers.endpoint.port, "/readyz")
        assert status == 503 and "not linked to the login server" in body
    finally:
        await observers.stop()
        await linked.stop()


async def test_hostile_http_gets_short_answers(monitor: MonitorServer) -> None:
    port = monitor.http_port
    for path, status in (
        ("/api/history?kind=nope", 400),
        ("/api/history?kind=game&since=-1h", 400),
        ("/api/history?kind=game&since=1h&server=x", 400),
        ("/static/..%2f..%2fservers%2fmonitor.py", 404),
        ("/static/dashboard.html", 404),
        ("/nothing", 404),
    ):
        got, body = await get(port, path)
        assert got == status, (path, body)
        assert "Traceback" not in body
    for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 20, b"GET /" + b"a" * 70000):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(garbage + b"\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(4096), 5)
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
        assert b"Traceback" not in answer
        writer.close()
    assert (await get(port, "/healthz"))[0] == 200
    assert (await get(port, "/api/history?kind=game&since=15m"))[0] == 200


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "15m", "1h", "7d", "1w")] == [
        90,
        90,
        900,
        3600,
        7 * 86400,
        7 * 86400,
    ]
    for bad in ("", "h", "-1h", "0", "nan", "1y", "inf"):
        with pytest.raises(ValueError):
            parse_duration(bad)
