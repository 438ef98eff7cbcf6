"""Every row of the README's table of errors, run as written over a real
process: the command, its one line on stderr, its exit status."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from serverlink.store.admin import init_db
from test_cli import Proc, assert_clean, start
from test_cli import procs as procs  # the fixture

README = Path(__file__).resolve().parent.parent / "README.md"
PLACEHOLDER = re.compile(r"<(busy|free|db|file|linked|standalone|n)>")


@dataclass(frozen=True)
class Row:
    situation: str
    command: str
    message: str
    exit: str


def table_rows() -> list[Row]:
    """The rows of the table under '## Errors and exit codes'."""
    text = README.read_text()
    section = text.split("## Errors and exit codes", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 4 or cells[0] in ("situation", "---") or set(cells[0]) <= {"-"}:
            continue
        command = re.findall(r"`([^`]*)`", cells[1])[0]
        if "then Ctrl-C" in cells[1]:
            command += " ; SIGINT"
        message = re.findall(r"`(.*)`", cells[2])[0]
        rows.append(Row(cells[0], command, message, cells[3]))
    return rows


ROWS = table_rows()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The placeholders' values: a busy port, a free one, a database, a config
    file, a linked and a standalone game server (started once for all rows)."""
    tmp = tmp_path_factory.mktemp("errors")
    db = f"sqlite:///{tmp / 'accounts.db'}"
    asyncio.run(init_db(db))
    config = tmp / "bad.toml"
    config.write_text("[game]\nprot = 1\n")
    started: list[Proc] = []
    login = start(started, "login", "--db", db, "--port", "0", "--lan-port", "0", "--quiet")
    login.ready_port()
    lan = login.wait_for(r"servers link on 127\.0\.0\.1:(\d+)").group(1)
    linked = start(
        started, "game", "--login-server", f"127.0.0.1:{lan}", "--db", db, "--port", "0",
        "--quiet",
    )  # fmt: skip
    linked_port = linked.ready_port()
    login.wait_for("linked")
    standalone = start(started, "game", "--standalone", "--port", "0", "--quiet")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield {
            "busy": str(busy.getsockname()[1]),
            "free": str(free_port()),
            "db": db,
            "file": str(config),
            "linked": str(linked_port),
            "standalone": str(standalone.ready_port()),
        }
    for p in started:
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr
    # The echo-mode dummy's logins that the linked game server refused are
    # refusals, not protocol errors, and logged at a bounded rate.
    closing = linked.wait_for(r"stopped after .*, protocol errors 0$")
    refused = [line for line in linked.lines if "refused (bad_key)" in line]
    assert 1 <= len(refused) <= 10, linked.stderr
    assert re.search(r"refused logins bad_key \d+", closing.group(0)), linked.stderr


def filled(text: str, places: dict[str, str], regex: bool) -> str:
    if not regex:
        return PLACEHOLDER.sub(lambda m: places[m.group(1)], text)
    parts = PLACEHOLDER.split(text)  # text, name, text, name, ...
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.escape(part))
        else:
            out.append(r"[\dT:.Z-]+" if part == "n" else re.escape(places[part]))
    return "".join(out)


def test_the_table_has_every_error_kind() -> None:
    assert len(ROWS) >= 15
    assert {row.exit for row in ROWS} == {"1", "2", "130", "—"}


@pytest.mark.parametrize("row", ROWS, ids=[row.situation for row in ROWS])
def test_error_row(row: Row, places: dict[str, str], procs: list[Proc]) -> None:
    command, _, then = row.command.partition(" ; ")
    words = shlex.split(filled(command, places, regex=False))
    env = {}
    while words and "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "serverlink"
    p = start(procs, *words[1:], env=env)
    expected = re.compile(f"^{filled(row.message, places, regex=True)}$")
    if then == "SIGINT":
        p.wait_for("start: ")
        p.signal(signal.SIGINT)
    if row.exit == "—":  # a server that keeps running: said once, then quiet
        p.wait_for(expected)
        p.ready_port()
        with pytest.raises(AssertionError):  # retried quietly: no second warning
            p.wait_for("still cannot connect", timeout=4)
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr
        assert sum(" WARNING " in line for line in p.lines) == 1, p.stderr
        return
    code = p.wait(60)
    assert code == int(row.exit), p.stderr
    assert any(expected.match(line) for line in p.lines), (expected.pattern, p.stderr)
    assert "Traceback" not in p.stderr
    if row.exit != "2" or row.situation != "no command":
        errors = [line for line in p.lines if line.startswith("serverlink: ")]
        assert len(errors) == 1, p.stderr
        assert_clean(p)
