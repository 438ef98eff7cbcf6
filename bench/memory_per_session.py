"""Memory per session of the game server: RSS idle, then with N dummy clients
logged in (depth 1, one echo per client per second, so the machine is not
saturated), read from /proc while every client is connected.

    python bench/memory_per_session.py [--clients 10000] [--seconds 40]

Prints one JSON line: rss_idle_mib, rss_loaded_mib, sessions seen by the server,
bytes_per_session = (loaded - idle) / sessions. Python objects only: the kernel's
socket buffers are not in RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from project import ensure_serverlink
from support import free_port, start_standalone_game


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def established(port: int) -> int:
    """Server-side established connections on ``port``, from ``ss`` (netlink: a
    consistent count; /proc/net/tcp read in pages repeats entries that move)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", "sport", "=", f":{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def main() -> None:
    ensure_serverlink()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--ramp-up", type=float, default=10.0)
    args = parser.parse_args()
    port = free_port()
    server = start_standalone_game(port)
    dummy: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(1.0)  # let the probe connection's session go
        idle = rss_bytes(server.pid)
        report = Path(tempfile.mkdtemp()) / "report.json"
        dummy = subprocess.Popen(
            [sys.executable, "-m", "serverlink", "dummy", "--mode", "echo",
             "--game-server", f"127.0.0.1:{port}", "--clients", str(args.clients),
             "--echo-depth", "1", "--echo-interval", "1.0", "--ramp-up", str(args.ramp_up),
             "--seconds", str(args.seconds), "--quiet", "--report", str(report)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        loaded, sessions = 0, 0
        while dummy.poll() is None:
            time.sleep(1.0)
            n = established(port)
            if n >= sessions:
                sessions = n
                loaded = max(loaded, rss_bytes(server.pid))
        data = json.loads(report.read_text()) if report.exists() else {}
    finally:
        if dummy is not None and dummy.poll() is None:
            dummy.kill()
        server.terminate()
        server.wait(timeout=30)
    print(
        json.dumps(
            {
                "clients": args.clients,
                "sessions": sessions,
                "rss_idle_mib": round(idle / 2**20, 1),
                "rss_loaded_mib": round(loaded / 2**20, 1),
                "bytes_per_session": round((loaded - idle) / max(1, sessions)),
                "dummy_errors": data.get("errors_total"),
                "pid": os.getpid(),
            }
        )
    )


if __name__ == "__main__":
    main()
