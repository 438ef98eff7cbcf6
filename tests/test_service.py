"""Servers as services expect to be run: SIGHUP reopens the log file and stops
nothing; under systemd (NOTIFY_SOCKET) they report ready and stopping; a normal
shutdown logs no warning. Real processes."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

from serverlink.store.admin import init_db
from test_cli import Proc, start
from test_cli import procs as procs  # the fixture


def test_sighup_reopens_the_log_file_and_the_server_keeps_serving(
    procs: list[Proc], tmp_path: Path
) -> None:
    log_file = tmp_path / "game.log"
    p = start(procs, "--log-file", str(log_file), "game", "--standalone", "--port", "0", "--quiet")
    port = p.ready_port()
    rotated = tmp_path / "game.log.1"
    log_file.rename(rotated)  # what logrotate does
    p.signal(signal.SIGHUP)
    p.wait_for("SIGHUP: log file reopened")
    with socket.create_connection(("127.0.0.1", port)):
        pass  # still serving
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert "ready: listening" in rotated.read_text()
    assert "SIGHUP: log file reopened" in log_file.read_text()  # the new file
    assert "stopped after" in log_file.read_text()


def test_under_systemd_a_server_reports_ready_and_stopping(
    procs: list[Proc], tmp_path: Path
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        p = start(
            procs, "game", "--standalone", "--port", "0", "--quiet",
            env={"NOTIFY_SOCKET": str(path)},
        )  # fmt: skip
        ready = sock.recv(1000).decode().splitlines()
        port = p.ready_port()
        assert ready[0] == "READY=1"
        # where it listens, for `systemctl status` (and `serverlink up`)
        assert ready[1].startswith(f"STATUS=listening on 127.0.0.1:{port}: game server"), ready
        p.signal(signal.SIGTERM)
        assert sock.recv(100) == b"STOPPING=1"
        assert p.wait() == 0


def test_a_normal_shutdown_logs_no_warning(procs: list[Proc], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'accounts.db'}"
    asyncio.run(init_db(db))
    login = start(procs, "login", "--db", db, "--port", "0", "--lan-port", "0", "--quiet")
    login.ready_port()
    lan_port = int(login.wait_for(r"servers link on 127\.0\.0\.1:(\d+)").group(1))
    game = start(
        procs, "game", "--login-server", f"127.0.0.1:{lan_port}", "--db", db, "--port", "0",
        "--quiet",
    )  # fmt: skip
    game.ready_port()
    login.wait_for("linked")
    game.signal(signal.SIGTERM)
    assert game.wait() == 0
    login.wait_for("stopped")  # the login server saw the game server leave
    login.signal(signal.SIGTERM)
    assert login.wait() == 0
    for p in (game, login):
        warnings = [line for line in p.lines if " WARNING " in line or " ERROR " in line]
        assert warnings == [], warnings
