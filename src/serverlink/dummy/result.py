"""What a dummy run counted: ``DummyResult`` and its ``report()`` (the JSON
document of ``--report``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.metrics import GAME_LOGIN_STATUS, LOGIN_SERVER_STATUS, Aggregate


@dataclass
class DummyResult:
    """What a run counted. ``report()`` is the JSON document of ``--report``."""

    config: DummyConfig
    processes: int
    #: Measured duration in seconds (from the start signal to the stop signal).
    duration: float
    counters: dict[str, int]
    errors: dict[str, int]
    error_details: dict[str, int]
    latency_ms: dict[str, float]
    #: Verified echoes in each second of the run.
    series: list[int] = field(default_factory=list)
    #: Login mode: flow completion times (login server connect -> game login reply).
    login_latency_ms: dict[str, float] = field(default_factory=dict)
    #: Login flows completed in each second of the run.
    login_series: list[int] = field(default_factory=list)
    #: Refused logins by Status name: the login server's, the game server's.
    login_failures: dict[str, int] = field(default_factory=dict)
    game_login_failures: dict[str, int] = field(default_factory=dict)
    #: Latency percentiles (p50, p90, p99) of each second, ms: echo, login flows.
    latency_series: dict[str, list[float]] = field(default_factory=dict)
    login_latency_series: dict[str, list[float]] = field(default_factory=dict)

    @property
    def echo_per_s(self) -> float:
        return self.counters["echo_recv"] / self.duration if self.duration > 0 else 0.0

    @property
    def login_flows_per_s(self) -> float:
        return self.counters["login_flows"] / self.duration if self.duration > 0 else 0.0

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())

    @property
    def exit_code(self) -> int:
        """0 when no error was counted, 1 otherwise."""
        return 1 if self.errors_total else 0

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "mode": self.config.mode,
            "echo_per_s": self.echo_per_s,
            "errors_total": self.errors_total,
            "latency_ms": self.latency_ms,
        }
        if self.config.mode == "login":
            report.update(
                login_flows_per_s=self.login_flows_per_s,
                login_latency_ms=self.login_latency_ms,
                login_failures=self.login_failures,
                game_login_failures=self.game_login_failures,
                relogin=self.config.relogin,
            )
        report.update(
            seconds=self.duration,
            clients=self.config.clients,
            echo_depth=self.config.echo_depth,
            processes=self.processes,
            target=self.config.target,
            counters=self.counters,
            errors=self.errors,
            error_details=self.error_details,
            echo_per_s_series=self.series,
            latency_ms_series=self.latency_series,
        )
        if self.config.mode == "login":
            report["login_flows_per_s_series"] = self.login_series
            report["login_latency_ms_series"] = self.login_latency_series
        report["config"] = asdict(self.config)
        return report


def result_of(config: DummyConfig, processes: int, duration: float, agg: Aggregate) -> DummyResult:
    return DummyResult(
        config=config,
        processes=processes,
        duration=duration,
        counters=dict(agg.totals),
        errors=agg.errors(),
        error_details=dict(sorted(agg.details.items())),
        latency_ms=agg.latency_ms(),
        series=list(agg.series),
        login_latency_ms=agg.login_latency_ms(),
        login_series=list(agg.login_series),
        login_failures=agg.refusals(LOGIN_SERVER_STATUS),
        game_login_failures=agg.refusals(GAME_LOGIN_STATUS),
        latency_series=agg.latency_timeline.finish(),
        login_latency_series=agg.login_latency_timeline.finish(),
    )
