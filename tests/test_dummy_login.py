"""The dummy client in login mode over real sockets: login server -> hand-off to
the game server -> game login -> echo, on SQLite and on MariaDB (``db_url``);
relogin leaves no account in game; refusals are counted by Status name; the
command line validates the key file."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import RawSql, until
from linked_system import System, start_system
from serverlink.cli.dummy import dummy_command
from serverlink.dummy import DummyResult, run_dummy_async
from serverlink.dummy.config import DummyConfig
from serverlink.dummy.keys import (
    Account,
    AccountPool,
    KeyFileError,
    check_key_count,
    keys_of,
    load_keys,
)
from serverlink.dummy.metrics import Meter
from serverlink.servers.game import GameServer

RunSync = Callable[[Coroutine[Any, Any, Any]], Any]


# --- in-process login + linked game server ------------------------------------------------------
def dummy_config(system: System, **overrides: Any) -> DummyConfig:
    settings: dict[str, Any] = {
        "mode": "login",
        "login_host": "127.0.0.1",
        "login_port": system.login.port,
        "keys_file": str(system.keys_file),
        "clients": 4,
        "echo_depth": 2,
        "seconds": 1.5,
        "processes": 1,
    }
    settings.update(overrides)
    return DummyConfig(**settings)


@pytest.fixture
async def system(db_url: str, tmp_path: Path) -> AsyncIterator[System]:
    sys_ = await start_system(db_url, tmp_path / "keys.txt", 40)
    try:
        yield sys_
    finally:
        await sys_.stop()


async def settle(game: GameServer) -> None:
    """Wait until the game server has seen every client go and written every
    logout: no session, no login still being completed, the status writer idle."""
    await until(lambda: not game.listener.sessions and not game.logins_in_progress)
    await until(lambda: not game.in_game)
    assert game.claims is not None
    await game.claims.drain(5)


async def in_game_count(raw_sql: RawSql, db_url: str) -> int:
    rows = await raw_sql(db_url, "SELECT count(*) FROM status WHERE status <> 0", [])
    return int(rows[0][0])


def check_report(result: DummyResult) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(json.dumps(result.report()))
    for key in ("echo_per_s", "errors_total", "latency_ms", "login_flows_per_s"):
        assert key in report
    assert set(report["latency_ms"]) >= {"p50", "p99", "max"}
    assert set(report["login_latency_ms"]) >= {"p50", "p99", "max"}
    assert report["errors_total"] == result.errors_total
    return report


# --- the flow ----------------------------------------------------------------------------------
async def test_login_mode_logs_in_through_the_login_server_then_echoes(system: System) -> None:
    result = await run_dummy_async(
        dummy_config(
            system,
        )
    )
    assert result.errors_total == 0, result.error_details
    assert result.exit_code == 0
    c = result.counters
    assert c["login_server_ok"] == c["login_flows"] == c["login_ok"] == 4
    assert c["echo_recv"] > 0
    assert result.login_flows_per_s > 0
    report = check_report(result)
    assert report["mode"] == "login"
    assert report["target"] == f"127.0.0.1:{system.login.port}"
    latency = report["login_latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"]
    assert latency["max"] > 0
    assert report["login_failures"] == {} and report["game_login_failures"] == {}
    assert sum(report["login_flows_per_s_series"]) == 4
    assert system.login.login_stats.success == 4
    assert system.game is not None and system.game.game_stats.logins == 4


@pytest.mark.parametrize("processes", [1, 2])
async def test_relogin_repeats_the_flow_and_leaves_no_account_in_game(
    system: System, raw_sql: RawSql, processes: int
) -> None:
    config = dummy_config(system, clients=6, relogin=True, seconds=2.0, processes=processes)
    result = await run_dummy_async(config)
    assert result.processes == processes
    assert result.errors_total == 0, result.error_details
    c = result.counters
    assert c["login_flows"] > 2 * 6  # back to back, far more flows than clients
    # One echo per flow, each answered before the disconnect.
    assert c["echo_recv"] >= c["login_flows"] - 6
    assert result.login_flows_per_s > 0
    report = check_report(result)
    assert report["relogin"] is True
    assert system.game is not None
    await settle(system.game)
    assert await in_game_count(raw_sql, system.db_url) == 0


@pytest.mark.parametrize("accounts", ["spare", "one_per_client"])
async def test_disconnect_rate_reruns_the_whole_flow(
    db_url: str, tmp_path: Path, raw_sql: RawSql, accounts: str
) -> None:
    clients = 4
    system = await start_system(
        db_url, tmp_path / "keys.txt", 2 * clients if accounts == "spare" else clients
    )
    try:
        config = dummy_config(
            system, clients=clients, disconnect_rate=1.0, seconds=2.7, account_reuse_delay=0.3
        )
        result = await run_dummy_async(config)
        # With one account per client each client logs the same account in again
        # right after leaving: its logout must have been written (else Status GAME).
        assert result.errors_total == 0, result.error_details
        c = result.counters
        assert c["disconnect_planned"] >= clients
        # Each leave ran the login server part again, not only the game login.
        assert c["login_server_ok"] >= 2 * clients
        assert c["login_flows"] >= 2 * clients
        assert system.login.login_stats.success == c["login_server_ok"]
        assert system.game is not None
        await settle(system.game)
        assert await in_game_count(raw_sql, system.db_url) == 0
    finally:
        await system.stop()


def slow_logouts(game: GameServer, delay: float | None) -> None:
    """Make the game server's logout writes (status back to 0) take ``delay``
    seconds longer, or with None never happen (a stuck status)."""
    assert game.store is not None
    clear = game.store.clear_statuses_if

    async def delayed(account_nos: Sequence[int], expected: int) -> int:
        if delay is None:
            return 0
        await asyncio.sleep(delay)
        return await clear(account_nos, expected)

    game.store.clear_statuses_if = delayed  # type: ignore[method-assign]


async def test_an_account_still_closing_is_retried_not_counted(
    db_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    # One account per client, reused 0.05 s after its game connection closed,
    # while the game server takes 0.6 s to write a logout: the login server
    # answers GAME until then. That is the dummy's haste, not a server error.
    system = await start_system(db_url, tmp_path / "keys.txt", 3)
    try:
        assert system.game is not None
        slow_logouts(system.game, 0.6)
        config = dummy_config(
            system, clients=3, disconnect_rate=1.0, seconds=3.2, account_reuse_delay=0.05
        )
        result = await run_dummy_async(config)
        assert result.errors_total == 0, result.error_details
        assert result.counters["account_busy"] > 0
        assert result.counters["login_flows"] >= 6  # and they did get back in
        await settle(system.game)
        assert await in_game_count(raw_sql, system.db_url) == 0
    finally:
        await system.stop()


async def test_an_account_left_in_game_is_an_error(db_url: str, tmp_path: Path) -> None:
    # The game server never writes the logouts: past reply_timeout after our
    # close, GAME means a stuck status (the bug the prototype had).
    system = await start_system(db_url, tmp_path / "keys.txt", 2)
    try:
        assert system.game is not None
        slow_logouts(system.game, None)
        config = dummy_config(
            system,
            clients=2,
            disconnect_rate=1.0,
            seconds=3.5,
            account_reuse_delay=0.05,
            reply_timeout=0.8,
            reconnect_backoff=0.2,
        )
        result = await run_dummy_async(config)
        assert result.exit_code == 1
        assert result.login_failures.get("GAME", 0) > 0, result.error_details
        assert result.counters["account_busy"] > 0  # within reply_timeout: retried
    finally:
        await system.stop()


# --- failures ----------------------------------------------------------------------------------
async def test_wrong_keys_are_refused_with_fail(system: System, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("".join(f"{n} {'x' * 64}\n" for n in range(1, 11)))
    result = await run_dummy_async(
        dummy_config(system, keys_file=str(wrong), reconnect_backoff=0.2)
    )
    assert result.exit_code == 1
    assert result.counters["login_server_fail"] >= 4
    assert result.counters["login_flows"] == 0
    assert set(result.login_failures) == {"FAIL"}
    assert result.login_failures["FAIL"] == result.counters["login_server_fail"]
    report = check_report(result)
    assert report["login_failures"] == result.login_failures
    assert report["error_details"]["login_server:FAIL"] >= 4


async def test_no_game_server_linked_is_refused_with_noserver(system: System) -> None:
    await system.stop_game()
    result = await run_dummy_async(dummy_config(system, clients=2, seconds=1.0))
    assert result.exit_code == 1
    assert set(result.login_failures) == {"NOSERVER"}
    assert result.login_failures["NOSERVER"] >= 2
    assert result.counters["login_flows"] == 0


async def test_game_login_refusal_is_counted_by_status_name(system: System) -> None:
    result = await run_dummy_async(dummy_config(system, clients=2, seconds=1.0, version=7))
    assert result.exit_code == 1
    assert result.counters["login_server_ok"] >= 2  # the login server said yes
    assert set(result.game_login_failures) == {"VERSION_MISMATCH"}
    assert result.counters["login_fail"] == result.game_login_failures["VERSION_MISMATCH"]
    assert result.counters["login_flows"] == 0


async def _closing_server(reply: bytes) -> tuple[asyncio.Server, int]:
    """A 'login server' that answers every connection with ``reply`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(reply)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "counter", "detail"),
    [
        (b"", "disconnect_server", "disconnect:peer_closed_in_login_server"),
        (b"\x00" * 10, "packet_error", "packet:login_server_bad_code"),
    ],
)
async def test_login_server_closing_before_its_reply_is_an_error(
    tmp_path: Path, reply: bytes, counter: str, detail: str
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"{n} {'k' * 64}\n" for n in range(1, 5)))
    server, port = await _closing_server(reply)
    try:
        config = DummyConfig(
            mode="login", login_port=port, keys_file=str(keys), clients=2, seconds=1.0,
            processes=1, reconnect_backoff=0.2,
        )  # fmt: skip
        result = await run_dummy_async(config)
    finally:
        server.close()
    assert result.exit_code == 1
    assert result.counters[counter] >= 2, result.error_details
    assert result.error_details.get(detail, 0) >= 2, result.error_details


@pytest.mark.parametrize(("reply_timeout", "errors"), [(0.3, True), (30.0, False)])
async def test_unanswered_login_times_out_but_one_cut_off_by_the_end_is_no_error(
    tmp_path: Path, reply_timeout: float, errors: bool
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"{n} {'k' * 64}\n" for n in range(1, 3)))
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # reads the request, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        config = DummyConfig(
            mode="login", login_port=server.sockets[0].getsockname()[1], keys_file=str(keys),
            clients=2, seconds=1.5, processes=1, reply_timeout=reply_timeout, late=0.05,
            reconnect_backoff=0.2,
        )  # fmt: skip
        result = await run_dummy_async(config)
    finally:
        server.close()
        for w in held:
            w.close()
    if errors:
        assert result.error_details.get("login_server:timeout", 0) >= 2
        assert result.exit_code == 1
    else:
        # Still waiting when the run ended, well within reply_timeout: cut off,
        # not failed (a login has no "late" threshold, unlike an echo).
        assert result.errors_total == 0, result.error_details
        assert result.exit_code == 0


async def test_login_server_down_counts_connect_failures(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"{n} {'k' * 64}\n" for n in range(1, 3)))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    config = DummyConfig(
        mode="login", login_port=port, keys_file=str(keys), clients=2, seconds=0.8,
        processes=1, reconnect_backoff=0.2,
    )  # fmt: skip
    result = await run_dummy_async(config)
    assert result.exit_code == 1
    assert result.error_details.get("connect:login_server:ConnectionRefusedError", 0) >= 2


# --- units -------------------------------------------------------------------------------------
def test_key_file_loading_and_split(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("".join(f"{n} {chr(65 + n % 26) * 64}\n" for n in range(1, 11)) + "\n")
    keys = load_keys(path)
    assert [a for a, _ in keys] == list(range(1, 11))
    assert keys[0][1] == b"B" * 64
    shares = [keys_of(w, 3, keys) for w in range(3)]
    flat = [a for share in shares for a, _ in share]
    assert sorted(flat) == list(range(1, 11))  # every account, each in one worker only
    assert len(set(flat)) == len(flat)

    check_key_count(DummyConfig(mode="login", keys_file=str(path), clients=10), 10)
    check_key_count(DummyConfig(mode="login", keys_file=str(path), clients=5, relogin=True), 10)
    with pytest.raises(KeyFileError, match="fewer than the 11 clients"):
        check_key_count(DummyConfig(mode="login", keys_file=str(path), clients=11), 10)
    with pytest.raises(KeyFileError, match="2 × clients"):
        check_key_count(DummyConfig(mode="login", keys_file=str(path), clients=6, relogin=True), 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lists no accounts"),
        ("1\n", "expected 'accountno key'"),
        ("x " + "k" * 64 + "\n", "expected 'accountno key'"),
        ("1 short\n", "key of 5 characters"),
        ("0 " + "k" * 64 + "\n", "out of range"),
        (f"1 {'k' * 64}\n1 {'j' * 64}\n", "listed twice"),
    ],
)
def test_bad_key_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=message):
        load_keys(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_keys(tmp_path / "missing.txt")


async def test_account_pool_rotates_and_respects_the_reuse_delay() -> None:
    meter = Meter()
    pool = AccountPool([Account(n, b"k" * 64, 1) for n in (1, 2, 3)], 0.2, meter)
    first = await pool.take()
    second = await pool.take()
    assert (first.no, second.no) == (1, 2)
    pool.give_back(first)
    # Account 3 has been free longest: it comes before the one just given back.
    assert (await pool.take()).no == 3
    assert meter.account_wait == 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert (await pool.take()).no == 1  # freed just now: waits out the delay
    assert loop.time() - t0 >= 0.18
    assert meter.account_wait == 1
    # Nothing free: a taker waits until an account comes back.
    waiting = asyncio.ensure_future(pool.take())
    await until(lambda: pool.takers_waiting == 1)
    assert not waiting.done()
    pool.give_back(second)
    assert (await asyncio.wait_for(waiting, 2)).no == 2
    # A cancelled taker does not lose an account.
    cancelled = asyncio.ensure_future(pool.take())
    await until(lambda: pool.takers_waiting == 1)
    pool.give_back(second)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert len(pool) == 1


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="key file"):
        DummyConfig(mode="login")
    with pytest.raises(ValueError, match="relogin"):
        DummyConfig(relogin=True)
    assert DummyConfig(mode="login", keys_file="k", login_port=9).target == "127.0.0.1:9"


# --- command line ------------------------------------------------------------------------------
@pytest.fixture
def threaded_system(db_url: str, tmp_path: Path) -> Iterator[System]:
    """Login + game server on their own loop in a thread, for the synchronous CLI."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: list[System] = []
    errors: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            box.append(loop.run_until_complete(start_system(db_url, tmp_path / "keys.txt", 12)))
        except BaseException as exc:
            errors.append(exc)
            return
        finally:
            started.set()
        loop.run_forever()
        loop.run_until_complete(box[0].stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    if errors:
        raise errors[0]
    try:
        yield box[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def test_cli_login_mode_writes_report(threaded_system: System, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    args = [
        "--mode", "login", "--login-server", f"127.0.0.1:{threaded_system.login.port}",
        "--keys", str(threaded_system.keys_file), "--clients", "4", "--relogin",
        "--seconds", "1.2", "--processes", "1", "--quiet", "--report", str(report),
    ]  # fmt: skip
    result = CliRunner().invoke(dummy_command, args)
    assert result.exit_code == 0, result.output
    assert "logins/s=" in result.output and "in_login=" in result.output
    data = json.loads(report.read_text())
    assert data["errors_total"] == 0
    assert data["login_flows_per_s"] > 0
    assert set(data["login_latency_ms"]) >= {"p50", "p99", "max"}
    assert data["config"]["relogin"] is True


def _cli_error(args: list[str]) -> str:
    result = CliRunner().invoke(dummy_command, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_cli_validates_the_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"{n} {'k' * 64}\n" for n in range(1, 11)))
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n")
    login = ["--mode", "login", "--keys"]
    assert "needs a key file" in _cli_error(["--mode", "login"])
    assert "does not exist" in _cli_error([*login, str(tmp_path / "none.txt")])
    assert "directory" in _cli_error([*login, str(tmp_path)])
    assert "expected 'accountno key'" in _cli_error([*login, str(bad)])
    assert "fewer than the 11 clients" in _cli_error([*login, str(keys), "--clients", "11"])
    assert "2 × clients" in _cli_error([*login, str(keys), "--clients", "6", "--relogin"])
    assert "relogin" in _cli_error(["--relogin"])
    assert "HOST:PORT" in _cli_error([*login, str(keys), "--login-server", "nohost"])
