"""Scale-out: the Redis key store shared by login and game servers (no LAN
hand-off), a Redis outage, several login servers, draining. Real sockets, real
MariaDB, real Redis (the shared one, and a private one the outage test stops)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat_clients import login as chat_login
from chat_clients import start_chat_system
from conftest import http_request, status_of, until
from linked_system import (
    System,
    game_config,
    game_login,
    login_request,
    play,
    start_login,
)
from private_mariadb import free_port
from private_redis import PrivateRedis
from serverlink.dummy import run_dummy_async
from serverlink.dummy.config import DummyConfig
from serverlink.net.server import ServerLimits
from serverlink.protocol.status import ChatLoginStatus, GameLoginStatus, LoginStatus, ServerType
from serverlink.servers import placement
from serverlink.servers.game import GameServer
from serverlink.servers.lan import LinkedServer
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginServer
from serverlink.store import open_store
from serverlink.store.admin import seed_db

pytestmark = pytest.mark.mariadb


async def started(
    db_url: str, tmp_path: Path, key_store: str = "memory", accounts: int = 20
) -> System:
    """A login server on ``key_store``, seeded, no game server yet."""
    keys_file = tmp_path / "keys.txt"
    await seed_db(db_url, accounts, keys_out=keys_file)
    return System(db_url, keys_file, await start_login(db_url, key_store=key_store))


def link_to(*logins: LoginServer, key_store: str = "memory", heartbeat: float = 5.0) -> LinkConfig:
    servers = tuple(("127.0.0.1", login.lan_port) for login in logins)
    return LinkConfig(login_servers=servers, key_store=key_store, heartbeat=heartbeat)


def linked(login: LoginServer) -> list[LinkedServer]:
    return login.lan.linked(ServerType.GAME)


@pytest.fixture
async def system(mariadb_url: str, tmp_path: Path) -> AsyncIterator[System]:
    s = await started(mariadb_url, tmp_path)
    yield s
    await s.stop()


async def test_a_game_server_on_the_login_servers_redis_gets_its_keys_without_hand_off(
    mariadb_url: str, tmp_path: Path, redis_url: str
) -> None:
    system = await started(mariadb_url, tmp_path, key_store=redis_url)
    try:
        shared = await system.start_game(link=link_to(system.login, key_store=redis_url))
        # Another namespace is another store: its proof does not verify.
        other = await system.start_game(link=link_to(system.login, key_store=redis_url + "x"))
        await until(lambda: system.login.lan.handoffs.foreign_stores == 1)
        on_shared = next(s for s in linked(system.login) if s.address[1] == shared.port)
        await until(lambda: on_shared.keys is not None)
        placed = [(await play(system, account_no))[0] for account_no in range(1, 9)]
        assert placed.count(shared) == placed.count(other) == 4
        assert shared.link is not None and other.link is not None
        assert shared.link.handoffs == 0  # its keys were put in Redis
        assert other.link.handoffs == 4  # the LAN hand-off, its store is not the login's
        assert system.login.lan.handoffs.keys_put == 4
        # A key put for one server works there only, and once.
        reply, _ = await login_request(system.login.port, 9, system.keys[9])
        port = reply.GameServerPort
        wrong = other if port == shared.port else shared
        assert (await game_login(wrong.port, 9, system.keys[9]))[0].Status == GameLoginStatus.FAIL
        assert (await game_login(port, 9, system.keys[9]))[0].Status == GameLoginStatus.OK
        assert (await game_login(port, 9, system.keys[9]))[0].Status == GameLoginStatus.FAIL
    finally:
        await system.stop()


async def test_redis_down_answers_status_7_with_one_log_line_and_logins_recover(
    mariadb_url: str,
    tmp_path: Path,
    private_redis: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = private_redis.url
    system = await started(mariadb_url, tmp_path, key_store=url)
    try:
        game = await system.start_game(link=link_to(system.login, key_store=url))
        await until(lambda: linked(system.login)[0].keys is not None)
        await play(system, 1)
        # A key put before the outage: the game server cannot take it while Redis is down.
        reply, _ = await login_request(system.login.port, 2, system.keys[2])
        assert reply.Status == LoginStatus.OK
        private_redis.stop()
        caplog.set_level(logging.INFO)
        caplog.clear()
        for account_no in (3, 4, 5):
            reply, _ = await login_request(system.login.port, account_no, system.keys[account_no])
            assert reply.Status == LoginStatus.DB_UNAVAILABLE
        status, _ = await game_login(game.port, 2, system.keys[2])
        assert status.Status == GameLoginStatus.FAIL
        assert game.stats.refusals["key_store_unavailable"] == 1
        outages = [r for r in caplog.records if "key store unavailable" in r.getMessage()]
        assert [r.name for r in outages] == ["serverlink.login", "serverlink.link"]
        # Redis is back (empty: a restart forgets keys and the take script): no restart here.
        private_redis.start()
        assert private_redis.wait_ready()
        game_server, _conn = await play(system, 3)
        assert game_server is game
        assert any("key store answers again" in r.getMessage() for r in caplog.records)
        assert system.login.key_store_log.outages == 1
    finally:
        await system.stop()


async def test_two_login_servers_one_game_server_one_login_server_goes_away(
    mariadb_url: str, tmp_path: Path
) -> None:
    system = await started(mariadb_url, tmp_path)
    second = await start_login(mariadb_url)
    try:
        game = await system.start_game(link=link_to(system.login, second))
        await second.wait_links(game=1)
        assert game.link is not None
        await until(lambda: game.snapshot()["login_links_up"] == 2)
        # Logins through either login server reach the game server.
        _, first_player = await play(system, 1)
        through_second = System(mariadb_url, system.keys_file, second, [game])
        _, second_player = await play(through_second, 2)
        await system.login.stop()
        await until(lambda: game.snapshot()["login_links_up"] == 1)
        # The other keeps serving; the players stay; the claims stay the game server's.
        for account_no in (3, 4):
            await play(through_second, account_no)
        assert game.link.accepted.is_set() and game.snapshot()["login_link"] == "up"
        store = open_store(mariadb_url)
        await store.connect()
        try:
            statuses = [await status_of(store, n) for n in (1, 2, 3, 4)]
        finally:
            await store.close()
        assert statuses == [game.config.status_id] * 4
        assert not first_player.closed and not second_player.closed
        reply, _ = await login_request(second.port, 1, system.keys[1])
        assert reply.Status == LoginStatus.GAME  # still in game: its claim held
    finally:
        await game.stop()
        await second.stop()


async def test_a_draining_game_server_gets_no_new_players_and_keeps_its_own(
    system: System,
) -> None:
    first = await system.start_game()
    second = await system.start_game()
    _, kept = await play(system, 1)
    draining = first if system.game_at(first.port).in_game else second
    other = second if draining is first else first
    assert draining.set_draining(True)
    await until(lambda: sum(s.draining for s in linked(system.login)) == 1)
    placed = [(await play(system, n))[0] for n in range(2, 8)]
    assert placed == [other] * 6
    assert not kept.closed and 1 in draining.in_game  # existing players stay
    assert draining.snapshot()["draining"] == 1
    assert not draining.set_draining(None)  # toggled back
    await until(lambda: not any(s.draining for s in linked(system.login)))
    placed = [(await play(system, n))[0] for n in range(8, 12)]
    assert draining in placed


def serverlink(command: str, *args: str) -> subprocess.Popen[bytes]:
    """``serverlink COMMAND ARGS --quiet`` in a process of its own, warnings only."""
    argv = [sys.executable, "-m", "serverlink", "--log-level", "warning", command, *args]
    return subprocess.Popen([*argv, "--quiet"], stdout=subprocess.DEVNULL)


async def wait_listening(port: int) -> None:
    """Until a process starting listens on ``port`` (there is no event to await)."""
    async with asyncio.timeout(20):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def test_sigusr1_and_post_drain_drain_a_game_server_process_and_its_workers(
    system: System, tmp_path: Path
) -> None:
    """A real ``serverlink game --workers 2``: SIGUSR1 to the parent drains both
    workers (no new players: Status 6, it is the only game server), again serves;
    POST /drain and /resume on its metrics port do the same."""
    lan_port, metrics_port = system.login.lan_port, free_port()
    game = serverlink(
        "game", "--login-server", f"127.0.0.1:{lan_port}", "--db", system.db_url, "--port", "0",
        "--workers", "2", "--server-id", "100", "--link-heartbeat", "0.5",
        "--metrics-port", str(metrics_port),
    )  # fmt: skip
    try:
        await system.login.wait_links(game=2, timeout=30)

        def draining() -> list[bool]:
            return [s.draining for s in linked(system.login)]

        async def login_status(account_no: int) -> int:
            reply, _ = await login_request(system.login.port, account_no, system.keys[account_no])
            return reply.Status

        assert await login_status(1) == LoginStatus.OK
        game.send_signal(signal.SIGUSR1)
        await until(lambda: draining() == [True, True])
        assert await login_status(2) == LoginStatus.NOSERVER
        game.send_signal(signal.SIGUSR1)
        await until(lambda: draining() == [False, False])
        assert await login_status(3) == LoginStatus.OK
        await wait_listening(metrics_port)
        assert await http_request(metrics_port, "/drain", "POST") == (
            200,
            '{"draining": true, "server": "game"}',
        )
        await until(lambda: draining() == [True, True])
        assert await login_status(4) == LoginStatus.NOSERVER
        assert (await http_request(metrics_port, "/resume", "POST"))[0] == 200
        await until(lambda: draining() == [False, False])
        assert await login_status(5) == LoginStatus.OK
    finally:
        game.send_signal(signal.SIGTERM)
        await asyncio.to_thread(game.wait, 30)


async def test_the_dummy_spreads_over_two_login_servers_and_counts_flows_by_game_server(
    mariadb_url: str, tmp_path: Path, redis_url: str
) -> None:
    system = await started(mariadb_url, tmp_path, key_store=redis_url, accounts=40)
    second = await start_login(mariadb_url, key_store=redis_url)
    try:
        link = link_to(system.login, second, key_store=redis_url)
        games = [await system.start_game(link=link) for _ in range(2)]
        await second.wait_links(game=2)
        for login in (system.login, second):
            await until(lambda login=login: all(s.keys is not None for s in linked(login)))
        config = DummyConfig(
            mode="login",
            login_port=system.login.port,
            more_login_servers=(("127.0.0.1", second.port),),
            keys_file=str(system.keys_file),
            clients=4,
            relogin=True,
            seconds=2.0,
            processes=1,
        )
        result = await run_dummy_async(config)
        assert result.errors_total == 0, result.error_details
        flows = result.counters["login_flows"]
        by_game = result.login_flows_by_game_server
        assert set(by_game) == {f"127.0.0.1:{g.port}" for g in games}
        assert sum(by_game.values()) == flows > 0
        served = [login.login_stats.success for login in (system.login, second)]
        assert min(served) >= flows // 2 - 4  # round-robin: half each, give or take a flow
        assert all(g.link is not None and g.link.handoffs == 0 for g in games)
        assert result.report()["login_flows_by_game_server"] == by_game
    finally:
        await system.stop()
        await second.stop()


async def test_a_chat_server_on_the_login_servers_redis_takes_keys_without_hand_off(
    mariadb_url: str, tmp_path: Path, redis_url: str
) -> None:
    system = await start_chat_system(mariadb_url, tmp_path, 3, key_store=redis_url)
    try:
        await until(lambda: all(s.keys is not None for s in system.login.lan.links))
        reply, _ = await login_request(system.login.port, 1, system.keys[1])
        assert reply.Status == LoginStatus.OK
        status, c = await chat_login(system.chat.port, 1, system.keys[1], reply.ID, reply.Nickname)
        assert status == ChatLoginStatus.OK
        status, _ = await chat_login(system.chat.port, 1, system.keys[1])
        assert status == ChatLoginStatus.FAIL  # taken: once
        assert system.chat.link is not None and system.chat.link.handoffs == 0
        c.close("done")
    finally:
        await system.stop()


async def test_killing_one_login_server_process_leaves_the_other_serving(
    system: System,
) -> None:
    """Two real ``serverlink login`` processes, a game server linked to both:
    after SIGKILL of one, the game server stays linked to the other, which keeps
    placing logins there."""
    ports = [(free_port(), free_port()) for _ in range(2)]
    logins = [
        serverlink("login", "--db", system.db_url, "--port", str(port), "--lan-port", str(lan))
        for port, lan in ports
    ]
    game = None
    try:
        for _, lan in ports:
            await wait_listening(lan)
        servers = tuple(("127.0.0.1", lan) for _, lan in ports)
        game = GameServer(game_config(system.db_url, 0, link=LinkConfig(login_servers=servers)))
        await game.start()
        links_up = game.snapshot
        await until(lambda: links_up()["login_links_up"] == 2, 20)
        logins[0].kill()
        await asyncio.to_thread(logins[0].wait, 10)
        await until(lambda: links_up()["login_links_up"] == 1)
        for account_no in (1, 2, 3):
            reply, _ = await login_request(ports[1][0], account_no, system.keys[account_no])
            assert reply.Status == LoginStatus.OK
            assert reply.GameServerPort == game.port
            status, _ = await game_login(game.port, account_no, system.keys[account_no])
            assert status.Status == GameLoginStatus.OK
        with pytest.raises(OSError):
            await login_request(ports[0][0], 4, system.keys[4])
    finally:
        if game is not None:
            await game.stop()
        for proc in logins:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in logins:
            await asyncio.to_thread(proc.wait, 15)


async def test_a_burst_of_logins_is_spread_over_the_game_servers(system: System) -> None:
    """Logins that arrive together are placed before any hand-off ends: each
    counts at once, so the burst splits evenly instead of all going to the
    server that looked emptiest at its last report."""
    games = [await system.start_game() for _ in range(2)]
    replies = await asyncio.gather(
        *(login_request(system.login.port, n, system.keys[n]) for n in range(1, 11))
    )
    ports = [reply.GameServerPort for reply, _ in replies]
    assert sorted(ports.count(g.port) for g in games) == [5, 5]


async def test_fast_relogins_do_not_fill_a_server_between_its_reports(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Placements count toward a server's load only until their clients can have
    arrived: players that come and go between two reports (here none comes, the
    heartbeat being a minute) must not make the server look full."""
    monkeypatch.setattr(placement, "PLACED_FOR", 0.2)
    link = link_to(system.login, heartbeat=60.0)
    game = await system.start_game(link=link, limits=ServerLimits(max_sessions=10))
    for _ in range(3):  # 24 flows in all, on a capacity of 10
        for account_no in range(1, 9):
            server, connection = await play(system, account_no)
            assert server is game
            connection.close("done")
            await until(lambda: not game.in_game)
        await asyncio.sleep(0.5)  # past two periods of PLACED_FOR: the rule's time, not a wait
