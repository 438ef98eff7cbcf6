"""Every default lives once, in the config dataclasses: the commands run with
exactly the dataclasses' defaults when nothing is set, every setting a user would
give has a flag, and ``default_of`` reads slotted frozen dataclasses."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest

from serverlink.cli import main, main_group
from serverlink.cli.defaults import Setting, default_of
from serverlink.cli.options import HostPort
from serverlink.demo import DemoOptions
from serverlink.dummy.config import DummyConfig
from serverlink.dummy.result import RunEnd
from serverlink.net.server import ServerLimits
from serverlink.net.tls import TlsConfig
from serverlink.protocol.codec import NetCodec
from serverlink.runner import RunOptions
from serverlink.servers.game import GameConfig
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginConfig
from serverlink.servers.monitor import MonitorConfig
from serverlink.servers.reporter import ObserveConfig
from serverlink.store.config import StoreConfig


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SERVERLINK_"):
            monkeypatch.delenv(name)


# --- default_of ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Inner:
    n: int = 3


@dataclass(frozen=True, slots=True)
class _Outer:
    required: int
    plain: float = 1.5
    made: _Inner = field(default_factory=_Inner)
    listed: list[int] = field(default_factory=lambda: [1, 2])


def test_default_of_reads_slotted_frozen_dataclasses() -> None:
    # the class attribute of a slotted dataclass is the slot, not the default
    assert not isinstance(_Outer.plain, float)
    assert default_of(_Outer, "plain") == 1.5
    assert default_of(_Outer, "made") == _Inner()
    assert default_of(_Outer, "listed") == [1, 2]
    assert default_of(_Outer, "listed") is not default_of(_Outer, "listed")  # factory called
    with pytest.raises(TypeError, match=r"_Outer\.required has no default"):
        default_of(_Outer, "required")
    with pytest.raises(AttributeError, match="no field 'nope'"):
        default_of(_Outer, "nope")
    assert default_of(LoginConfig, "handoff_timeout") == LoginConfig().handoff_timeout
    assert default_of(LoginConfig, "store") == StoreConfig()


def test_login_timeout_is_one_default_on_both_sides() -> None:
    assert LoginConfig().login_timeout == LinkConfig().key_ttl


# --- the commands run with the dataclasses' defaults --------------------------------------


def _captured(monkeypatch: pytest.MonkeyPatch, target: str, *argv: str) -> list[Any]:
    """Run ``serverlink ARGV`` with ``target`` (a dotted attribute) replaced by a
    recorder that returns 0; the arguments it was called with."""
    calls: list[Any] = []

    def record(*args: Any, **kwargs: Any) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(target, record)
    assert main(list(argv)) == 0
    assert len(calls) == 1
    return list(calls[0])


def test_login_runs_with_the_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, options, _console = _captured(monkeypatch, "serverlink.cli.app.serve", "login")
    assert spec.config == LoginConfig()
    assert (options.workers, options.stats_interval) == (
        RunOptions().workers,
        RunOptions().stats_interval,
    )
    assert options.live and options.log_level == logging.INFO


def test_game_runs_with_the_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _, _ = _captured(monkeypatch, "serverlink.cli.app.serve", "game", "--standalone")
    assert spec.config == GameConfig()
    address = "{}:{}".format(*LinkConfig().login_servers[0])
    db = "sqlite:///accounts.db"  # linked mode names its database: it has no default
    spec, _, _ = _captured(
        monkeypatch, "serverlink.cli.app.serve", "game", "--login-server", address, "--db", db
    )
    assert spec.config == GameConfig(link=LinkConfig(), store=StoreConfig(url=db))


def test_dummy_and_demo_run_with_the_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("serverlink.dummy.worker.preflight", lambda config: None)

    class Result:
        exit_code = 0
        end = RunEnd()

    seen: list[DummyConfig] = []

    def run_with_display(config: DummyConfig, quiet: bool, console: object = None) -> Result:
        seen.append(config)
        return Result()

    monkeypatch.setattr("serverlink.dummy.dashboard.run_with_display", run_with_display)
    assert main(["dummy"]) == 0
    assert seen == [DummyConfig()]
    (options, _console) = _captured(monkeypatch, "serverlink.cli.demo.run_demo", "demo")
    assert options == DemoOptions()
    # Several login servers: the first as before, the others beside it.
    keys = str(Path(__file__))  # any readable file: preflight is replaced
    for argv, more in ((["--login", "a:1"], ()), (["--login-server", "a:1,b:2"], (("b", 2),))):
        assert main(["dummy", "--mode", "login", "--keys", keys, *argv]) == 0
        assert (seen[-1].login_host, seen[-1].login_port) == ("a", 1)
        assert seen[-1].more_login_servers == more
        assert seen[-1].login_servers == (("a", 1), *more)


def test_game_and_chat_link_to_every_login_server_given(monkeypatch: pytest.MonkeyPatch) -> None:
    db = "sqlite:///accounts.db"
    for command in ("game", "chat"):
        argv = [command, "--login-server", "a:8090,[::1]:8090", "--key-store", "redis://r/0"]
        if command == "game":
            argv += ["--db", db]
        spec, _, _ = _captured(monkeypatch, "serverlink.cli.app.serve", *argv)
        assert spec.config.link.login_servers == (("a", 8090), ("::1", 8090))
        assert spec.config.link.key_store == "redis://r/0"


# --- every setting has a flag -------------------------------------------------------------

#: Set by the program, not by a user: the runner's (port sharing, worker
#: number) and the LAN side's own (keepalive on server-to-server links).
INTERNAL = {"reuse_port", "worker_index", "tcp_keepalive"}
#: Fields that are whole configs, each made from the settings of its own class.
PARTS = {"codec", "limits", "store", "link", "lan_tls", "tls"}


def _set_fields(command: click.Command, config: type[Any]) -> set[str]:
    found: set[str] = set()
    for param in command.params:
        if isinstance(param, Setting) and param.config is config:
            found.update(param.field if isinstance(param.field, tuple) else [param.field])
        elif param.name is not None:
            found.add(param.name)  # a command's own option that sets the field
    return found


@pytest.mark.parametrize(
    ("command", "configs"),
    [
        (
            "game",
            [GameConfig, LinkConfig, StoreConfig, ServerLimits, NetCodec, TlsConfig, ObserveConfig],
        ),
        ("login", [LoginConfig, StoreConfig, ServerLimits, NetCodec, TlsConfig, ObserveConfig]),
        ("monitor", [MonitorConfig]),
        ("dummy", [DummyConfig, NetCodec]),
        ("demo", [DemoOptions]),
    ],
)
def test_every_setting_has_a_flag(command: str, configs: list[type[Any]]) -> None:
    cmd = main_group.commands[command]
    for config in configs:
        fields = {f.name for f in dataclasses.fields(config)}
        given_by_root = {"log_level"} if config is DemoOptions else set()
        missing = fields - _set_fields(cmd, config) - INTERNAL - PARTS - given_by_root
        assert not missing, f"{command}: no flag for {config.__name__}.{sorted(missing)}"


def test_an_option_of_several_commands_is_one_declaration() -> None:
    """--clients, --code, --db-timeout, --lan-tls-ca ... have one type and one help
    wherever they are; only --db, --quiet and --standalone say per command what
    they are there."""
    found: dict[str, set[tuple[str, str]]] = {}
    for cmd in main_group.commands.values():
        subs = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
        for sub in subs:
            for param in sub.params:
                if isinstance(param, click.Option) and param.opts[0].startswith("--"):
                    shape = (repr(param.type), param.help or "")
                    found.setdefault(param.opts[0], set()).add(shape)
    assert {"--clients", "--code", "--db-timeout", "--lan-tls-ca"} <= set(found)
    # The same setting named the same on both sides, each side saying its part:
    # the game server's --client-version is the version it expects, the dummy's
    # the one it sends; --login-server is the LAN port for a game server, the
    # client port for the dummy.
    per_command = {"--db", "--quiet", "--standalone", "--client-version", "--login-server"}
    differing = {flag for flag, shapes in found.items() if len(shapes) > 1}
    assert differing == per_command


# --- one HOST:PORT ------------------------------------------------------------------------


def test_host_port_accepts_ipv6_in_brackets_only() -> None:
    hp = HostPort()
    assert hp.convert("127.0.0.1:8090", None, None) == ("127.0.0.1", 8090)
    assert hp.convert("[::1]:8090", None, None) == ("::1", 8090)
    assert hp.convert(("h", 1), None, None) == ("h", 1)
    for bad in ("::1:8090", "nohost", "h:0", "h:x", ":80"):
        with pytest.raises(click.BadParameter):
            hp.convert(bad, None, None)
