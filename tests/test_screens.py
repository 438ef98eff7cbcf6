"""What the screens show an operator: the login server's completion times,
process and linked servers; the game server's counts that look like leaks,
explained; the dummy's dashboard in words, its mode's counters only, "–" for a
second without samples, within 120 columns."""

from __future__ import annotations

import io

from rich.console import Console

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.dashboard import LiveDashboard
from serverlink.dummy.labels import COUNTER_LABELS
from serverlink.dummy.metrics import Aggregate, Meter, SnapshotMaker
from serverlink.monitor.latency import LatencyHistogram
from serverlink.monitor.screen import ScreenSpec, View, render_screen, summary_line
from serverlink.servers.game import LINKED_GAME_SCREEN
from serverlink.servers.login_stats import LOGIN_SCREEN, linked_rows


def rendered(spec: ScreenSpec, snapshot: dict[str, object], width: int = 120) -> str:
    view = View("x", "127.0.0.1:1", 5.0, snapshot, {}, cpu_percent=12.5, rss_bytes=40 << 20, pid=7)
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(render_screen(spec, view))
    return console.file.getvalue()  # type: ignore[attr-defined]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_latency_histogram_now_and_run() -> None:
    clock = FakeClock()
    hist = LatencyHistogram(clock)
    for ms in (1, 2, 3, 40):
        hist.add(ms / 1000)
    snap = hist.snapshot("t")
    assert snap["t_now_p50_ms"] is None  # the first second is not over
    assert snap["t_p50_ms"] == 2.01 and snap["t_p99_ms"] == 40.01
    clock.now += 1.2
    snap = hist.snapshot("t")
    assert snap["t_now_p50_ms"] == 2.01 and snap["t_now_p99_ms"] == 40.01
    clock.now += 3  # seconds without a login: "now" is empty, the run is kept
    snap = hist.snapshot("t")
    assert snap["t_now_p50_ms"] is None and snap["t_p50_ms"] == 2.01


class Linked:
    def __init__(self, name: str, port: int, players: int, status_id: int | None) -> None:
        self.name, self.address = name, ("127.0.0.1", port)
        self.players, self.capacity, self.status_id = players, 20000, status_id
        self.draining, self.keys = status_id == 1, None


def test_login_screen_shows_completion_times_process_and_linked_servers() -> None:
    clock = FakeClock()
    hist = LatencyHistogram(clock)
    hist.add(0.004)
    clock.now += 1.5
    snapshot = {
        **hist.snapshot("login_time"),
        "login_time_max_ms": 4.0,
        "linked": linked_rows(
            [Linked("game@127.0.0.1:12211", 12211, 35, 1), Linked("chat@x", 50000, 0, None)]
        ),
    }
    text = rendered(LOGIN_SCREEN, snapshot)
    for expected in (
        "Completion now",
        "Completion run",
        "p50 4.0 ms",
        "RSS 40.0 MiB",
        "12.5 %",
        "game 127.0.0.1:12211 35/20,000 players, draining",
        "chat 127.0.0.1:50000 no load reports",
    ):
        assert expected in text, (expected, text)
    hist.add(0.002)
    clock.now += 5  # nothing in the last second
    quiet = summary_line(LOGIN_SCREEN, View("login", "a", 1.0, hist.snapshot("login_time"), {}))
    assert "completion now p50 –, p99 –" in quiet


def test_game_screen_explains_keys_waiting() -> None:
    text = rendered(LINKED_GAME_SCREEN, {"keys_waiting": 3, "refusals": {"bad_key": 2}})
    assert "3 handed over by the login server, client not yet arrived" in text
    assert "expires after --login-timeout" in text
    assert "bad_key 2" in text  # refused logins, apart from protocol errors


def dashboard_text(mode: str, second_has_samples: bool) -> str:
    config = DummyConfig(
        mode=mode, keys_file="keys.txt" if mode == "login" else None, clients=10000, echo_depth=20
    )
    meter = Meter()
    maker = SnapshotMaker(0, meter)
    meter.echo_recv, meter.connect_total = 123456, 10000
    if second_has_samples:
        meter.hist[5] = 10
        meter.login_hist[500] = 3
    agg = Aggregate(1)
    agg.add(maker.take(1.0, (10000, 10000, 2000, 5, 9995)))
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    dashboard = LiveDashboard(config, console)
    console.print(dashboard._render(agg, 12.0))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_dummy_dashboard_in_words_within_120_columns() -> None:
    for mode in ("echo", "login"):
        for samples in (True, False):
            text = dashboard_text(mode, samples)
            lines = text.splitlines()
            assert max(len(line) for line in lines) <= 120, text
            assert "…" not in text, text  # nothing cut
            assert "echoes verified per second" in text and "errors in all" in text
            assert ("login flows completed" in text) == (mode == "login"), text
            assert ("login server: logins accepted" in text) == (mode == "login"), text
            if not samples:
                assert "– / –" in text, text  # no sample in the last second
            # every counter row is in words, never a variable name
            for name in COUNTER_LABELS:
                assert f" {name} " not in text, (name, text)
