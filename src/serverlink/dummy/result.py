"""What a dummy run counted: ``DummyResult`` and its ``report()`` (the JSON
document of ``--report``), which says what ran where and when
(``dummy.provenance``) so that reports of different runs compare."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.metrics import (
    ATTACK,
    FLOW_TO,
    GAME_LOGIN_STATUS,
    LOGIN_SERVER_STATUS,
    NOT_ERRORS,
    Aggregate,
)
from serverlink.dummy.provenance import provenance, rounded
from serverlink.dummy.series import SecondSeries


@dataclass(frozen=True)
class RunEnd:
    """When a run started (epoch seconds) and how it ended."""

    started_at: float = 0.0
    #: Stopped by a signal (Ctrl-C, SIGTERM) before its --seconds were over.
    interrupted: bool = False
    #: Why the run stopped early by itself (dummy.verdict), or None.
    stopped_early: str | None = None


@dataclass
class DummyResult:
    """What a run counted. ``report()`` is the JSON document of ``--report``."""

    config: DummyConfig
    counters: dict[str, int]
    errors: dict[str, int]
    error_details: dict[str, int]
    latency_ms: dict[str, float]
    processes: int
    #: Measured duration in seconds (from the start signal to the stop signal).
    duration: float
    #: Verified echoes in each second of the run.
    series: list[int] = field(default_factory=list)
    #: Login mode: flow completion times (login server connect -> game login reply).
    login_latency_ms: dict[str, float] = field(default_factory=dict)
    #: Login flows completed in each second of the run.
    login_series: list[int] = field(default_factory=list)
    #: Refused logins by Status name: the login server's, the game server's.
    login_failures: dict[str, int] = field(default_factory=dict)
    game_login_failures: dict[str, int] = field(default_factory=dict)
    #: Login mode: completed flows by the game server address the login server named.
    login_flows_by_game_server: dict[str, int] = field(default_factory=dict)
    end: RunEnd = field(default_factory=RunEnd)
    #: Latency percentiles and errors of each second.
    seconds: SecondSeries = field(default_factory=lambda: SecondSeries(()))
    #: Chat mode: attacks by ``attack:<kind>:<answer>`` (not errors; the answers).
    attack_details: dict[str, int] = field(default_factory=dict)
    #: Chat mode: messages sent and verified deliveries in each second of the run.
    message_series: list[int] = field(default_factory=list)
    delivery_series: list[int] = field(default_factory=list)

    @property
    def echo_per_s(self) -> float:
        return self.counters["echo_recv"] / self.duration if self.duration > 0 else 0.0

    @property
    def login_flows_per_s(self) -> float:
        return self.counters["login_flows"] / self.duration if self.duration > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.counters["messages_sent"] / self.duration if self.duration > 0 else 0.0

    @property
    def deliveries_per_s(self) -> float:
        return self.counters["deliveries"] / self.duration if self.duration > 0 else 0.0

    def attacks(self) -> dict[str, Any]:
        """Chat mode: hostile packets sent and how the server answered them,
        in all and by kind (``attack:<kind>:<answer>``)."""
        out: dict[str, Any] = {
            name: self.counters[name]
            for name in ("attack_sent", "attack_dropped", "attack_muted", "attack_unanswered")
        }
        out["attack_by_kind"] = {k[len(ATTACK) :]: v for k, v in self.attack_details.items()}
        return out

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())

    @property
    def exit_code(self) -> int:
        """0 when no error was counted and the run was not cut short, 1 otherwise
        (the command line says 130 for an interrupted run)."""
        return 1 if self.errors_total or self.end.stopped_early else 0

    def report(self) -> dict[str, Any]:
        """The JSON report: figures rounded (ms to the µs, rates to 0.1)."""
        report: dict[str, Any] = {
            **provenance(self.end.started_at),
            "interrupted": self.end.interrupted,
            "stopped_early": self.end.stopped_early,
            "seconds_planned": self.config.seconds,
            "mode": self.config.mode,
        }
        if self.config.mode == "chat":
            # The latency histogram is of deliveries (send time in the text).
            report.update(
                messages_per_s=self.messages_per_s,
                deliveries_per_s=self.deliveries_per_s,
                errors_total=self.errors_total,
                delivery_latency_ms=self.latency_ms,
                **self.attacks(),
                through_login_server=self.config.through_login_server,
            )
        else:
            report.update(
                echo_per_s=self.echo_per_s,
                errors_total=self.errors_total,
                latency_ms=self.latency_ms,
            )
        if self.config.mode == "login":
            report.update(
                login_flows_per_s=self.login_flows_per_s,
                login_latency_ms=self.login_latency_ms,
                login_failures=self.login_failures,
                game_login_failures=self.game_login_failures,
                login_flows_by_game_server=self.login_flows_by_game_server,
                relogin=self.config.relogin,
            )
        report.update(
            seconds=self.duration,
            clients=self.config.clients,
            echo_depth=self.config.echo_depth,
            processes=self.processes,
            target=self.config.target,
            # every error key is a counter too (worker_failed is counted apart)
            counters={**self.counters, "worker_failed": self.errors.get("worker_failed", 0)},
            errors=self.errors,
            error_details=self.error_details,
            latency_p50_ms_series=self.seconds.quantile(0.5),
            latency_p99_ms_series=self.seconds.quantile(0.99),
            errors_series=self.seconds.errors,
        )
        if self.config.mode == "chat":
            report["messages_per_s_series"] = self.message_series
            report["deliveries_per_s_series"] = self.delivery_series
        else:
            report["echo_per_s_series"] = self.series
        if self.config.mode == "login":
            report.update(
                login_flows_per_s_series=self.login_series,
                login_latency_p50_ms_series=self.seconds.quantile(0.5, login=True),
                login_latency_p99_ms_series=self.seconds.quantile(0.99, login=True),
            )
        report["config"] = asdict(self.config)
        out: dict[str, Any] = rounded(report)
        for rate in ("echo_per_s", "login_flows_per_s", "messages_per_s", "deliveries_per_s"):
            if rate in out:
                out[rate] = round(out[rate], 1)
        return out


def result_of(
    config: DummyConfig,
    processes: int,
    duration: float,
    agg: Aggregate,
    end: RunEnd | None = None,
) -> DummyResult:
    return DummyResult(
        config=config,
        processes=processes,
        duration=duration,
        counters=dict(agg.totals),
        errors=agg.errors(),
        error_details={
            k: v for k, v in sorted(agg.details.items()) if not k.startswith(NOT_ERRORS)
        },
        attack_details={k: v for k, v in sorted(agg.details.items()) if k.startswith(ATTACK)},
        latency_ms=agg.latency_ms(),
        series=list(agg.series),
        login_latency_ms=agg.login_latency_ms(),
        login_series=list(agg.series_of["login_flows"]),
        login_failures=agg.refusals(LOGIN_SERVER_STATUS),
        game_login_failures=agg.refusals(GAME_LOGIN_STATUS),
        login_flows_by_game_server=agg.refusals(FLOW_TO),
        end=end or RunEnd(),
        seconds=agg.seconds,
        message_series=list(agg.series_of["messages_sent"]),
        delivery_series=list(agg.series_of["deliveries"]),
    )
