"""The monitored linked system as a user runs it: ``serverlink monitor``,
``login`` and ``game`` with ``--monitor``, the dummy in login mode; a tool on
the monitor's port sees every server's figures once a second, a killed game
server is off within 10 s and on again once restarted, and the history has
rows for each kind (a chat-like reporter stands in for the chat server)."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitored_system import MonitoredSystem, Tool
from serverlink.monitor.figures import CHAT, GAME, LOGIN, MACHINE, Reading
from serverlink.servers.reporter import MonitorReporter


def per_second(stamps: list[int]) -> bool:
    distinct = sorted(set(stamps))
    return len(distinct) >= 3 and all(b - a <= 2 for a, b in itertools.pairwise(distinct))


def chat_stand_in(lan_port: int, seconds: float) -> None:
    """A reporter of chat figures from a chat-like snapshot, for ``seconds``."""

    async def run() -> None:
        reporter = MonitorReporter(CHAT, ("127.0.0.1", lan_port))
        reporter.start()
        await asyncio.wait_for(reporter.link.connected.wait(), 5)
        for i in range(int(seconds)):
            snap = {"sessions": 5, "players": 4, "messages_in": 10 * i, "deliveries": 90 * i}
            reporter.report(Reading(snap, {"messages_in": 10.0, "deliveries": 90.0}))
            await asyncio.sleep(1.0)
        await reporter.stop()

    asyncio.run(run())


@pytest.mark.slow
def test_monitored_linked_system(tmp_path: Path) -> None:
    with MonitoredSystem(tmp_path) as system:
        run_linked_system(system)


def run_linked_system(system: MonitoredSystem) -> None:
    system.start()
    tool = Tool(system.tool_port)
    dummy = system.spawn(
        "dummy", "--quiet", "--mode", "login", "--login", f"127.0.0.1:{system.login_port}",
        "--keys", str(system.keys), "--clients", "10", "--seconds", "0",
    )  # fmt: skip
    chat_stand_in(system.lan_port, 4)
    # every server's figures, once a second
    for kind, no in ((MACHINE, 0), (LOGIN, 1), (GAME, 2), (CHAT, 3)):
        for figure in kind.figures:
            assert tool.seen(no, figure.data_type), (kind.name, figure.name)
        assert per_second([t for t, _ in tool.seen(no, kind.on.data_type)]), kind.name
    tool.wait_for(2, 32, 10, 0, 15)  # the dummy's 10 clients, logged in
    assert max(v for _, v in tool.seen(2, 29)) > 0  # packets handled per second
    # a killed game server is off within 10 s, back on once restarted
    killed = time.time()
    system.kill_game()
    assert tool.wait_for(2, 24, 0, killed, 10) < 10
    assert tool.wait_for(0, 22, 0, killed, 5) < 5  # game servers reporting: none
    restarted = time.time()
    system.start_game()
    tool.wait_for(2, 24, 1, restarted, 15)
    time.sleep(1.5)  # a history save with it on again
    dummy.kill()
    tool.close()
    out = subprocess.run(
        [sys.executable, "-m", "serverlink", "monitor", "history", "--history-db",
         system.history_db, "--json", "--since", "10m"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = {row["kind"] for row in rows}
    assert kinds == {"machine", "login", "game", "chat"}
    game_on = [row["server_on"] for row in rows if row["kind"] == "game"]
    assert 0 in game_on and game_on[-1] == 1
    assert any(row["players"] == 10 for row in rows if row["kind"] == "game")
