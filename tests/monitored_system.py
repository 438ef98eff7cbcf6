"""A monitored system of real processes: ``serverlink monitor``, ``login`` and
``game`` (both with ``--monitor``) on free ports and a seeded SQLite database,
and a monitoring tool that logs in to the monitor's tool port and records
every CS_MONITOR_TOOL_DATA_UPDATE it receives (a thread, so synchronous tests
and the browser test's event loop can both read it)."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import run_coro_sync
from serverlink.protocol import packets as pk
from serverlink.protocol.codec import NetCodec
from serverlink.servers.relay import ORIGINAL_LOGIN_KEY
from serverlink.store.admin import seed_db
from test_cli import Proc

TOOL_CODEC = NetCodec(109, 30, 91)
MONITOR_READY = re.compile(
    r"ready: listening on 127\.0\.0\.1:(\d+) .*servers report on 127\.0\.0\.1:(\d+); "
    r"dashboard on http://127\.0\.0\.1:(\d+)/"
)
LOGIN_READY = re.compile(
    r"ready: listening on 127\.0\.0\.1:(\d+) .*servers link on 127\.0\.0\.1:(\d+)"
)


class Tool(threading.Thread):
    """A monitoring tool: logs in with the original key, records (ServerNo,
    DataType, DataValue, TimeStamp) of every update with the time it came."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(
            TOOL_CODEC.encode_frame(pk.CS_MONITOR_TOOL_REQ_LOGIN.build(ORIGINAL_LOGIN_KEY.encode()))
        )
        self.updates: list[tuple[float, pk.CsMonitorToolDataUpdate]] = []
        self.status: int | None = None
        self.start()

    def run(self) -> None:
        buf = b""
        try:
            while chunk := self.sock.recv(65536):
                payloads, end = TOOL_CODEC.split_frames(buf + chunk)
                buf = (buf + chunk)[end:]
                for p in payloads:
                    if pk.packet_type(p) == pk.CS_MONITOR_TOOL_RES_LOGIN.type:
                        self.status = pk.CS_MONITOR_TOOL_RES_LOGIN.parse(p).Status
                    else:
                        self.updates.append((time.time(), pk.CS_MONITOR_TOOL_DATA_UPDATE.parse(p)))
        except OSError:
            pass

    def seen(self, server_no: int, data_type: int, since: float = 0.0) -> list[tuple[int, int]]:
        """(TimeStamp, DataValue) of one figure received after ``since``."""
        return [
            (u.TimeStamp, u.DataValue)
            for at, u in list(self.updates)
            if at >= since and u.ServerNo == server_no and u.DataType == data_type
        ]

    def wait_for(
        self, server_no: int, data_type: int, value: int, since: float, timeout: float
    ) -> float:
        """Seconds until the figure came with ``value`` (after ``since``)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(v == value for _, v in self.seen(server_no, data_type, since)):
                return time.time() - since
            time.sleep(0.05)
        raise AssertionError(f"ServerNo {server_no} DataType {data_type} never {value}")

    def close(self) -> None:
        self.sock.close()


@dataclass
class MonitoredSystem:
    """``with MonitoredSystem(tmp_path) as system``: the processes it started
    are killed on the way out."""

    tmp: Path
    # the accounts
    db: str = ""
    keys: Path = field(default_factory=Path)
    # the login server, its game server
    login_port: int = 0
    login_lan_port: int = 0
    game: Proc | None = None
    # the monitoring server
    tool_port: int = 0
    lan_port: int = 0
    http_port: int = 0
    procs: list[Proc] = field(default_factory=list)

    def __enter__(self) -> MonitoredSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()

    def start(self, *, save_interval: str = "1") -> None:
        self.db = f"sqlite:///{self.tmp / 'accounts.db'}"
        self.keys = self.tmp / "keys.txt"
        run_coro_sync(seed_db(self.db, 100, keys_out=self.keys))
        monitor = self.spawn(
            "monitor", "--quiet", "--port", "0", "--lan-port", "0", "--http-port", "0",
            "--history-db", self.history_db, "--save-interval", save_interval,
        )  # fmt: skip
        match = monitor.wait_for(MONITOR_READY)
        self.tool_port, self.lan_port, self.http_port = (int(g) for g in match.groups())
        login = self.spawn(
            "login", "--quiet", "--db", self.db, "--port", "0", "--lan-port", "0",
            "--monitor", f"127.0.0.1:{self.lan_port}",
        )  # fmt: skip
        match = login.wait_for(LOGIN_READY)
        self.login_port, self.login_lan_port = (int(g) for g in match.groups())
        self.start_game()

    @property
    def history_db(self) -> str:
        return f"sqlite:///{self.tmp / 'history.db'}"

    def start_game(self) -> Proc:
        self.game = self.spawn(
            "game", "--quiet", "--db", self.db, "--port", "0",
            "--login-server", f"127.0.0.1:{self.login_lan_port}",
            "--monitor", f"127.0.0.1:{self.lan_port}",
        )  # fmt: skip
        self.game.ready_port()
        return self.game

    def kill_game(self) -> None:
        assert self.game is not None
        self.game.kill()

    def spawn(self, *args: str) -> Proc:
        p = Proc(*args, cwd=self.tmp)
        self.procs.append(p)
        return p
