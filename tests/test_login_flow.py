"""The linked ("systemlink") flow over real sockets, on SQLite and on MariaDB:
login server -> hand-off to the game server -> game login -> echo."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import RawSql, until
from linked_system import System, game_login, login_request, start_login, start_system
from private_mariadb import PrivateMariaDB
from serverlink.net.client import connect_frame_client
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.framing import lan_framing, net_framing
from serverlink.protocol.status import GameLoginStatus, LoginStatus, ServerType
from serverlink.store.admin import seed_db

FRAMING = net_framing(NetCodec())


@pytest.fixture
async def system(db_url: str, tmp_path: Path) -> AsyncIterator[System]:
    sys_ = await start_system(db_url, tmp_path / "keys.txt", 20)
    yield sys_
    await sys_.stop()


async def test_right_key_gets_ok_and_game_address_then_game_login_and_echo(system: System) -> None:
    assert system.game is not None
    reply, c = await login_request(system.login.port, 1, system.keys[1])
    assert reply.Status == LoginStatus.OK
    assert (reply.AccountNo, reply.ID, reply.Nickname) == (1, "ID_1", "NICK_1")
    assert (reply.GameServerIP, reply.GameServerPort) == ("127.0.0.1", system.game.port)
    await c.wait_closed()  # the login server closes the client once answered

    status, g = await game_login(reply.GameServerPort, 1, system.keys[1])
    assert status == (GameLoginStatus.OK, 1)
    g.send(pk.CS_GAME_REQ_ECHO.build(1, 99))
    assert pk.CS_GAME_RES_ECHO.parse(await g.recv()) == (1, 99)


async def test_wrong_key_gets_fail(system: System) -> None:
    reply, _ = await login_request(system.login.port, 2, b"x" * 64)
    assert reply.Status == LoginStatus.FAIL


async def test_unknown_account_gets_account_miss(system: System) -> None:
    reply, _ = await login_request(system.login.port, 999_999, b"x" * 64)
    assert reply.Status == LoginStatus.ACCOUNT_MISS


async def test_missing_key_row_and_status_row(system: System, raw_sql: RawSql) -> None:
    await raw_sql(system.db_url, "DELETE FROM sessionkey WHERE accountno = %s", [3])
    await raw_sql(system.db_url, "DELETE FROM status WHERE accountno = %s", [4])
    reply, _ = await login_request(system.login.port, 3, system.keys[3])
    assert reply.Status == LoginStatus.SESSION_MISS
    reply, _ = await login_request(system.login.port, 4, system.keys[4])
    assert reply.Status == LoginStatus.STATUS_MISS


async def test_account_in_game_is_refused_then_free_again_after_logout(
    system: System, raw_sql: RawSql
) -> None:
    assert system.game is not None
    reply, _ = await login_request(system.login.port, 5, system.keys[5])
    assert reply.Status == LoginStatus.OK
    status, g = await game_login(reply.GameServerPort, 5, system.keys[5])
    assert status == (GameLoginStatus.OK, 5)
    rows = await raw_sql(system.db_url, "SELECT status FROM status WHERE accountno = %s", [5])
    assert rows[0][0] != 0  # marked in game before the game login was answered

    again, _ = await login_request(system.login.port, 5, system.keys[5])
    assert again.Status == LoginStatus.GAME

    g.close("test")
    await g.wait_closed()
    await until(lambda: 5 not in system.game.in_game)  # type: ignore[union-attr]
    assert system.game.claims is not None
    await system.game.claims.drain(5)
    rows = await raw_sql(system.db_url, "SELECT status FROM status WHERE accountno = %s", [5])
    assert rows[0][0] == 0
    reply, _ = await login_request(system.login.port, 5, system.keys[5])
    assert reply.Status == LoginStatus.OK


async def test_no_linked_game_server_gets_noserver_and_relinking_restores_ok(
    system: System,
) -> None:
    await system.stop_game()
    reply, _ = await login_request(system.login.port, 6, system.keys[6])
    assert reply.Status == LoginStatus.NOSERVER
    await system.start_game()
    reply, _ = await login_request(system.login.port, 6, system.keys[6])
    assert reply.Status == LoginStatus.OK


async def test_game_login_needs_the_handed_over_key_and_the_right_version(
    system: System,
) -> None:
    assert system.game is not None
    port = system.game.port
    # No hand-off for account 7 yet: even its real key is refused.
    status, c = await game_login(port, 7, system.keys[7])
    assert status == (GameLoginStatus.FAIL, 7)
    await c.wait_closed()

    reply, _ = await login_request(system.login.port, 7, system.keys[7])
    assert reply.Status == LoginStatus.OK
    status, c = await game_login(port, 7, system.keys[7], version=2)
    assert status == (GameLoginStatus.VERSION_MISMATCH, 7)
    await c.wait_closed()
    status, c = await game_login(port, 7, b"y" * 64)
    assert status == (GameLoginStatus.FAIL, 7)


async def test_login_then_immediate_disconnect_never_leaves_account_in_game(
    system: System, raw_sql: RawSql
) -> None:
    assert system.game is not None
    accounts = range(8, 21)
    for _ in range(3):
        for account in accounts:
            reply, _ = await login_request(system.login.port, account, system.keys[account])
            assert reply.Status == LoginStatus.OK, account
        clients = []
        for account in accounts:
            c = await connect_frame_client(FRAMING, "127.0.0.1", system.game.port)
            c.send(pk.CS_GAME_REQ_LOGIN.build(account, system.keys[account], 1))
            clients.append(c)
        for c in clients:  # gone before (or while) the login's status is written
            c.abort("test")
        await until(lambda: not system.game.in_game and not system.game.claims.busy)  # type: ignore[union-attr]
    rows = await raw_sql(system.db_url, "SELECT count(*) FROM status WHERE status <> 0", [])
    assert rows[0][0] == 0


async def test_game_server_restart_clears_its_own_stale_statuses(
    system: System, raw_sql: RawSql
) -> None:
    assert system.game is not None
    own = system.game.config.status_id
    await raw_sql(system.db_url, "UPDATE status SET status = %s WHERE accountno = 9", [own])
    await raw_sql(system.db_url, "UPDATE status SET status = %s WHERE accountno = 10", [own + 50])
    await system.stop_game()
    await system.start_game()
    rows = await raw_sql(
        system.db_url, "SELECT accountno, status FROM status WHERE accountno IN (9, 10)", []
    )
    assert dict(rows) == {9: 0, 10: own + 50}  # another server's account is left alone


async def test_login_server_start_releases_statuses_nobody_claims_again(
    db_url: str, raw_sql: RawSql
) -> None:
    # Left by servers of an earlier run: released once the grace time passes
    # without a server reporting that status id.
    await seed_db(db_url, 3)
    await raw_sql(db_url, "UPDATE status SET status = 7", [])
    login = await start_login(db_url, release_after=0.2)
    try:
        rows = await raw_sql(db_url, "SELECT count(*) FROM status WHERE status <> 0", [])
        assert rows[0][0] == 3  # not at start: those servers may still be running
        await until(lambda: login.releases.released == 3)
        rows = await raw_sql(db_url, "SELECT count(*) FROM status WHERE status <> 0", [])
        assert rows[0][0] == 0
    finally:
        await login.stop()


async def test_stale_answers_are_ignored_and_unanswered_login_times_out(db_url: str) -> None:
    await seed_db(db_url, 1)
    login = await start_login(db_url, login_timeout=1.0)
    try:
        fake = await connect_frame_client(lan_framing(), "127.0.0.1", login.lan_port)
        fake.send(pk.SS_LOGINSERVER_LOGIN.build(ServerType.GAME, "fake@127.0.0.1:1"))
        await login.wait_links(game=1)
        record = await login.store.get_account(1)
        assert record is not None and record.session_key is not None
        c = await connect_frame_client(FRAMING, "127.0.0.1", login.port)
        c.send(pk.CS_LOGIN_REQ_LOGIN.build(1, record.session_key))
        handoff = pk.SS_REQ_NEW_CLIENT_LOGIN.parse(await fake.recv())
        fake.send(pk.SS_RES_NEW_CLIENT_LOGIN.build(1, handoff.Parameter + 1))  # wrong Parameter
        fake.send(pk.SS_RES_NEW_CLIENT_LOGIN.build(2, handoff.Parameter))  # wrong account
        await c.wait_closed(timeout=5)  # never answered: dropped at the login timeout
        assert c.received.empty()
        assert login.lan.handoffs.stale_answers == 2
        assert login.login_stats.timeouts == 1
    finally:
        await login.stop()


async def test_whiteip_refuses_servers_from_other_addresses(db_url: str, raw_sql: RawSql) -> None:
    await seed_db(db_url, 1)
    await raw_sql(db_url, "INSERT INTO whiteip (ip) VALUES (%s)", ["10.1.2.3"])
    login = await start_login(db_url)
    try:
        fake = await connect_frame_client(lan_framing(), "127.0.0.1", login.lan_port)
        fake.send(pk.SS_LOGINSERVER_LOGIN.build(ServerType.GAME, "game"))
        await fake.wait_closed()
        assert login.lan.rejected_links == 1
        assert not login.lan.links
    finally:
        await login.stop()


@pytest.mark.mariadb
async def test_database_outage_answers_db_unavailable_then_recovers_without_restart(
    running_mariadb: PrivateMariaDB, tmp_path: Path
) -> None:
    url = running_mariadb.url("login_outage")
    system = await start_system(url, tmp_path / "keys.txt", 3, 0, {"db_timeout": 2.0})
    login = system.login
    await system.start_game(db_timeout=2.0)
    keys = system.keys
    try:
        reply, _ = await login_request(login.port, 1, keys[1])
        assert reply.Status == LoginStatus.OK

        await asyncio.to_thread(running_mariadb.kill)
        reply, c = await login_request(login.port, 2, keys[2])
        assert reply.Status == LoginStatus.DB_UNAVAILABLE  # a clear answer, not a hang
        await c.wait_closed()
        assert login.login_stats.db_errors == 1

        running_mariadb.start()
        assert await asyncio.to_thread(running_mariadb.wait_ready), running_mariadb.log_tail()
        reply, _ = await login_request(login.port, 2, keys[2])
        assert reply.Status == LoginStatus.OK  # same login server, same pool
        status, _ = await game_login(reply.GameServerPort, 2, keys[2])
        assert status == (GameLoginStatus.OK, 2)
    finally:
        await system.stop_game()
        await login.stop()
