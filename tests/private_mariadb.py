"""A throwaway ``mariadbd`` that tests can kill, freeze and restart (database
outage tests of the store and of the login flow). Never touches the shared
server on 3306."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """A server process of a test's own on ``port``: ``answers`` is one poll."""

    port: int
    proc: subprocess.Popen[bytes] | None

    def answers(self) -> bool:
        raise NotImplementedError

    def launch(self, command: list[str]) -> None:
        """Start ``command`` (the server, quiet) unless it runs already."""
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait_ready(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            if self.answers():
                return True
            time.sleep(0.05)
        return False


class PrivateMariaDB(ServerProcess):
    """A throwaway ``mariadbd`` on a free port with its own datadir (no grant tables:
    root without a password). Started and stopped only through its Popen object."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"

    @property
    def log(self) -> Path:
        return self.base / "error.log"

    def log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def server_options(self) -> list[str]:
        options = [
            f"--datadir={self.datadir}",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--skip-log-bin",
        ]
        if os.geteuid() == 0:
            options.append("--user=root")
        return options

    def install(self) -> None:
        install_db = shutil.which("mariadb-install-db")
        if install_db is None or not os.path.exists(self.mariadbd):
            pytest.skip("mariadbd / mariadb-install-db not installed")
        self.datadir.mkdir(parents=True)
        done = subprocess.run(
            [
                install_db,
                "--no-defaults",
                *self.server_options(),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            tail = " | ".join(done.stderr.decode(errors="replace").strip().splitlines()[-3:])
            pytest.skip(f"mariadb-install-db failed ({done.returncode}): {tail}")

    def start(self) -> None:
        self.launch(
            [
                self.mariadbd,
                "--no-defaults",
                *self.server_options(),
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.base / 'mysqld.sock'}",
                f"--pid-file={self.base / 'mysqld.pid'}",
                f"--log-error={self.log}",
                "--skip-grant-tables",
                "--skip-name-resolve",
            ]
        )

    def answers(self) -> bool:
        """One poll: does the port accept a connection and send a MySQL handshake?"""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                greeting = s.recv(5)
                return len(greeting) == 5 and greeting[4] == 10  # protocol version 10
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP, and wait until every thread of the server is really stopped."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = []
            for stat in tasks.glob("*/stat"):
                try:
                    states.append(stat.read_text().rpartition(")")[2].split()[0])
                except OSError:
                    continue  # a thread that just exited
            if states and all(state in ("T", "t") for state in states):
                return
            time.sleep(0.01)
        raise AssertionError(f"mariadbd did not stop after SIGSTOP: thread states {states}")

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=30)
