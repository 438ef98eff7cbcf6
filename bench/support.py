"""Helpers of the benchmark scripts: a free port, waiting for a server to
listen, a standalone game server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until something listens on 127.0.0.1:``port``; exits if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def start_standalone_game(port: int) -> subprocess.Popen[bytes]:
    """``serverlink game --standalone`` on 127.0.0.1:``port`` (quiet), listening."""
    server = subprocess.Popen(
        [sys.executable, "-m", "serverlink", "--log-level", "warning", "game", "--standalone",
         "--host", "127.0.0.1", "--port", str(port), "--quiet"],
    )  # fmt: skip
    wait_port(port, server)
    return server
