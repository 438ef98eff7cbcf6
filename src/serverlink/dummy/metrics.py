"""Counters and latency histogram of the dummy client.

Three layers:

- ``Meter``: one per worker process, bumped on the hot path. Plain int slots
  and a sparse histogram dict; the echo path touches it once per read, not
  once per packet.
- ``Snapshot``: what a worker sends its parent once a second: counter deltas,
  gauges, the histogram of the interval. Small and picklable.
- ``Aggregate``: the parent's merge of every worker's snapshots, which the
  dashboard and the final report read.

Latency buckets are 10 µs wide (bucket b holds [b*10, (b+1)*10) µs); the dict is
sparse, so there is no upper limit and merging is adding counts per key. Two
histograms: echo round trips (``hist``) and, in login mode, whole login flows
from the connect to the login server to the game login reply (``login_hist``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The histogram helpers live in monitor.latency (the servers' screens use them too).
from serverlink.dummy.series import SecondSeries
from serverlink.monitor.latency import BUCKET_NS as BUCKET_NS
from serverlink.monitor.latency import mean_ms, merge_hist
from serverlink.monitor.latency import percentiles as percentiles

#: Monotonic counters, in the order a Snapshot carries their deltas.
COUNTERS = (
    "connect_total",  # connection attempts
    "connect_fail",  # attempts that failed (refused, timeout, unreachable)
    "login_ok",
    "login_fail",  # CS_GAME_RES_LOGIN with Status != 1
    "login_timeout",  # no login reply within reply_timeout
    "disconnect_server",  # the server closed or reset a connection we were using
    "disconnect_planned",  # clients that left on purpose (--disconnect-rate)
    "echo_sent",
    "echo_recv",  # replies received and verified
    "echo_late",  # replies (or requests still unanswered at the end) over late
    "echo_timeout",  # a reply missing for reply_timeout: connection dropped
    "packet_error",  # bad frame or a reply that is not the expected one
    "heartbeat_sent",
    # login mode (login server -> game server); login_ok / login_fail /
    # login_timeout above are the game server's login
    "login_server_ok",  # CS_LOGIN_RES_LOGIN with Status 1
    "login_server_fail",  # CS_LOGIN_RES_LOGIN with another Status (details by name)
    "login_flows",  # flows completed: login server reply, then game login Status 1
    # flows that waited for a free account (all in use, or freed less than
    # account_reuse_delay ago): not an error, but it caps the flow rate
    "account_wait",
    # Status GAME for an account whose game session this dummy closed less than
    # reply_timeout ago (its logout not written yet): retried later, not an error
    "account_busy",
    # flows cut because their game server went away (it closed or reset the
    # connection, or refused the connect the login server sent us to): an error,
    # counted apart from the others so a failover test can tell them apart
    "server_lost",
    # Status GAME for an account whose session was cut by its game server,
    # within release_wait: the login server releases it after its grace time;
    # retried later, not an error
    "account_locked",
    # chat mode; login_ok / login_fail / login_timeout above are the chat login
    "chat_moves",  # sector moves answered exactly as asked
    "messages_sent",
    "messages_echoed",  # a client's own messages back, byte for byte
    "deliveries",  # messages received (own ones included), every check passed
    "chat_violation",  # a chat rule broken by what was received (details by kind)
    # hostile packets sent by the attacking share of clients, and the answers:
    # connection dropped, or (floods) muted; unanswered is the server's failure
    "attack_sent",
    "attack_dropped",
    "attack_muted",
    "attack_unanswered",
)

#: Counters that make a run fail (exit status 1).
ERROR_COUNTERS = (
    "connect_fail",
    "login_fail",
    "login_timeout",
    "disconnect_server",
    "echo_late",
    "echo_timeout",
    "packet_error",
    "login_server_fail",
    "server_lost",
    "chat_violation",
    "attack_unanswered",
)

#: Counters shown as a rate "now" and kept as a per-second series.
RATES = ("echo_recv", "login_flows", "messages_sent", "deliveries")

#: Values "now" (not deltas). in_login / in_game: clients in each phase of the
#: login flow (connecting to or waiting on the login server; connected to the
#: game server).
GAUGES = ("connected", "logged_in", "reply_wait", "in_login", "in_game")
Gauges = tuple[int, int, int, int, int]
NO_GAUGES: Gauges = (0, 0, 0, 0, 0)

#: Error detail prefixes of refused logins, followed by the Status name.
LOGIN_SERVER_STATUS = "login_server:"
GAME_LOGIN_STATUS = "game_login:"
#: Detail prefix of chat mode's attacks and their answers (``attack:<kind>:<answer>``):
#: kept with the error details on the way, reported apart (they are not errors).
ATTACK = "attack:"
#: Detail prefix of login mode's completed flows by game server (``flow_to:<host>:<port>``):
#: reported apart as ``login_flows_by_game_server`` (they are not errors).
FLOW_TO = "flow_to:"
#: The detail prefixes that are not errors.
NOT_ERRORS = (ATTACK, FLOW_TO)


@dataclass(slots=True, eq=False)
class Meter:
    """A worker's live counters. Attribute names match COUNTERS."""

    #: Why errors happened: "packet:wrong_tick", "login:status_3", ...
    details: Counter[str] = field(default_factory=Counter)
    connect_total: int = 0
    connect_fail: int = 0
    login_ok: int = 0
    login_fail: int = 0
    login_timeout: int = 0
    disconnect_server: int = 0
    disconnect_planned: int = 0
    echo_sent: int = 0
    echo_recv: int = 0
    echo_late: int = 0
    echo_timeout: int = 0
    packet_error: int = 0
    heartbeat_sent: int = 0
    login_server_ok: int = 0
    login_server_fail: int = 0
    login_flows: int = 0
    account_wait: int = 0
    account_busy: int = 0
    server_lost: int = 0
    account_locked: int = 0
    chat_moves: int = 0
    messages_sent: int = 0
    messages_echoed: int = 0
    deliveries: int = 0
    chat_violation: int = 0
    attack_sent: int = 0
    attack_dropped: int = 0
    attack_muted: int = 0
    attack_unanswered: int = 0
    #: Open connections (a gauge, kept by the worker as session owner).
    connected: int = 0
    #: Clients in each phase of a login flow (gauges, kept by the scenario).
    in_login: int = 0
    in_game: int = 0
    #: Latency histogram of the current interval: bucket -> count.
    hist: dict[int, int] = field(default_factory=dict)
    #: Largest latency of the current interval, ns.
    lat_max_ns: int = 0
    #: Login flow completion times of the current interval, same buckets.
    login_hist: dict[int, int] = field(default_factory=dict)
    login_lat_max_ns: int = 0

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in COUNTERS)

    def error(self, counter: str, detail: str) -> None:
        """Count an error (off the hot path) with its reason."""
        setattr(self, counter, getattr(self, counter) + 1)
        self.details[detail] += 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One worker's interval, sent to the parent once a second."""

    worker: int
    seq: int  # interval number, from 1
    dt: float  # interval length, seconds
    counters: tuple[int, ...]  # deltas, COUNTERS order
    details: dict[str, int]  # deltas
    gauges: Gauges  # GAUGES order, values now
    hist: dict[int, int]  # the interval's latencies
    lat_max_ns: int  # the interval's largest latency
    login_hist: dict[int, int]  # the interval's login flow times
    login_lat_max_ns: int
    final: bool = False


class SnapshotMaker:
    """Turns a Meter into interval deltas."""

    def __init__(self, worker: int, meter: Meter) -> None:
        self.worker = worker
        self.meter = meter
        self.seq = 0
        self._last = meter.values()
        self._last_details: Counter[str] = Counter()

    def take(self, dt: float, gauges: Gauges, final: bool = False) -> Snapshot:
        m = self.meter
        now = m.values()
        deltas = tuple(a - b for a, b in zip(now, self._last, strict=True))
        self._last = now
        details = {k: v - self._last_details[k] for k, v in m.details.items()}
        details = {k: v for k, v in details.items() if v}
        self._last_details = Counter(m.details)
        # Swap rather than copy: the hot path looks the dict up on the meter
        # once per read, so the next read already fills the new one.
        hist, m.hist = m.hist, {}
        lat_max, m.lat_max_ns = m.lat_max_ns, 0
        login_hist, m.login_hist = m.login_hist, {}
        login_max, m.login_lat_max_ns = m.login_lat_max_ns, 0
        self.seq += 1
        return Snapshot(
            self.worker,
            self.seq,
            dt,
            deltas,
            details,
            gauges,
            hist,
            lat_max,
            login_hist,
            login_max,
            final,
        )


def latency_summary(hist: Mapping[int, int], max_ns: int) -> dict[str, float]:
    p50, p90, p99, p999 = percentiles(hist, (0.5, 0.9, 0.99, 0.999))
    return {
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "p99.9": p999,
        "max": max_ns / 1e6,
        "mean": mean_ms(hist),
    }


@dataclass(slots=True)
class WorkerView:
    gauges: Gauges = NO_GAUGES
    #: Per second in the last interval, RATES order.
    rates: tuple[float, ...] = (0.0,) * len(RATES)
    hist: dict[int, int] | None = None
    lat_max_ns: int = 0
    login_hist: dict[int, int] | None = None
    login_lat_max_ns: int = 0
    done: bool = False
    failed: bool = False


class Aggregate:
    """The parent's merge of all workers' snapshots."""

    def __init__(self, workers: int) -> None:
        self.totals = dict.fromkeys(COUNTERS, 0)
        self.details: Counter[str] = Counter()
        self.hist: dict[int, int] = {}
        self.lat_max_ns = 0
        self.workers = [WorkerView() for _ in range(workers)]
        self.login_hist: dict[int, int] = {}
        self.login_lat_max_ns = 0
        #: Each RATES counter per interval number, summed over workers.
        self.series_of: dict[str, list[int]] = {name: [] for name in RATES}
        self._rate_indices = tuple(COUNTERS.index(name) for name in RATES)
        #: Latency percentiles and errors of each second (the report's series).
        self.seconds = SecondSeries([COUNTERS.index(name) for name in ERROR_COUNTERS])

    def add(self, snap: Snapshot) -> None:
        totals = self.totals
        for name, delta in zip(COUNTERS, snap.counters, strict=True):
            totals[name] += delta
        self.details.update(snap.details)
        merge_hist(self.hist, snap.hist)
        if snap.lat_max_ns > self.lat_max_ns:
            self.lat_max_ns = snap.lat_max_ns
        merge_hist(self.login_hist, snap.login_hist)
        if snap.login_lat_max_ns > self.login_lat_max_ns:
            self.login_lat_max_ns = snap.login_lat_max_ns
        view = self.workers[snap.worker]
        view.gauges = snap.gauges
        counts = [snap.counters[i] for i in self._rate_indices]
        view.rates = tuple(n / snap.dt if snap.dt > 0 else 0.0 for n in counts)
        view.hist = snap.hist
        view.lat_max_ns = snap.lat_max_ns
        view.login_hist = snap.login_hist
        view.login_lat_max_ns = snap.login_lat_max_ns
        if snap.final:
            view.done = True
            view.gauges = NO_GAUGES
        if not snap.final:
            self.seconds.add(snap)
            for name, value in zip(RATES, counts, strict=True):
                series = self.series_of[name]
                while len(series) < snap.seq:
                    series.append(0)
                series[snap.seq - 1] += value

    def worker_failed(self, worker: int, reason: str) -> None:
        """A worker process that died without its final snapshot."""
        view = self.workers[worker]
        view.failed = view.done = True
        view.gauges = NO_GAUGES
        self.details[f"worker:{reason}"] += 1

    # --- views for the dashboard and the report -------------------------------------
    def gauge(self, name: str) -> int:
        i = GAUGES.index(name)
        return sum(w.gauges[i] for w in self.workers)

    def rate_now(self, name: str) -> float:
        """A RATES counter per second, over the workers' last intervals."""
        i = RATES.index(name)
        return sum(w.rates[i] for w in self.workers if not w.done)

    @property
    def series(self) -> list[int]:
        """Verified echoes per interval number, summed over workers."""
        return self.series_of["echo_recv"]

    @property
    def echo_rate_now(self) -> float:
        return self.rate_now("echo_recv")

    @property
    def login_rate_now(self) -> float:
        return self.rate_now("login_flows")

    def latency_now_ms(self, login: bool = False) -> tuple[float, float, float]:
        """p50, p99, max of the workers' last intervals: echo round trips, or
        with ``login`` login flow times."""
        hist: dict[int, int] = {}
        lat_max = 0
        for w in self.workers:
            h = w.login_hist if login else w.hist
            if h:
                merge_hist(hist, h)
            lat_max = max(lat_max, w.login_lat_max_ns if login else w.lat_max_ns)
        p50, p99 = percentiles(hist, (0.5, 0.99))
        return p50, p99, lat_max / 1e6

    def latency_ms(self) -> dict[str, float]:
        return latency_summary(self.hist, self.lat_max_ns)

    def login_latency_ms(self) -> dict[str, float]:
        return latency_summary(self.login_hist, self.login_lat_max_ns)

    def refusals(self, prefix: str) -> dict[str, int]:
        """The details with ``prefix``, by the rest of their name: refused logins
        by Status name (LOGIN_SERVER_STATUS, GAME_LOGIN_STATUS), flows by game
        server (FLOW_TO)."""
        n = len(prefix)
        return {k[n:]: v for k, v in sorted(self.details.items()) if k.startswith(prefix)}

    @property
    def workers_failed(self) -> int:
        return sum(w.failed for w in self.workers)

    @property
    def errors_total(self) -> int:
        return sum(self.totals[name] for name in ERROR_COUNTERS) + self.workers_failed

    def errors(self) -> dict[str, int]:
        out = {name: self.totals[name] for name in ERROR_COUNTERS}
        out["worker_failed"] = self.workers_failed
        return out

    def state(self) -> dict[str, Any]:
        return {name: self.gauge(name) for name in GAUGES}
