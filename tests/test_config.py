"""Settings: defaults < config file < environment < flags, one-line errors, the
generated example. In-process through ``serverlink.cli.main`` (``config show``
resolves a command's settings without running it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from serverlink.cli import main, main_group
from serverlink.cli.example import example_toml
from serverlink.cli.settings import build_default_map, load_config


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def shown(out: str) -> dict[str, str]:
    """``name = value  # source`` lines of ``config show`` -> {name: "value  # source"}."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+) = (.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SERVERLINK_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- the example ---------------------------------------------------------------------------


def test_example_lists_every_setting_and_loads_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "config", "example")
    assert code == 0, err
    assert "[game]" in out and "port = 12211" in out and "max_sessions = 20000" in out
    assert "env: SERVERLINK_GAME_PORT" in out
    assert "[demo]" in out and 'log_level = "info"' in out
    # every setting of the game command is in it, with its help
    for option in ("standalone", "workers", "idle_timeout", "send_buffer_limit", "key2"):
        assert re.search(rf"^#? ?{option} = ", out, re.M), option
    path = write(tmp_path, out)
    default_map = load_config(path, main_group)
    assert default_map["game"]["port"] == 12211
    # and a command runs with it
    code, out2, err = run(capsys, "--config", path, "config", "show", "game")
    assert code == 0, err
    assert shown(out2)["port"] == "12211  # config file"


def test_example_has_a_table_for_every_command() -> None:
    text = example_toml(main_group)
    assert set(main_group.commands) == {
        "chat",
        "config",
        "db",
        "demo",
        "dummy",
        "game",
        "login",
        "monitor",
        "web",
        "up",
    }
    for name in (
        "chat",
        "db",
        "db.seed",
        "demo",
        "dummy",
        "game",
        "login",
        "monitor",
        "monitor.history",
    ):
        assert f"\n[{name}]\n" in text, name
    # a setting without a default is listed, commented out
    assert "# accounts = ...  (no default)" in text


# --- precedence ----------------------------------------------------------------------------


def test_precedence_flag_over_env_over_file_over_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "[game]\nport = 1111\nmax_sessions = 50\nidle-timeout = 3\n",
    )
    monkeypatch.setenv("SERVERLINK_GAME_PORT", "2222")
    monkeypatch.setenv("SERVERLINK_GAME_MAX_SESSIONS", "60")
    code, out, err = run(capsys, "--config", path, "config", "show", "game", "--port", "3333")
    assert code == 0, err
    settings = shown(out)
    assert settings["port"] == "3333  # flag"
    assert settings["max_sessions"] == "60  # environment SERVERLINK_GAME_MAX_SESSIONS"
    assert settings["idle_timeout"] == "3.0  # config file"
    assert settings["workers"] == "1  # default"


def test_config_file_from_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, 'log_level = "warning"\n[game]\nworkers = 2\n')
    monkeypatch.setenv("SERVERLINK_CONFIG", path)
    code, out, err = run(capsys, "config", "show", "game")
    assert code == 0, err
    settings = shown(out)
    assert settings["workers"] == "2  # config file"
    assert settings["log_level"] == '"warning"  # config file'


def test_group_table_applies_to_subcommands(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        '[db]\ndb = "sqlite:///group.db"\naccounts = 7\n[db.seed]\nfirst = 5\n',
    )
    code, out, err = run(capsys, "--config", path, "config", "show", "db", "seed")
    assert code == 0, err
    settings = shown(out)
    assert settings["db"] == '"sqlite:///group.db"  # config file'
    assert settings["accounts"] == "7  # config file"
    assert settings["first"] == "5  # config file"


def test_default_map_is_keyed_by_parameter_name() -> None:
    dm = build_default_map({"game": {"max-sessions": 9}, "log_level": "debug"}, main_group)
    assert dm["game"] == {"max_sessions": 9}
    assert dm["log_level"] == "debug"


# --- one-line errors -----------------------------------------------------------------------


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[game]\nport = 'abc'\n",
            r"^serverlink: .*config\.toml \[game\] port: 'abc' is not a valid integer$",
        ),
        ("[game]\nprot = 1\n", r"unknown setting 'prot' in \[game\] \(did you mean 'port'\?\)$"),
        ("[gam]\nport = 1\n", r"unknown section \[gam\] \(did you mean \[game\]\?\)$"),
        ("[game]\nport = 70000\n", r"\[game\] port: 70000 is not in the range 0<=x<=65535$"),
        ("[game]\nworkers = 0\n", r"\[game\] workers: 0 is not in the range 1<=x<=256$"),
        ("[game]\nport = true\n", r"\[game\] port: true is not a valid integer"),
        ("[game]\nport = [1]\n", r"\[game\] port: expected a single value, got a list$"),
        (
            "[game]\nidle_timeout = -1\n",
            r"\[game\] idle_timeout: -1(\.0)? is not in the range x>=0$",
        ),
        ("[game]\nlog_level = 'loud'\n", r"\[game\] log_level: 'loud' is not one of"),
        ("[game]\nport = 1\n[game.x]\n", r"unknown section \[game\.x\]$"),
        ("prot = 1\n", r"unknown setting 'prot' at the top level$"),
        ("[game\nport = 1\n", r"invalid TOML: .*line 1"),
        ("[game]\nport = \n", r"invalid TOML: .*\(at line 2, column \d+\)$"),
    ],
)
def test_bad_config_file_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    line = one_line_error(capsys, "--config", path, "game", "--standalone")
    assert re.search(expected, line), line
    assert line.startswith("serverlink: ")


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = one_line_error(capsys, "--config", str(tmp_path / "nope.toml"), "game")
    assert line == f"serverlink: {tmp_path / 'nope.toml'}: file not found"


def test_bad_environment_value_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVERLINK_GAME_PORT", "abc")
    line = one_line_error(capsys, "game", "--standalone")
    assert line == (
        "serverlink: environment variable SERVERLINK_GAME_PORT: 'abc' is not a valid integer"
    )


def test_bad_flag_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "game", "--standalone", "--workers", "0")
    assert "'--workers'" in line and "0 is not in the range 1<=x<=256" in line
    line = one_line_error(capsys, "game", "--port", "65536")
    assert "'--port'" in line and "65536" in line
    line = one_line_error(capsys, "game", "--login-server", "nohost")
    assert "'--login-server'" in line and "HOST:PORT" in line


def test_linked_mode_needs_login_server(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "game")
    assert line.startswith("serverlink: game: linked mode")
    assert "--login-server" in line and "--standalone" in line


def test_unwritable_log_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = one_line_error(
        capsys, "--log-file", str(tmp_path / "no" / "dir.log"), "config", "example"
    )
    assert "--log-file" in line and "cannot open" in line
