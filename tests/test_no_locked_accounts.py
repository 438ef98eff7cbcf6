"""No account stays locked: after a database outage or lock during a logout,
after a claim that timed out and was applied later, after a game server crash,
after a login server restart or a second login server started by mistake.
Real sockets and processes; SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RawSql, Systems, until
from db_lock import status_row_locked
from linked_system import (
    game_login,
    login_request,
    play,
    start_login,
    start_system,
)
from private_mariadb import PrivateMariaDB
from serverlink.protocol.status import GameLoginStatus, LoginStatus


async def status_of(raw_sql: RawSql, url: str, account_no: int) -> int:
    rows = await raw_sql(url, "SELECT status FROM status WHERE accountno = %s", [account_no])
    return int(rows[0][0])


async def test_a_logout_write_that_fails_while_the_database_is_locked_is_retried(
    systems: Systems, sqlite_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    system = await systems(sqlite_url, 3, db_timeout=1.0)
    game, conn = await play(system, 1)
    assert game.claims is not None
    async with status_row_locked(sqlite_url, 1):
        conn.close("bye")  # the release waits, times out, fails
        await until(lambda: game.claims is not None and game.claims.pending_releases == 1)
        assert await status_of(raw_sql, sqlite_url, 1) == game.config.status_id
    await until(lambda: game.claims is not None and not game.claims.busy)
    assert await status_of(raw_sql, sqlite_url, 1) == 0
    assert game.claims.releases_retried >= 1


@pytest.mark.mariadb
async def test_a_logout_during_a_database_restart_is_written_once_it_is_back(
    systems: Systems, running_mariadb: PrivateMariaDB, tmp_path: Path, raw_sql: RawSql
) -> None:
    url = running_mariadb.url("logout_outage")
    system = await systems(url, 3, db_timeout=1.0)
    game, conn = await play(system, 1)
    await asyncio.to_thread(running_mariadb.kill)
    conn.close("bye")  # the release cannot reach the database
    await until(lambda: game.claims is not None and game.claims.pending_releases == 1)
    running_mariadb.start()
    assert await asyncio.to_thread(running_mariadb.wait_ready), running_mariadb.log_tail()
    await until(lambda: game.claims is not None and not game.claims.busy, timeout=20)
    assert await status_of(raw_sql, url, 1) == 0
    reply, _ = await login_request(system.login.port, 1, system.keys[1])
    assert reply.Status == LoginStatus.OK


async def test_a_claim_that_timed_out_and_was_applied_later_is_released(
    systems: Systems, db_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    system = await systems(db_url, 3, db_timeout=1.0)
    reply, _ = await login_request(system.login.port, 2, system.keys[2])
    assert reply.Status == LoginStatus.OK
    game = system.game_at(reply.GameServerPort)
    async with status_row_locked(db_url, 2):
        # The claim waits behind the lock and times out: the login is
        # refused. On MariaDB the statement is still queued and is applied
        # once the lock goes, with nobody playing here.
        status, _ = await game_login(reply.GameServerPort, 2, system.keys[2])
        assert status.Status == GameLoginStatus.FAIL
    await until(lambda: game.claims is not None and not game.claims.busy, timeout=20)
    assert await status_of(raw_sql, db_url, 2) == 0
    assert 2 not in game.in_game


GAME_CMD = [sys.executable, "-m", "serverlink", "--log-level", "warning", "game"]


def start_game_process(url: str, lan_port: int, server_id: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*GAME_CMD, "--login-server", f"127.0.0.1:{lan_port}", "--db", url, "--port", "0",
         "--server-id", str(server_id), "--server-name", f"proc{server_id}", "--quiet"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


async def test_accounts_of_a_killed_game_server_log_in_through_another_within_the_grace_time(
    db_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    system = await start_system(db_url, tmp_path / "keys.txt", 5, 0, {"release_after": 2.0})
    login = system.login
    proc = start_game_process(db_url, login.lan_port, server_id=40)
    try:
        await login.wait_links(game=1, timeout=20)
        (process_server,) = login.lan.links
        held = []
        for account_no in (1, 2, 3):
            reply, _ = await login_request(login.port, account_no, system.keys[account_no])
            assert reply.GameServerPort == process_server.address[1]
            status, conn = await game_login(
                reply.GameServerPort, account_no, system.keys[account_no]
            )
            assert status.Status == GameLoginStatus.OK
            held.append(conn)
        await system.start_game()  # the one that stays
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        assert await status_of(raw_sql, db_url, 1) == 40  # locked by the dead server
        for account_no in (1, 2, 3):
            while True:
                reply, _ = await login_request(login.port, account_no, system.keys[account_no])
                if reply.Status == LoginStatus.OK:
                    break
                assert reply.Status == LoginStatus.GAME
                await asyncio.sleep(0.2)  # a login attempt every 0.2 s, as a client would
            status, _ = await game_login(reply.GameServerPort, account_no, system.keys[account_no])
            assert status.Status == GameLoginStatus.OK
        assert time.monotonic() - killed_at < 2.0 + 3.0
        assert login.releases.released == 3
    finally:
        if proc.poll() is None:
            proc.kill()
        await system.stop()


async def test_a_server_whose_status_ids_overlap_a_linked_one_is_refused_and_clears_nothing(
    db_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    system = await start_system(db_url, tmp_path / "keys.txt", 3, server_id=2)
    proc = start_game_process(db_url, system.login.lan_port, server_id=2)
    try:
        game, conn = await play(system, 1)
        assert game.config.status_id == 2
        # The second server reports status id 2 too: refused, again and again.
        await until(lambda: system.login.lan.listener.stats.errors["status_id_in_use"] >= 1)
        assert len(system.login.lan.links) == 1
        assert await status_of(raw_sql, db_url, 1) == 2  # the first one's player is untouched
        conn.close("done")
    finally:
        proc.kill()
        proc.wait()
        await system.stop()


async def test_a_second_login_server_on_busy_ports_fails_before_touching_statuses(
    systems: Systems, db_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    system = await systems(db_url, 3)
    game, conn = await play(system, 1)
    with pytest.raises(OSError):
        await start_login(
            db_url, port=system.login.port, lan_port=system.login.lan_port, release_after=0
        )
    assert await status_of(raw_sql, db_url, 1) == game.config.status_id
    conn.close("done")


async def test_a_login_server_restart_does_not_let_a_playing_account_in_again(
    systems: Systems, db_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    system = await systems(db_url, 3)
    game, conn = await play(system, 1)
    lan_port, port = system.login.lan_port, system.login.port
    await system.login.stop()
    system.login = await start_login(db_url, port=port, lan_port=lan_port, release_after=1.0)
    await system.login.wait_links(game=1, timeout=20)  # the game server links again
    assert game.link is not None
    await asyncio.wait_for(game.link.accepted.wait(), 10)
    await asyncio.sleep(1.5)  # past release_after: nothing of a linked server is released
    reply, _ = await login_request(port, 1, system.keys[1])
    assert reply.Status == LoginStatus.GAME
    assert await status_of(raw_sql, db_url, 1) == game.config.status_id
    assert 1 in game.in_game and not conn.lost.is_set()
    conn.close("done")


@pytest.mark.parametrize("command", ["login", "game"])
def test_a_failed_bind_on_sqlite_exits_at_once(command: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = [sys.executable, "-m", "serverlink", command, "--port", str(port), "--quiet",
                "--db", f"sqlite:///{tmp_path / 'accounts.db'}"]  # fmt: skip
        if command == "login":
            args += ["--lan-port", "0"]
        else:
            args += ["--login-server", "127.0.0.1:1"]
        started = time.monotonic()
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, env=os.environ)
    assert done.returncode == 1
    assert "address already in use" in done.stderr
    assert time.monotonic() - started < 15
