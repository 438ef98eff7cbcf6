"""The operator's side of the command line, over real processes where it is
about exit codes, messages, signals or files: start lines that name the
database, --version, completion, --log-format json, signals of the dummy and
the demo (graceful, no traceback, no warning on a normal run), the report,
settings from the environment and the shared [database] table, config show
that loads back, one metavar style."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import socket
import time
from pathlib import Path

import click
import pytest

from serverlink.cli import main_group
from serverlink.cli.defaults import METAVARS
from serverlink.net.client import ReconnectingLink
from serverlink.net.session import Session
from serverlink.protocol.framing import lan_framing
from serverlink.retry import ExponentialBackoff, Retry
from serverlink.servers.game import GameConfig, GameServer
from serverlink.servers.link import LinkConfig
from serverlink.store.admin import init_db
from serverlink.store.config import StoreConfig
from test_cli import Proc, assert_clean, start
from test_cli import procs as procs  # the fixture

# --- item 1: every start line names the database ---------------------------------------------


def test_linked_game_server_describes_its_database_password_masked() -> None:
    config = GameConfig(
        link=LinkConfig(), store=StoreConfig(url="mysql://game:s3cret@db.example:3307/accounts")
    )
    about = GameServer(config).describe()
    assert "accounts in mysql://game:***@db.example:3307/accounts" in about
    assert "s3cret" not in about
    assert "no account database" in GameServer(GameConfig()).describe()


def test_start_lines_name_the_database(procs: list[Proc], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'accounts.db'}"
    asyncio.run(init_db(db))
    login = start(procs, "login", "--db", db, "--port", "0", "--lan-port", "0", "--quiet")
    line = login.wait_for(r"ready: listening on .*").string
    assert line.endswith(f"accounts in {db}"), line
    lan = login.wait_for(r"servers link on 127\.0\.0\.1:(\d+)").group(1)
    game = start(
        procs, "game", "--login-server", f"127.0.0.1:{lan}", "--db", db, "--port", "0", "--quiet"
    )
    assert game.wait_for(r"ready: listening on .*").string.endswith(f"accounts in {db}")
    for p in (game, login):
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr


# --- item 4: version, completion, metavars ----------------------------------------------------


def test_version_and_shell_completion(procs: list[Proc]) -> None:
    p = start(procs, "--version")
    assert p.wait() == 0 and re.fullmatch(r"serverlink \d+\.\d+\.\d+\S*\n", p.stdout())
    p = start(procs, env={"_SERVERLINK_COMPLETE": "bash_source"})
    assert p.wait() == 0
    assert "complete -o nosort -F _serverlink_completion serverlink" in p.stdout()
    env = {
        "_SERVERLINK_COMPLETE": "bash_complete",
        "COMP_WORDS": "serverlink ga",
        "COMP_CWORD": "1",
    }
    p = start(procs, env=env)
    assert p.wait() == 0 and p.stdout().split() == ["plain,game"]
    env.update(COMP_WORDS="serverlink dummy --client-v", COMP_CWORD="2")
    p = start(procs, env=env)
    assert p.wait() == 0 and p.stdout().split() == ["plain,--client-version"]


def every_option() -> list[tuple[str, click.Option]]:
    found = []

    def walk(cmd: click.Command, path: str) -> None:
        for param in cmd.params:
            if isinstance(param, click.Option):
                found.append((path, param))
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")

    walk(main_group, "serverlink")
    return found


def test_one_metavar_style_and_seconds_for_durations() -> None:
    ctx = click.Context(main_group)
    for path, option in every_option():
        if option.is_flag or isinstance(option.type, click.Choice):
            continue
        metavar = option.make_metavar(ctx)
        assert metavar in METAVARS, (path, option.opts, metavar)
        long = option.opts[0]
        if long.endswith(("-ms", "-timeout", "-interval", "-delay", "-wait")):
            assert metavar == "SECONDS" and not long.endswith("-ms"), (path, long)
    names = {o for _, option in every_option() for o in option.opts}
    assert "--late-ms" not in names and "--client-version" in names
    dummy = main_group.commands["dummy"]
    assert "--version" not in {o for p in dummy.params for o in getattr(p, "opts", [])}


# --- item 6: --log-format json ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["root", "command"])
def test_log_format_json(procs: list[Proc], tmp_path: Path, where: str) -> None:
    log_file = tmp_path / "game.log"
    flags = ["--log-format", "json", "--log-file", str(log_file)]
    args = [*flags, "game"] if where == "root" else ["game", *flags]
    p = start(procs, *args, "--standalone", "--port", "0", "--quiet")
    p.wait_for("ready: listening")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0, p.stderr
    for lines in (p.lines, log_file.read_text().splitlines()):
        docs = [json.loads(line) for line in lines if line.strip()]
        assert docs and all(
            set(d) >= {"time", "level", "server", "logger", "message"} for d in docs
        ), lines
        assert any(d["message"].startswith("ready: listening") for d in docs)
        assert all(d["time"].endswith("Z") for d in docs)


# --- item 2/6: the link to a login server that stays down -------------------------------------


async def test_a_link_that_stays_down_is_reminded_at_a_bounded_rate() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("serverlink.net")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    link = ReconnectingLink(
        "game->login", Session, lan_framing(), "127.0.0.1", dead, lambda s: None,
        retry=Retry(ExponentialBackoff(base=0.02, cap=0.05), retries=-1), remind_every=0.5,
    )  # fmt: skip
    try:
        link.start()
        await asyncio.sleep(1.6)
        await link.stop()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    attempts = link.attempts
    assert attempts >= 15, attempts  # retried all along
    assert "is it running there?" in warnings[0]
    assert 2 <= len(warnings) <= 5, warnings  # once, then one reminder per 0.5 s
    assert all("still cannot connect" in w for w in warnings[1:]), warnings


# --- items 3, 6, 8: the dummy and the demo ----------------------------------------------------


@pytest.fixture
def standalone(procs: list[Proc]) -> int:
    return start(procs, "game", "--standalone", "--port", "0", "--quiet").ready_port()


def test_dummy_report_to_stdout_is_comparable_across_runs(
    procs: list[Proc], standalone: int
) -> None:
    args = ["dummy", "--game-server", f"127.0.0.1:{standalone}", "--clients", "4"]
    p = start(procs, *args, "--seconds", "2.5", "--quiet", "--report", "-")
    assert p.wait(60) == 0, p.stderr
    report = json.loads(p.stdout())
    assert report["started_at"].endswith("Z") and report["serverlink_version"]
    assert report["host"] and report["python"].startswith("CPython 3.")
    assert report["command"].startswith("serverlink dummy --game-server 127.0.0.1:")
    assert report["interrupted"] is False and report["stopped_early"] is None
    assert set(report["errors"]) <= set(report["counters"])
    seconds = len(report["echo_per_s_series"])
    assert seconds >= 2
    for key in ("latency_p50_ms_series", "latency_p99_ms_series", "errors_series"):
        assert len(report[key]) == seconds, key
    assert all(isinstance(x, float) for x in report["latency_p99_ms_series"])
    for value in [*report["latency_ms"].values(), report["echo_per_s"], report["seconds"]]:
        assert round(value, 3) == value
    assert not any(" WARNING " in line or " ERROR " in line for line in p.lines), p.stderr
    assert "Traceback" not in p.stderr  # the status lines are on stderr too: stdout is the report
    assert any(line.startswith("t=1s connected=4") for line in p.lines), p.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dummy_stops_gracefully_on_a_signal_and_says_interrupted(
    procs: list[Proc], standalone: int, tmp_path: Path, sig: int
) -> None:
    report = tmp_path / "report.json"
    args = ["dummy", "--game-server", f"127.0.0.1:{standalone}", "--clients", "4"]
    p = start(procs, *args, "--seconds", "60", "--quiet", "--report", str(report))
    p.wait_for("start: 4 clients in echo mode")
    time.sleep(1.5)  # a second of echoes
    p.signal(signal.SIGHUP)  # reopens the log file, stops nothing
    p.wait_for("SIGHUP: log file reopened")
    p.signal(sig)
    assert p.wait(30) == 130, p.stderr
    assert re.search(r"^serverlink: dummy: interrupted after [\d.]+ s of 60 s", p.stderr, re.M)
    doc = json.loads(report.read_text())
    assert doc["interrupted"] is True and doc["counters"]["echo_recv"] > 0
    assert not any(" WARNING " in line for line in p.lines), p.stderr
    assert_clean(p)


def test_demo_stops_gracefully_on_sigterm_without_warnings(
    procs: list[Proc], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    args = ["demo", "--seconds", "60", "--clients", "10", "--echo-depth", "1"]
    p = start(procs, *args, "--disconnect-rate", "0", "--db", db, "--quiet")
    p.wait_for("demo: dummy: 10 clients", timeout=60)
    time.sleep(1.5)
    p.signal(signal.SIGHUP)
    p.wait_for("SIGHUP: log file reopened")
    p.signal(signal.SIGTERM)
    assert p.wait(60) == 130, p.stderr
    assert "demo: login server: " in p.stdout()
    assert re.search(r"^serverlink: demo: interrupted after [\d.]+ s of 60 s$", p.stderr, re.M)
    warnings = [line for line in p.lines if " WARNING " in line or " ERROR " in line]
    assert warnings == [], warnings
    assert "Traceback" not in p.stderr


def test_a_normal_demo_run_logs_no_warning(procs: list[Proc], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    args = ["demo", "--seconds", "2", "--clients", "10", "--echo-depth", "1"]
    p = start(procs, *args, "--disconnect-rate", "0", "--db", db, "--quiet")
    assert p.wait(90) == 0, p.stderr
    warnings = [line for line in p.lines if " WARNING " in line or " ERROR " in line]
    assert warnings == [], warnings


# --- item 5: settings from the environment and the shared database ----------------------------


def shown(text: str) -> dict[str, str]:
    """``key = value`` lines of config show, without the source comments."""
    out = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]") + "."
        elif " = " in line and not line.startswith("#"):
            key, _, value = line.partition(" = ")
            out[section + key] = value.split("  #")[0]
    return out


def test_config_show_prints_a_file_that_loads_back_unchanged(
    procs: list[Proc], tmp_path: Path
) -> None:
    for command in (["game", "--login-server", "10.0.0.5:8090"], ["dummy", "--echo-interval", "1"]):
        p = start(
            procs,
            "--log-format",
            "json",
            "config",
            "show",
            *command,
            "--port" if command[0] == "game" else "--clients",
            "7",
        )
        assert p.wait() == 0, p.stderr
        first = p.stdout()
        path = tmp_path / "shown.toml"
        path.write_text(first)
        p = start(procs, "--config", str(path), "config", "show", command[0])
        assert p.wait() == 0, p.stderr
        again = p.stdout()
        assert shown(again) == shown(first), (first, again)
        assert "config file" in again


def test_the_shared_database_from_file_and_environment(procs: list[Proc], tmp_path: Path) -> None:
    config = tmp_path / "serverlink.toml"
    config.write_text('[database]\nurl = "mysql://root@127.0.0.1:3306/from_file"\n')
    for words in (["login"], ["game"], ["db", "init"], ["db", "reset-status"]):
        p = start(procs, "--config", str(config), "config", "show", *words)
        assert p.wait() == 0, p.stderr
        values = shown(p.stdout())
        key = f"{'.'.join(words)}.db"
        assert values[key] == '"mysql://root@127.0.0.1:3306/from_file"', (words, values)
    p = start(procs, "--config", str(config), "config", "show", "demo")
    assert p.wait() == 0 and "from_file" not in p.stdout()  # the demo keeps its own
    env = {"SERVERLINK_DATABASE_URL": "sqlite:///from_env.db"}
    p = start(procs, "--config", str(config), "config", "show", "game", env=env)
    assert p.wait() == 0
    out = p.stdout()
    assert shown(out)["game.db"] == '"sqlite:///from_env.db"'
    assert "# environment SERVERLINK_DATABASE_URL (the shared database)" in out
    # the rule, per command, wins over the shared one
    env["SERVERLINK_GAME_DB"] = "sqlite:///game.db"
    p = start(procs, "config", "show", "game", env=env)
    assert p.wait() == 0 and shown(p.stdout())["game.db"] == '"sqlite:///game.db"'
    config.write_text('[database]\nurl = "nope"\n')
    p = start(procs, "--config", str(config), "game", "--standalone")
    assert p.wait() == 2 and p.lines[0].startswith(f"serverlink: {config}: [database] url:")


@pytest.mark.parametrize(
    ("var", "value"),
    [("SERVERLINK_LOGIN_LAN_PORT", "0"), ("SERVERLINK_DUMMY_ECHO_INTERVAL", "0.5"),
     ("SERVERLINK_DB_RESET_STATUS_DB", "sqlite:///x.db"), ("SERVERLINK_LOG_FORMAT", "json")],
)  # fmt: skip
def test_every_setting_from_the_environment_by_the_rule(
    procs: list[Proc], var: str, value: str
) -> None:
    words = var.removeprefix("SERVERLINK_").lower().split("_")
    command = {"login": ["login"], "dummy": ["dummy"], "db": ["db", "reset-status"]}.get(
        words[0], []
    )
    p = start(procs, "config", "show", *(command or ["game"]), env={var: value})
    assert p.wait() == 0, p.stderr
    assert f"# environment {var}" in p.stdout(), p.stdout()
