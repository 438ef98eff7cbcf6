"""One key, one session: the key goes to the one server the client is sent to
and works once; the database decides who plays an account; a wrong key says
nothing about the account; failed logins cool an address off. Real sockets,
SQLite and MariaDB."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import RawSql, Systems, until
from linked_system import System, game_login, login_request, play, start_login, start_system
from serverlink.protocol.status import GameLoginStatus, LoginStatus
from serverlink.store.admin import seed_db


@pytest.fixture
async def two_games(db_url: str, tmp_path: Path) -> AsyncIterator[System]:
    system = await start_system(db_url, tmp_path / "keys.txt", 20, games=2)
    yield system
    await system.stop()


async def test_a_handed_over_key_logs_in_exactly_once_across_two_game_servers(
    two_games: System,
) -> None:
    system = two_games
    key = system.keys[1]
    reply, _ = await login_request(system.login.port, 1, key)
    assert reply.Status == LoginStatus.OK
    chosen = system.game_at(reply.GameServerPort)
    other = next(g for g in system.games if g is not chosen)
    assert (chosen.link and chosen.link.handoffs, other.link and other.link.handoffs) == (1, 0)
    # The other server never got the key; the chosen one takes it once.
    status, _ = await game_login(other.port, 1, key)
    assert status.Status == GameLoginStatus.FAIL
    status, first = await game_login(chosen.port, 1, key)
    assert status.Status == GameLoginStatus.OK
    status, _ = await game_login(chosen.port, 1, key)
    assert status.Status == GameLoginStatus.FAIL  # used up
    first.close("done")


async def test_placement_spreads_logins_over_the_game_servers(two_games: System) -> None:
    system = two_games
    placed = []
    for account_no in range(1, 11):
        game, _conn = await play(system, account_no)
        placed.append(game)
    counts = [placed.count(g) for g in system.games]
    assert counts == [5, 5]  # each report-less placement counted, most free first


async def test_a_game_login_whose_claim_the_database_refuses_is_refused(
    two_games: System, raw_sql: RawSql
) -> None:
    system = two_games
    reply, _ = await login_request(system.login.port, 2, system.keys[2])
    assert reply.Status == LoginStatus.OK
    # Between the hand-off and the game login another server claims the account.
    await raw_sql(system.db_url, "UPDATE status SET status = 999 WHERE accountno = 2", [])
    status, conn = await game_login(reply.GameServerPort, 2, system.keys[2])
    assert status.Status == GameLoginStatus.FAIL
    await conn.wait_closed()
    game = system.game_at(reply.GameServerPort)
    assert game.stats.refusals["in_game_elsewhere"] == 1 and 2 not in game.in_game
    rows = await raw_sql(system.db_url, "SELECT status FROM status WHERE accountno = 2", [])
    assert rows[0][0] == 999  # left to the server that holds it


async def test_a_logout_clears_only_its_own_claim(two_games: System, raw_sql: RawSql) -> None:
    system = two_games
    game, conn = await play(system, 3)
    # Somebody else's mark replaced ours (an operator, another server): leaving
    # must not clear it.
    await raw_sql(system.db_url, "UPDATE status SET status = 999 WHERE accountno = 3", [])
    conn.close("bye")
    await until(lambda: 3 not in game.in_game)
    assert game.claims is not None
    await game.claims.drain(5)
    rows = await raw_sql(system.db_url, "SELECT status FROM status WHERE accountno = 3", [])
    assert rows[0][0] == 999


async def test_the_same_account_on_a_second_server_while_playing_is_refused(
    two_games: System, raw_sql: RawSql
) -> None:
    system = two_games
    game, conn = await play(system, 4)
    # The login server refuses a second login while it plays (Status 2)...
    reply, _ = await login_request(system.login.port, 4, system.keys[4])
    assert reply.Status == LoginStatus.GAME
    # ...and even a key that reached the other server could not claim it.
    other = next(g for g in system.games if g is not game)
    assert other.link is not None
    other.link.keys.put_now(4, system.keys[4], 60)
    status, _ = await game_login(other.port, 4, system.keys[4])
    assert status.Status == GameLoginStatus.FAIL
    rows = await raw_sql(system.db_url, "SELECT status FROM status WHERE accountno = 4", [])
    assert rows[0][0] == game.config.status_id
    conn.close("done")


async def test_refusals_do_not_reveal_the_account(
    systems: Systems, db_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    system = await systems(db_url, 5)
    await raw_sql(db_url, "DELETE FROM sessionkey WHERE accountno = 2", [])
    await raw_sql(db_url, "DELETE FROM status WHERE accountno = 3", [])
    for account_no, key, status in (
        (1, b"x" * 64, LoginStatus.FAIL),
        (2, system.keys[2], LoginStatus.SESSION_MISS),
        (3, system.keys[3], LoginStatus.STATUS_MISS),
    ):
        reply, _ = await login_request(system.login.port, account_no, key)
        assert reply.Status == status
        assert (reply.ID, reply.Nickname) == ("", "")
    reply, _ = await login_request(system.login.port, 4, system.keys[4])
    assert (reply.Status, reply.ID, reply.Nickname) == (LoginStatus.OK, "ID_4", "NICK_4")


async def test_an_address_with_too_many_failed_logins_cools_off_without_db_reads(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await seed_db(db_url, 3, keys_out=tmp_path / "keys.txt")
    login = await start_login(db_url, login_fail_limit=3, login_cooldown=60)
    try:
        with caplog.at_level(logging.WARNING, "serverlink"):
            for _ in range(3):
                reply, _ = await login_request(login.port, 1, b"w" * 64)
                assert reply.Status == LoginStatus.FAIL
            reads = login.accounts.batches
            right = (tmp_path / "keys.txt").read_text().split()[1].encode()
            for _ in range(2):
                reply, _ = await login_request(login.port, 1, right)
                assert reply.Status == LoginStatus.FAIL  # even the right key, while cooling
        assert login.accounts.batches == reads  # no database read for them
        assert login.failed_logins.cooling_refusals == 2
        lines = [r for r in caplog.records if "failed logins within" in r.getMessage()]
        assert len(lines) == 1
    finally:
        await login.stop()
