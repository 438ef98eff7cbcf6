"""A throwaway ``redis-server`` that tests can stop and start again (key store
outage tests). Never touches the shared server on 6379."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from private_mariadb import ServerProcess, free_port


class PrivateRedis(ServerProcess):
    """A ``redis-server`` on a free port, without persistence: a restart forgets
    every key and script, as a Redis that crashed."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.launch(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.base),
            ]
        )

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(7) == b"+PONG\r\n"
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # as a crash: no goodbye to the clients
            self.proc.wait(10)
