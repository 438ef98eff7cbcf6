"""The scale-out deployment end to end: 2 login, 3 game and 2 chat servers
started by ``serverlink up`` on MariaDB (this test's database) and a private
Redis key store, driven by the dummy in login mode with --relogin over both
login servers. Real processes, real sockets; the servers' own figures from
their /metrics ports, the accounts in game from the status table."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import ServerQuery, until
from linked_system import game_login, login_request, read_keys
from private_mariadb import free_port
from private_redis import PrivateRedis
from serverlink.net.client import FrameClient
from serverlink.protocol.status import GameLoginStatus, LoginStatus
from serverlink.store.admin import seed_db
from test_cli import Proc, start
from test_cli import procs as procs  # the fixture
from test_monitor_http import families, get
from test_up import LISTENING, matches, reaped

pytestmark = [pytest.mark.slow, pytest.mark.mariadb]

GAMES = ("game-1", "game-2", "game-3")
LOGINS = ("login-1", "login-2")
#: Accounts per dummy run: --relogin takes two per client.
CLIENTS = 40


@dataclass
class Deployment:
    up: Proc
    keys: dict[int, bytes]
    key_file: Path
    #: Each login server's client port, by name.
    login_ports: dict[str, int]
    #: Each login and game server's /metrics port, by name.
    metrics: dict[str, int]
    tmp: Path

    def pids(self) -> dict[str, int]:
        """The pid of each server, the latest start of each."""
        found = {m["name"]: int(m["pid"]) for m in matches(self.up, LISTENING)}
        started = re.compile(r"^(\S+)\s+\| .* ready: listening on \S+ \(pid (\d+)\)")
        found.update({m[1]: int(m[2]) for m in matches(self.up, started)})
        return found

    def linked_lines(self, login: str) -> int:
        linked = re.compile(rf"^{login}\s+\| .* linked \(clients go to")
        return len(matches(self.up, linked))


def write_cluster(
    tmp: Path, db: str, key_store: str
) -> tuple[Path, dict[str, int], dict[str, int]]:
    """The file: its path, each login server's client port, each login and game
    server's /metrics port."""
    logins = {name: (free_port(), free_port()) for name in LOGINS}
    metrics = {name: free_port() for name in (*LOGINS, *GAMES)}
    lans = ",".join(f"127.0.0.1:{lan}" for _, lan in logins.values())
    text = (
        f'[shared]\ndb = "{db}"\nkey_store = "{key_store}"\nlogin_server = "{lans}"\n'
        "link_heartbeat = 1\n"
    )
    for name, (port, lan) in logins.items():
        text += (
            f'[[server]]\nkind = "login"\nname = "{name}"\nport = {port}\nlan_port = {lan}\n'
            f"release_after = 2\nmetrics_port = {metrics[name]}\n"
        )
    for number, name in enumerate(GAMES, 1):
        text += (
            f'[[server]]\nkind = "game"\nname = "{name}"\nport = {free_port()}\n'
            f"server_id = {number}\nmetrics_port = {metrics[name]}\n"
        )
    for number in (1, 2):
        text += f'[[server]]\nkind = "chat"\nname = "chat-{number}"\nport = {free_port()}\n'
    path = tmp / "cluster.toml"
    path.write_text(text)
    return path, {name: port for name, (port, _) in logins.items()}, metrics


@pytest.fixture
def deployment(
    procs: list[Proc], mariadb_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> Iterator[Deployment]:
    key_file = tmp_path / "keys.txt"
    asyncio.run(seed_db(mariadb_url, 4 * CLIENTS + 40, keys_out=key_file))
    path, login_ports, metrics = write_cluster(tmp_path, mariadb_url, private_redis.url)
    up = start(procs, "up", str(path))
    up.wait_for("up: 7 servers ready", timeout=60)
    d = Deployment(up, read_keys(key_file), key_file, login_ports, metrics, tmp_path)
    # every game and chat server linked to both login servers
    asyncio.run(until(lambda: all(d.linked_lines(login) >= 5 for login in LOGINS), 30))
    yield d
    up.signal(signal.SIGTERM)
    assert up.wait(60) == 0, up.stderr[-3000:]


async def logins(d: Deployment, names: tuple[str, ...] = GAMES) -> dict[str, int]:
    """Each server's logins so far (its own count, from its /metrics); a server
    that is down is left out."""
    counts: dict[str, int] = {}
    for name in names:
        try:
            _, text = await get(d.metrics[name], "/metrics")
        except OSError:  # killed, not yet back
            continue
        counts[name] = int(families(text)["serverlink_logins"][0][1])
    return counts


def dummy(
    procs: list[Proc], d: Deployment, accounts: range, seconds: float, name: str
) -> tuple[Proc, Path]:
    """The dummy in login mode with --relogin over both login servers, on
    ``accounts`` (two per client)."""
    keys = d.tmp / f"keys-{name}.txt"
    keys.write_text("".join(f"{n} {d.keys[n].decode()}\n" for n in accounts))
    report = d.tmp / f"report-{name}.json"
    both = ",".join(f"127.0.0.1:{port}" for port in d.login_ports.values())
    p = start(
        procs, "dummy", "--mode", "login", "--relogin", "--login-server", both,
        "--keys", str(keys), "--clients", str(len(accounts) // 2), "--seconds", str(seconds),
        "--quiet", "--report", str(report),
    )  # fmt: skip
    return p, report


def finished(run: tuple[Proc, Path]) -> dict[str, Any]:
    p, report = run
    assert p.wait(60) in (0, 1), p.stderr  # 1: it counted errors
    found: dict[str, Any] = json.loads(report.read_text())
    return found


async def in_game(query: ServerQuery, db: str) -> dict[int, int]:
    """The accounts in game: their status (the game server's id), by account."""
    name = db.rsplit("/", 1)[1]
    rows = await query(f"SELECT accountno, status FROM `{name}`.status WHERE status <> 0", ())
    return {int(account): int(status) for account, status in rows}


async def settled_in_game(query: ServerQuery, db: str, timeout: float = 10.0) -> dict[int, int]:
    """The accounts in game once none is left (a release is written just after
    its session ends), or as they are after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := await in_game(query, db)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left


async def login_flow(d: Deployment, login: str, account_no: int) -> int:
    """The whole flow through ``login``: the game server's port it named."""
    key = d.keys[account_no]
    reply, c = await login_request(d.login_ports[login], account_no, key)
    assert reply.Status == LoginStatus.OK, reply
    await c.wait_closed()
    status, g = await game_login(reply.GameServerPort, account_no, key)
    assert status.Status == GameLoginStatus.OK, status
    g.close("test")
    await g.wait_closed()
    return reply.GameServerPort


def started_at(stamp: str) -> float:
    """A report's ``started_at`` (UTC, ``...Z``) as a time.time()."""
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return when.replace(tzinfo=UTC).timestamp()


def within_10_percent(counts: dict[str, int]) -> bool:
    return min(counts.values()) >= 0.9 * max(counts.values())


async def flowing(d: Deployment, names: tuple[str, ...] = GAMES, more: int = 1) -> None:
    """Wait until every one of ``names`` has logged ``more`` players in since
    this call (the load reaches each)."""
    first = await logins(d)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = await logins(d)
        if all(now.get(n, 0) >= first.get(n, 0) + more for n in names):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {more} more logins on every one of {names}: {first} -> {now}")


async def test_the_deployment_spreads_players_evenly_and_leaves_no_account_in_game(
    procs: list[Proc], deployment: Deployment, mariadb_url: str, mariadb_query: ServerQuery
) -> None:
    d = deployment
    servers = (*LOGINS, *GAMES)
    before = await logins(d, servers)
    report = finished(dummy(procs, d, range(1, 4 * CLIENTS + 1), 10, "even"))
    after = await logins(d, servers)
    served = {name: after[name] - before[name] for name in servers}
    assert report["errors_total"] == 0, report["errors"]
    flows = report["counters"]["login_flows"]
    # over both login servers, in turn
    for login in LOGINS:
        assert abs(served[login] - flows / 2) <= CLIENTS, served
    # players within 10 % of each other across the game servers, by the dummy's
    # count and by each game server's own
    by_address = report["login_flows_by_game_server"]
    by_game = {name: by_address[f"127.0.0.1:{game_port(d, name)}"] for name in GAMES}
    assert sum(by_game.values()) == flows
    assert within_10_percent(by_game), by_game
    for name in GAMES:
        assert abs(served[name] - by_game[name]) <= 2 * CLIENTS, (served, by_game)
    assert await settled_in_game(mariadb_query, mariadb_url) == {}


def unlinked_by_both(d: Deployment, game_port: int) -> bool:
    gone = re.compile(rf"^(login-\d)\s+\| .*'game@127\.0\.0\.1:{game_port}' .* unlinked")
    return {m[1] for m in matches(d.up, gone)} == set(LOGINS)


async def hold_players(
    d: Deployment, accounts: range, on_port: int, count: int
) -> tuple[list[int], list[FrameClient]]:
    """Log accounts in until ``count`` are in game on the game server at
    ``on_port``: those accounts, and their game connections, kept open (the
    others are closed)."""
    held: list[int] = []
    kept: list[FrameClient] = []
    for account_no in accounts:
        key = d.keys[account_no]
        reply, c = await login_request(d.login_ports["login-1"], account_no, key)
        assert reply.Status == LoginStatus.OK, reply
        await c.wait_closed()
        status, g = await game_login(reply.GameServerPort, account_no, key)
        assert status.Status == GameLoginStatus.OK, status
        if reply.GameServerPort != on_port:
            g.close("test")
            continue
        held.append(account_no)
        kept.append(g)
        if len(held) == count:
            return held, kept
    raise AssertionError(f"only {held} placed on port {on_port}")


async def test_a_killed_game_server_costs_only_its_players_and_comes_back_into_placement(
    procs: list[Proc], deployment: Deployment, mariadb_url: str, mariadb_query: ServerQuery
) -> None:
    d = deployment
    victim = "game-2"
    port = game_port(d, victim)
    spare = range(4 * CLIENTS + 1, 4 * CLIENTS + 41)
    held, _connections = await hold_players(d, spare, port, 3)
    run = dummy(procs, d, range(1, 4 * CLIENTS + 1), 8, "kill")
    await flowing(d, more=200)  # under load: a couple of seconds into the run
    dead = d.pids()[victim]
    os.kill(dead, signal.SIGKILL)
    killed_at = time.time()
    # both login servers stop placing on it within a second
    await until(lambda: unlinked_by_both(d, port), timeout=1.0)
    await flowing(d, ("game-1", "game-3"))
    # restarted by up, it is placed on again, under the same load
    await until(lambda: d.pids()[victim] != dead, timeout=15)
    await flowing(d, (victim,), more=10)
    report = finished(run)
    # the logins cut by the kill fail in its second or the next; none after
    errors = report["errors_series"]
    killed = int(killed_at - started_at(report["started_at"]))
    late = {second: n for second, n in enumerate(errors) if n and second > killed + 1}
    assert late == {}, (killed, errors, report["errors"])
    # its players' accounts are released (nothing else is in game now: the
    # dummy has ended) and log in again
    in_game_now = await settled_in_game(mariadb_query, mariadb_url)
    assert not set(held) & set(in_game_now), in_game_now
    for account_no in held:
        await login_flow(d, "login-2", account_no)
    restarts = [line for line in d.up.lines if "up: " in line and " died " in line]
    assert len(restarts) == 1 and victim in restarts[0], restarts


async def test_one_login_server_killed_the_other_serves_and_a_redis_outage_answers_7(
    deployment: Deployment, private_redis: PrivateRedis
) -> None:
    d = deployment
    dead = d.pids()["login-1"]
    os.kill(dead, signal.SIGKILL)
    await until(lambda: reaped(dead))
    with pytest.raises(ConnectionRefusedError):  # login-1 is down (until up restarts it)
        await asyncio.open_connection("127.0.0.1", d.login_ports["login-1"])
    for account_no in range(1, 6):
        await login_flow(d, "login-2", account_no)
    # login-2 kept its links: none of its servers went away
    assert not [line for line in d.up.lines if line.startswith("login-2") and "unlinked" in line]
    await until(lambda: d.linked_lines("login-1") >= 10, timeout=30)  # back, all relinked
    await login_flow(d, "login-1", 6)

    pids = d.pids()
    private_redis.stop()
    for login, account_no in (("login-1", 7), ("login-2", 8)):
        reply, _ = await login_request(d.login_ports[login], account_no, d.keys[account_no])
        assert reply.Status == LoginStatus.DB_UNAVAILABLE, reply
    d.up.wait_for(r"^login-\d\s+\| .*key store unavailable")
    private_redis.start()
    assert private_redis.wait_ready()

    async def recovered(login: str, account_no: int) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                await login_flow(d, login, account_no)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    await recovered("login-1", 7)
    await recovered("login-2", 8)
    assert d.pids() == pids  # recovered without a restart
    d.up.wait_for(r"^login-\d\s+\| .*key store answers again")


def game_port(d: Deployment, name: str) -> int:
    found = re.compile(rf"up: {name} \(pid \d+\): listening on 127\.0\.0\.1:(\d+)")
    return int(d.up.wait_for(found).group(1))
