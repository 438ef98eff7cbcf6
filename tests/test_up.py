"""``serverlink up``: the deployment file is checked against the servers' own
options, and its servers run as real child processes on real sockets: they
serve a whole login flow, one killed is restarted, and SIGTERM (or the death of
``up`` itself) stops them all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections import Counter
from pathlib import Path

import pytest

from conftest import until
from linked_system import game_login, login_request, read_keys
from private_mariadb import free_port
from serverlink.cli import main
from serverlink.cli.cluster_file import COMMANDS, load_cluster
from serverlink.protocol.status import GameLoginStatus, LoginStatus
from serverlink.store.admin import seed_db
from test_cli import Proc, start
from test_cli import procs as procs  # the fixture

#: up's line for each server once all are ready.
LISTENING = re.compile(r"up: (?P<name>\S+) \(pid (?P<pid>\d+)\): listening on 127\.0\.0\.1:(\d+)")


def test_the_example_file_is_accepted_and_each_entry_is_its_commands_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["up", "--example"]) == 0
    path = tmp_path / "cluster.toml"
    path.write_text(capsys.readouterr().out)
    entries = load_cluster(str(path))
    assert Counter(e.kind for e in entries) == {"login": 2, "game": 3, "chat": 2, "monitor": 1}
    assert len({e.name for e in entries}) == len(entries)
    for entry in entries:
        child = entry.child()
        kind, *flags = child.args
        assert kind == entry.kind
        # the command line a user would type is one the command itself accepts
        ctx = COMMANDS[kind].make_context(kind, list(flags))
        assert ctx.params["port"] == entry.settings.get("port", ctx.params["port"])
        if kind in ("login", "game"):  # a password: in the environment, not on the command line
            assert child.env[f"SERVERLINK_{kind.upper()}_DB"].startswith("mysql://serverlink:")
            assert not any("s3cret" in arg for arg in child.args)
        if kind in ("game", "chat"):  # linked to both login servers, on the Redis key store
            assert flags[flags.index("--login-server") + 1].count(",") == 1
            assert flags[flags.index("--key-store") + 1].startswith("redis://")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[server]]\nkind = "game"\nprot = 1\n', "server 'game-1' (entry 1, game): unknown "
         "setting 'prot' (did you mean 'port'?)"),
        ('[[server]]\nkind = "gam"\n', "entry 1: kind 'gam' is not a server kind: kind = 'login'"),
        ('[[server]]\nkind = "login"\nname = "a"\n[[server]]\nkind = "chat"\nport = 70000\n',
         "server 'chat-1' (entry 2, chat): port: 70000 is not in the range 0<=x<=65535"),
        ('[[server]]\nkind = "game"\n[[server]]\nkind = "game"\n',
         "server 'game-2': port 12211 is also server 'game-1''s port: give each server its own"),
        ('[shared]\nlogin_srver = "127.0.0.1:8090"\n[[server]]\nkind = "game"\n',
         "[shared] login_srver: no server kind has this setting (did you mean 'login_server'?)"),
        ('[shared]\nlogin_server = "nowhere"\n[[server]]\nkind = "game"\n',
         "[shared] login_server: 'nowhere' is not HOST:PORT"),
        ("[[server]]\nkind = 'game'\nname = 'x y'\n", "entry 1: name 'x y': letters, digits"),
        ("[servers]\n", "unknown key 'servers' (did you mean 'server'?)"),
        ("", "no servers: add [[server]] entries"),
        ("[[server]\n", "invalid TOML"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_naming_the_file_and_the_entry_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    assert main(["up", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()], err  # one line, no traceback
    assert err.startswith(f"serverlink: {path}: "), err
    assert expected in err, err


def test_a_missing_file_says_how_to_write_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "no-such-cluster.toml"]) == 2
    assert "file not found (write one: serverlink up --example)" in capsys.readouterr().err


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (no parent reaped it yet) is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def reaped(pid: int) -> bool:
    """Gone and waited for by its parent (up): all its threads ended, its sockets
    closed (a zombie's may not be yet)."""
    return not Path(f"/proc/{pid}").exists()


def small_cluster(tmp_path: Path) -> tuple[Path, Path, int]:
    """1 login + 1 game server on SQLite with 20 accounts: the file, the key
    file and the login server's client port."""
    db = f"sqlite:///{tmp_path / 'accounts.db'}"
    keys = tmp_path / "keys.txt"
    asyncio.run(seed_db(db, 20, keys_out=keys))
    client, lan, game = free_port(), free_port(), free_port()
    path = tmp_path / "cluster.toml"
    path.write_text(
        f'[shared]\ndb = "{db}"\nlogin_server = "127.0.0.1:{lan}"\nrelease_after = 1\n'
        f'[[server]]\nkind = "login"\nport = {client}\nlan_port = {lan}\n'
        f'[[server]]\nkind = "game"\nport = {game}\n'
    )
    return path, keys, client


async def login_flow(login_port: int, keys: dict[int, bytes], account_no: int) -> None:
    """The whole flow: the login server, then the game server it names."""
    reply, c = await login_request(login_port, account_no, keys[account_no])
    assert reply.Status == LoginStatus.OK, reply
    await c.wait_closed()
    status, g = await game_login(reply.GameServerPort, account_no, keys[account_no])
    assert status.Status == GameLoginStatus.OK, status
    g.close("test")
    await g.wait_closed()


def matches(p: Proc, regex: re.Pattern[str]) -> list[re.Match[str]]:
    return [m for line in list(p.lines) if (m := regex.search(line))]


def ready_pids(up: Proc, count: int) -> dict[str, int]:
    up.wait_for(f"up: {count} servers ready")
    return {m["name"]: int(m["pid"]) for m in matches(up, LISTENING)}


def test_up_serves_a_login_flow_restarts_a_killed_server_and_stops_all_on_sigterm(
    procs: list[Proc], tmp_path: Path
) -> None:
    path, key_file, login_port = small_cluster(tmp_path)
    keys = read_keys(key_file)
    up = start(procs, "up", str(path))
    pids = ready_pids(up, 2)
    assert set(pids) == {"login-1", "game-1"}
    up.wait_for(r"login-1\s+\| .*linked \(clients go to")  # each child's lines, under its name
    asyncio.run(login_flow(login_port, keys, 1))

    os.kill(pids["game-1"], signal.SIGKILL)
    died = up.wait_for(r"up: game-1 \(pid (\d+)\) died \(killed by SIGKILL\); restarting it in")
    assert int(died.group(1)) == pids["game-1"]
    started = re.compile(r"game-1\s+\| .*ready: listening on 127\.0\.0\.1:\d+ \(pid (\d+)\)")
    asyncio.run(until(lambda: len(matches(up, started)) == 2))  # its second start
    new_pid = int(matches(up, started)[1].group(1))
    assert new_pid != pids["game-1"] and pid_alive(new_pid)

    async def served_again() -> None:  # the login server takes the restarted one back
        async def works() -> bool:
            try:
                await login_flow(login_port, keys, 2)
            except AssertionError:
                return False
            return True

        async with asyncio.timeout(20):
            while not await works():
                await asyncio.sleep(0.1)

    asyncio.run(served_again())

    up.signal(signal.SIGTERM)
    assert up.wait() == 0, up.stderr
    assert "up: stopped: 2 servers, restarts 1" in up.stderr
    for pid in (pids["login-1"], new_pid):
        assert not pid_alive(pid), pid
    errors = [line for line in up.lines if "Traceback" in line]
    assert errors == []


def test_the_servers_die_with_up_however_it_ends(procs: list[Proc], tmp_path: Path) -> None:
    path, _, _ = small_cluster(tmp_path)
    up = start(procs, "up", str(path))
    pids = ready_pids(up, 2)
    up.signal(signal.SIGKILL)  # no chance to stop them itself
    up.wait()
    asyncio.run(until(lambda: not any(pid_alive(p) for p in pids.values()), timeout=15))


def test_a_server_that_cannot_start_stops_up_with_its_reason(
    procs: list[Proc], tmp_path: Path
) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(
        f'[[server]]\nkind = "game"\nstandalone = true\nport = {free_port()}\n'
        f'[[server]]\nkind = "game"\nname = "bad"\nport = {free_port()}\n'  # no login server
    )
    up = start(procs, "up", str(path))
    assert up.wait() == 1, up.stderr
    # the child's own line, under its name, then up's one line
    assert any(
        line.startswith("bad") and "linked mode (the default) needs --login-server" in line
        for line in up.lines
    ), up.stderr
    assert up.lines[-1].startswith("serverlink: up: bad failed to start (exit status 2)"), up.stderr


def test_a_server_that_fails_to_start_again_is_retried_with_backoff_not_fatal(
    procs: list[Proc], tmp_path: Path
) -> None:
    port = free_port()
    path = tmp_path / "cluster.toml"
    path.write_text(f'[[server]]\nkind = "game"\nstandalone = true\nport = {port}\n')
    up = start(procs, "up", str(path))
    pid = ready_pids(up, 1)["game-1"]
    os.kill(pid, signal.SIGKILL)
    asyncio.run(until(lambda: reaped(pid)))
    with socket.socket() as squatter:  # its port taken while it is down
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        failed = up.wait_for(r"up: game-1 \(pid \d+\) failed to start again \(exit status 1\); "
                             r"restarting it in ([\d.]+) s \(restart 2\)")  # fmt: skip
        assert float(failed.group(1)) >= 0.45  # the second in a row: 0.5-1 s (CHILD_RETRY)
        assert up.proc.poll() is None  # up goes on
    started = re.compile(r"game-1\s+\| .*ready: listening on 127\.0\.0\.1:\d+ \(pid (\d+)\)")
    asyncio.run(until(lambda: len(matches(up, started)) == 2, timeout=20))  # back once it is free
    up.signal(signal.SIGTERM)
    assert up.wait() == 0, up.stderr
