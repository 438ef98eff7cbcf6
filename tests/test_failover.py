"""Failover under load (slow system test): the dummy re-logs in back to back
through one login server and two game servers on MariaDB, each a real process;
one game server is killed (SIGKILL) and restarted twice during a 60 s run. The
run ends with no account left in game and no error other than the flows the
kills cut (``server_lost``, counted apart)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RawSql
from serverlink.dummy import DummyConfig, run_dummy_async
from serverlink.store.admin import seed_db

pytestmark = [pytest.mark.slow, pytest.mark.mariadb, pytest.mark.timeout(180)]

SERVERLINK = [sys.executable, "-m", "serverlink", "--log-level", "warning"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def game_process(url: str, lan_port: int, port: int, server_id: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SERVERLINK, "game", "--login-server", f"127.0.0.1:{lan_port}", "--db", url,
         "--port", str(port), "--server-id", str(server_id), "--server-name", f"g{server_id}",
         "--quiet"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


async def wait_listening(port: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)  # a process starting: nothing to await but its port
                continue
            writer.close()
            return


async def players_in_game(url: str, raw_sql: RawSql, status_id: int) -> None:
    """Until some account is in game on server ``status_id`` (database state: polled)."""
    async with asyncio.timeout(10):
        while not (await raw_sql(url, "SELECT count(*) FROM status WHERE status = %s",
                                 [status_id]))[0][0]:  # fmt: skip
            await asyncio.sleep(0.02)


async def test_killing_and_restarting_a_game_server_under_load_locks_no_account(
    mariadb_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    keys = tmp_path / "keys.txt"
    clients = 40
    await seed_db(mariadb_url, 4 * clients, keys_out=keys)
    login_port, lan_port = free_port(), free_port()
    game_ports = (free_port(), free_port())
    login = subprocess.Popen(
        [*SERVERLINK, "login", "--db", mariadb_url, "--port", str(login_port),
         "--lan-port", str(lan_port), "--release-after", "5", "--quiet"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    games: dict[int, subprocess.Popen[bytes]] = {}
    try:
        await wait_listening(lan_port)
        for i, port in enumerate(game_ports):
            games[i] = game_process(mariadb_url, lan_port, port, server_id=10 * (i + 1))
            await wait_listening(port)
        config = DummyConfig(
            mode="login",
            login_port=login_port,
            keys_file=str(keys),
            clients=clients,
            relogin=True,
            seconds=60,
            # Each session holds its account ~0.5 s (one echo after a think time),
            # so a kill finds players in game.
            echo_interval=0.5,
            processes=1,
            release_wait=15.0,
        )

        async def kill_and_restart() -> None:
            for _ in range(2):  # killed at about 15 s and 35 s, down for 5 s each time
                await asyncio.sleep(15)  # the run's schedule, not synchronisation
                # The dummy's clients can fall into step, leaving a server empty for a
                # moment: the kill waits for players in game there, so it cuts flows.
                await players_in_game(mariadb_url, raw_sql, status_id=20)
                games[1].send_signal(signal.SIGKILL)
                await asyncio.to_thread(games[1].wait)
                await asyncio.sleep(5)
                games[1] = game_process(mariadb_url, lan_port, game_ports[1], server_id=20)

        chaos = asyncio.get_running_loop().create_task(kill_and_restart())
        result = await run_dummy_async(config)
        await chaos
        errors = {name: n for name, n in result.errors.items() if n}
        assert set(errors) <= {"server_lost"}, result.error_details
        assert result.counters["login_flows"] > 1000
        assert result.counters["server_lost"] >= 1  # the kills did cut flows
    finally:
        for proc in (*games.values(), login):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (*games.values(), login):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    rows = await raw_sql(mariadb_url, "SELECT count(*) FROM status WHERE status <> 0", [])
    assert rows[0][0] == 0
