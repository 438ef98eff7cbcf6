"""``serverlink`` as a user runs it: real processes, real sockets, real signals.

Every wait is on a log line, a socket or a process exit, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from serverlink.protocol.codec import NetCodec
from serverlink.protocol.packets import (
    CS_GAME_REQ_ECHO,
    CS_GAME_REQ_LOGIN,
    CS_GAME_RES_ECHO,
    CS_GAME_RES_LOGIN,
)

READY = re.compile(r"ready: listening on 127\.0\.0\.1:(\d+)")
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR)\s+[\w/]+: ")


class Proc:
    """``python -m serverlink ARGS`` with its stderr lines collected by a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SERVERLINK_")}
        full_env.update(env or {})
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serverlink", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """The first line (seen so far or to come) matching ``pattern``."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[seen:]:
                match = regex.search(line)
                if match:
                    return match
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {regex.pattern!r}:\n{self.stderr}")
            try:
                if self._new.get(timeout=min(left, 0.5)) is None and self.proc.poll() is not None:
                    # stderr closed: one last look, then give up
                    for line in self.lines[seen:]:
                        match = regex.search(line)
                        if match:
                            return match
                    raise AssertionError(
                        f"exited ({self.proc.returncode}) before a line matching "
                        f"{regex.pattern!r}:\n{self.stderr}"
                    )
            except queue.Empty:
                pass

    def ready_port(self) -> int:
        return int(self.wait_for(READY).group(1))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def stdout(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; killed at the end if the test left them running."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def start(procs: list[Proc], *args: str, **kwargs: object) -> Proc:
    p = Proc(*args, **kwargs)  # type: ignore[arg-type]
    procs.append(p)
    return p


# --- a real client -------------------------------------------------------------------------

CODEC = NetCodec()


def recv_payload(sock: socket.socket, buf: bytearray) -> bytes:
    """The next payload from ``sock``; ``buf`` keeps bytes of later frames."""
    while True:
        payloads, _ = CODEC.split_frames(bytes(buf))
        if payloads:
            del buf[: 5 + len(payloads[0])]  # the first frame: header + payload
            return payloads[0]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk


def login_and_echo(port: int, account: int = 7, echoes: int = 5) -> None:
    """Log in (CS_GAME_REQ_LOGIN) and echo ``echoes`` times, checking every reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        buf = bytearray()
        sock.sendall(CODEC.encode_frame(CS_GAME_REQ_LOGIN.build(account, b"k" * 64, 1)))
        res = CS_GAME_RES_LOGIN.parse(recv_payload(sock, buf))
        assert (res.Status, res.AccountNo) == (1, account)
        for tick in range(echoes):
            sock.sendall(CODEC.encode_frame(CS_GAME_REQ_ECHO.build(account, 1000 + tick)))
            echo = CS_GAME_RES_ECHO.parse(recv_payload(sock, buf))
            assert (echo.AccountNo, echo.SendTick) == (account, 1000 + tick)


def assert_clean(p: Proc) -> None:
    assert "Traceback" not in p.stderr, p.stderr
    for line in p.lines:
        if line.strip():
            assert LINE.match(line) or line.startswith("serverlink: "), line


# --- tests -------------------------------------------------------------------------------------


def test_python_m_serverlink_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "serverlink", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for name in ("game", "login", "dummy", "db", "demo", "config"):
        assert re.search(rf"^\s+{name}\s", out.stdout, re.M), out.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_game_standalone_serves_and_stops_gracefully(procs: list[Proc], sig: int) -> None:
    p = start(procs, "game", "--standalone", "--port", "0", "--quiet", "--stats-interval", "0.5")
    port = p.ready_port()
    login_and_echo(port, account=11, echoes=10)
    p.wait_for(r"game: up .*logins 1\b")  # the quiet summary line counts it
    p.signal(sig)
    assert p.wait() == 0, p.stderr
    p.wait_for(rf"{signal.Signals(sig).name}: stopping")
    p.wait_for(r"stopped after [\d.]+ s: accepted 1, logins 1, packets in 11 / out 11")
    assert_clean(p)


def test_settings_reach_the_server(procs: list[Proc], tmp_path: Path) -> None:
    """file < environment: the server runs with the environment's cap, the
    file's stats interval; a session over the cap is refused."""
    config = tmp_path / "serverlink.toml"
    config.write_text("[game]\nstandalone = true\nmax_sessions = 5\nstats_interval = 0.5\n")
    p = start(
        procs,
        "--config",
        str(config),
        "game",
        "--port",
        "0",
        "--quiet",
        env={"SERVERLINK_GAME_MAX_SESSIONS": "1"},
    )
    port = p.ready_port()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
        p.wait_for(r"sessions 1 / 1\b")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            second.settimeout(10)
            with pytest.raises((ConnectionResetError, ConnectionError)):
                if second.recv(1) == b"":
                    raise ConnectionError("closed")
        p.wait_for(r"refused over cap 1\b")
        first.sendall(b"")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0, p.stderr
    assert_clean(p)


def test_port_in_use_is_one_line_exit_1(procs: list[Proc]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for extra in ([], ["--workers", "2"]):
            p = start(procs, "game", "--standalone", "--port", str(port), "--quiet", *extra)
            assert p.wait() == 1, p.stderr
            errors = [line for line in p.lines if line.startswith("serverlink: ")]
            assert errors == [
                f"serverlink: game: cannot listen on 127.0.0.1:{port} (the client port, --port): "
                "address already in use (is another server running? try another --port)"
            ], p.stderr
            assert_clean(p)


def test_login_offers_no_workers_option(procs: list[Proc]) -> None:
    # LoginServer.max_workers = 1: the option is not offered, not offered and refused
    p = start(procs, "login", "--help")
    assert p.wait() == 0 and "--workers" not in p.stdout()
    p = start(procs, "login", "--port", "0", "--lan-port", "0", "--workers", "2", "--quiet")
    assert p.wait() == 2, p.stderr
    assert p.lines == [
        "serverlink: login: No such option '--workers' (see 'serverlink login --help')"
    ], p.stderr


def test_workers_serve_and_stop_on_sigterm(procs: list[Proc], tmp_path: Path) -> None:
    log_file = tmp_path / "game.log"
    p = start(
        procs,
        "--log-file",
        str(log_file),
        "game",
        "--standalone",
        "--port",
        "0",
        "--workers",
        "2",
        "--quiet",
        "--stats-interval",
        "0.5",
    )
    port = p.ready_port()
    # One start line for the server, from the parent, not one per worker.
    assert sum("ready: listening" in line for line in p.lines) == 1
    # Both workers log through the parent, each under its own name: bad frames
    # on 20 connections reach both (SO_REUSEPORT spreads them; 2**-19 it does not).
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port)) as bad:
            bad.sendall(b"\x00" * 8)
            bad.recv(1)
    p.wait_for(r"WARNING game/1: .*protocol error \(bad_code\)")
    p.wait_for(r"WARNING game/2: .*protocol error \(bad_code\)")
    threads = [threading.Thread(target=login_and_echo, args=(port, n, 3)) for n in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    p.wait_for(r"game: up .*logins 20\b.*2 workers")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0, p.stderr
    p.wait_for(r"stopped after [\d.]+ s: accepted 40, logins 20, packets in 80 / out 80")
    assert_clean(p)
    logged = log_file.read_text().splitlines()
    assert any(LINE.match(x) and "game/1: " in x for x in logged), logged
    assert any("stopped after" in x for x in logged)


def test_workers_stop_on_sigint(procs: list[Proc]) -> None:
    p = start(procs, "game", "--standalone", "--port", "0", "--workers", "2", "--quiet")
    port = p.ready_port()
    login_and_echo(port)
    p.signal(signal.SIGINT)
    assert p.wait() == 0, p.stderr
    assert_clean(p)


def test_demo_runs_linked_system_on_sqlite(procs: list[Proc], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    args = ["demo", "--seconds", "3", "--clients", "20", "--echo-depth", "2"]
    p = start(procs, *args, "--chat-clients", "10", "--disconnect-rate", "0", "--db", db, "--quiet")
    code = p.wait(90)
    out = p.stdout()
    assert code == 0, (out, p.stderr)
    # 20 game clients and 10 chat clients log in through the login server
    assert "demo: login server: 30 logins" in out and "results: OK 30;" in out
    assert "demo: game server: 20 logins" in out
    # the game players signed up and in over the web API for their keys
    assert re.search(r"demo: web API: 20 sign-ups, 20 sign-ins .*, 0 refused", out)
    assert re.search(r"demo: chat server: 10 logins, .* [1-9][\d,]* deliveries", out)
    assert re.search(r"demo: [\d,]+ echoes/s verified .* dummy errors 0", out)
    assert re.search(r"demo: [\d,]+ chat messages/s, .* chat dummy errors 0", out)
    assert "0 protocol errors" in out
    assert (tmp_path / "demo.keys.txt").exists()  # seeded on first run
    # the monitoring server ran beside them, its dashboard's URL printed
    assert re.search(r"demo: monitoring server: [\d,]+ figures from 3 servers", out)
    assert re.search(r"demo: the dashboard was at http://127\.0\.0\.1:\d+/", out)
    assert (tmp_path / "demo.monitor.db").exists()
    assert "Traceback" not in p.stderr


def test_demo_standalone_runs_echo_mode(procs: list[Proc], tmp_path: Path) -> None:
    args = ["demo", "--standalone", "--seconds", "2", "--clients", "20", "--echo-depth", "2"]
    p = start(procs, *args, "--disconnect-rate", "0", "--quiet", cwd=tmp_path)
    code = p.wait(90)
    out = p.stdout()
    assert code == 0, (out, p.stderr)
    assert "demo: game server: 20 logins" in out
    assert re.search(r"demo: [\d,]+ echoes/s verified .* dummy errors 0", out)
    assert "Traceback" not in p.stderr


def test_web_serves_sign_up_and_stops_gracefully(procs: list[Proc], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'web.db'}"
    init = start(procs, "db", "init", "--db", db)
    assert init.wait() == 0, init.stderr
    p = start(procs, "web", "--port", "0", "--db", db, "--quiet")
    port = p.ready_port()
    assert p.wait_for(READY).string.endswith(f"accounts in {db}")  # as every server's
    body = json.dumps({"userid": "cli", "password": "password1", "nickname": "Cli"}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/accounts", body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201 and json.load(answer) == {"accountno": 1}
    p.signal(signal.SIGTERM)
    assert p.wait() == 0, p.stderr
    assert_clean(p)


def test_web_with_a_bad_database_url_is_one_line(procs: list[Proc]) -> None:
    p = start(procs, "web", "--port", "0", "--db", "postgres://x/y", "--quiet")
    assert p.wait() == 2, p.stderr
    assert len(p.lines) == 1 and p.lines[0].startswith("serverlink: --db: "), p.stderr
