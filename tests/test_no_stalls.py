"""No stalls: a stuck linked server delays a login by the hand-off deadline at
most; clients that never log in, or trickle bytes, are dropped; one address
cannot take every session. And the smaller findings: masked passwords, no lone
surrogates, named peers and rate-limited lines for bad connections, one bad
row failing only its own login."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from conftest import RawSql, Systems, until
from lan_peer import fake_link
from linked_system import (
    FRAMING,
    System,
    login_request,
    play,
    start_system,
)
from serverlink.net.client import FrameClient, connect_frame_client
from serverlink.net.server import ServerLimits
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NetCodec
from serverlink.protocol.status import LoginStatus
from serverlink.servers.game import GameConfig, GameServer

CODEC = NetCodec()
Games = Callable[..., Awaitable[GameServer]]


@contextlib.asynccontextmanager
async def stalled_system(
    db_url: str, tmp_path: Path, accounts: int, handoff_timeout: float
) -> AsyncIterator[tuple[System, FrameClient]]:
    """A login server and, linked to it, a server that reports itself, then
    never answers a hand-off (as one stopped with SIGSTOP behaves)."""
    options = {"handoff_timeout": handoff_timeout}
    system = await start_system(db_url, tmp_path / "keys.txt", accounts, 0, options)
    stuck = await fake_link(system.login.lan_port, "stuck@127.0.0.1:1", status_id=900)
    try:
        yield system, stuck
    finally:
        stuck.close("done")
        await system.stop()


async def test_a_linked_server_that_never_answers_delays_logins_by_the_deadline_at_most(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with stalled_system(sqlite_url, tmp_path, 10, handoff_timeout=0.5) as (system, _):
        await system.start_game()
        slowest = 0.0
        for account_no in range(1, 9):
            started = time.monotonic()
            reply, _ = await login_request(system.login.port, account_no, system.keys[account_no])
            slowest = max(slowest, time.monotonic() - started)
            assert reply.Status == LoginStatus.OK
            assert reply.GameServerPort == system.games[0].port
        assert slowest < 0.5 + 0.4
        assert system.login.lan.handoffs.handoff_timeouts == 1  # then it is late: tried last


async def test_with_only_a_stuck_server_linked_a_login_answers_noserver_in_time(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with stalled_system(sqlite_url, tmp_path, 2, handoff_timeout=0.3) as (system, _):
        login = system.login
        await until(lambda: len(login.lan.links) == 1)
        started = time.monotonic()
        reply, _ = await login_request(login.port, 1, system.keys[1])
        assert reply.Status == LoginStatus.NOSERVER
        assert time.monotonic() - started < 0.3 + 0.4


@pytest.mark.slow
async def test_a_sigstopped_game_server_process_delays_no_login_beyond_the_deadline(
    sqlite_url: str, tmp_path: Path
) -> None:
    import sys

    system = await start_system(sqlite_url, tmp_path / "keys.txt", 20, 0, {"handoff_timeout": 1.0})
    login = system.login
    proc = subprocess.Popen(
        [sys.executable, "-m", "serverlink", "--log-level", "warning", "game", "--quiet",
         "--login-server", f"127.0.0.1:{login.lan_port}", "--db", sqlite_url, "--port", "0",
         "--server-id", "70", "--server-name", "frozen"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await login.wait_links(game=1, timeout=20)
        await system.start_game()
        proc.send_signal(signal.SIGSTOP)
        for account_no in range(1, 11):
            started = time.monotonic()
            reply, _ = await login_request(login.port, account_no, system.keys[account_no])
            assert reply.Status == LoginStatus.OK
            assert time.monotonic() - started < 1.0 + 0.5
            assert reply.GameServerPort == system.games[0].port
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
        await system.stop()


@pytest.fixture
async def games() -> AsyncIterator[Callable[..., Awaitable[GameServer]]]:
    """``await games(**limits)``: a standalone game server, stopped after the test."""
    started: list[GameServer] = []

    async def start(**limits: object) -> GameServer:
        server = GameServer(GameConfig(port=0, limits=ServerLimits(**limits)))  # type: ignore[arg-type]
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


async def keep_sending_until_closed(c: FrameClient, chunks: list[bytes], every: float) -> None:
    """Send the chunks one by one, ``every`` seconds apart (pacing, not
    synchronisation), until the server closes the connection."""

    async def send() -> None:
        for chunk in chunks:
            c.send_raw(chunk)
            await asyncio.sleep(every)

    task = asyncio.get_running_loop().create_task(send())
    try:
        await c.wait_closed(timeout=3 + len(chunks) * every)
    finally:
        task.cancel()


async def test_a_client_that_never_logs_in_is_dropped_at_the_login_deadline(games: Games) -> None:
    game = await games(login_deadline=1.0, idle_timeout=40)
    c = await connect_frame_client(FRAMING, "127.0.0.1", game.port)
    heartbeat = CODEC.encode_frame(pk.CS_GAME_REQ_HEARTBEAT.build())
    await keep_sending_until_closed(c, [heartbeat] * 50, 0.2)  # whole packets, never a login
    assert game.stats.errors["login_deadline"] == 1


async def test_a_byte_a_second_does_not_keep_a_logged_in_session_alive(games: Games) -> None:
    game = await games(idle_timeout=1.0)
    c = await connect_frame_client(FRAMING, "127.0.0.1", game.port)
    c.send(pk.CS_GAME_REQ_LOGIN.build(1, b"k" * 64, 1))
    await c.recv()
    frame = CODEC.encode_frame(pk.CS_GAME_REQ_HEARTBEAT.build()) * 10
    bytes_ = [frame[i : i + 1] for i in range(len(frame))]
    await keep_sending_until_closed(c, bytes_[:12], 0.4)  # never a whole packet
    assert game.stats.disconnects["idle_timeout"] == 1


async def test_one_address_cannot_take_more_than_its_share_of_sessions(games: Games) -> None:
    game = await games(max_sessions_per_ip=2)
    first = await connect_frame_client(FRAMING, "127.0.0.1", game.port)
    second = await connect_frame_client(FRAMING, "127.0.0.1", game.port)
    third = await connect_frame_client(FRAMING, "127.0.0.1", game.port)
    await third.wait_closed()
    assert game.stats.errors["over_ip_cap"] == 1
    first.close("bye")
    await until(lambda: len(game.listener.sessions) == 1)
    fourth = await connect_frame_client(FRAMING, "127.0.0.1", game.port)
    await until(lambda: len(game.listener.sessions) == 2)
    assert not fourth.lost.is_set() and not second.lost.is_set()


# --- smaller findings -------------------------------------------------------------------


def test_config_show_masks_the_database_password() -> None:
    from click.testing import CliRunner

    from serverlink.cli import main_group

    url = "mysql://game:s3cret-pass@db.example:3306/accountdb"
    shown = CliRunner().invoke(main_group, ["config", "show", "login", "--db", url]).output
    assert "s3cret-pass" not in shown
    assert "mysql://game:***@db.example:3306/accountdb" in shown


def test_a_cut_wchar_field_never_ends_in_a_lone_surrogate() -> None:
    text = "x" * 18 + "\U0001f600"  # the emoji is two UTF-16 units, units 19 and 20
    field = pk.encode_wstr(text, 20)
    assert len(field) == 40
    assert pk.decode_wstr(field) == "x" * 18  # the pair is dropped whole
    field.decode("utf-16-le")  # strict: would raise on a lone surrogate


async def test_a_refused_connection_over_the_cap_names_its_peer(
    games: Games, caplog: pytest.LogCaptureFixture
) -> None:
    game = await games(max_sessions=1)
    with caplog.at_level(logging.WARNING, "serverlink"):
        await connect_frame_client(FRAMING, "127.0.0.1", game.port)
        over = await connect_frame_client(FRAMING, "127.0.0.1", game.port)
        await over.wait_closed()
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1 and "from 127.0.0.1:" in lines[0] and "from ?" not in lines[0]


async def test_bad_connections_are_logged_at_a_bounded_rate(
    games: Games, caplog: pytest.LogCaptureFixture
) -> None:
    game = await games()
    bad = b"\x00" * 8  # wrong frame code
    with caplog.at_level(logging.WARNING, "serverlink"):
        for _ in range(40):
            c = await connect_frame_client(FRAMING, "127.0.0.1", game.port)
            c.send_raw(bad)
            await c.wait_closed()
    assert game.stats.errors["bad_code"] == 40  # every one counted
    lines = [r for r in caplog.records if "bad_code" in r.getMessage()]
    assert len(lines) == game.stats.problems.burst  # but only a few logged
    game.stats.problems.clock = lambda: time.monotonic() + 3600  # the window is over
    game.stats.problems.flush()
    summary = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert summary == ["30 more bad_code lines left out in the last 10 s"]


async def test_one_unusable_account_row_fails_only_its_own_login(
    systems: Systems, sqlite_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    # SQLite keeps what it is given: a status that is not a number is a broken
    # row (MariaDB's INT column cannot hold one).
    system = await systems(sqlite_url, 3)
    await raw_sql(sqlite_url, "UPDATE status SET status = 'x' WHERE accountno = 2", [])
    (good, _), (broken, _) = await asyncio.gather(
        login_request(system.login.port, 1, system.keys[1]),
        login_request(system.login.port, 2, system.keys[2]),
    )
    assert good.Status == LoginStatus.OK
    assert broken.Status == LoginStatus.DB_UNAVAILABLE
    assert system.login.accounts.batches == 1  # both were read in one statement
    await play(system, 3)
