"""The monitoring figures: what each kind of server reports to the monitoring
server (PROTOCOL.md's DataType table), and how a serverlink server's figures
come from its ``snapshot()``.

A ``Kind`` is one row group of the table: its default ServerNo (1 login, 2
game, 3 chat; 0 the machine and the monitoring server itself), its history
table (``hardware``, ``login``, ``battle``, ``chat``, as the original's
``status_server`` database) and its ``Figure``s. A figure is a DataType, a
column/metric name, what it means for a Python server, and a ``read``
function of one second's ``Reading`` (snapshot, per-second rates of its
counters, the processes' CPU and memory). The first figure of each kind is
its "on" lamp, which the monitoring server turns to 0 when the server stops
reporting.

"Packet buffers" and the loop rates are the C++ servers' internals; the
Python figures that stand in for them are named in each figure's ``help``
(and in the README's table, written from these definitions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: The original tool's ServerNo values.
MACHINE_NO, LOGIN_NO, GAME_NO, CHAT_NO = 0, 1, 2, 3
I32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Reading:
    """One second of one server: what its figures are read from."""

    snapshot: Mapping[str, Any]
    rates: Mapping[str, float]
    #: CPU of its processes, % of the whole machine (all cores = 100).
    cpu_percent: float = 0.0
    memory_bytes: int = 0

    def rate(self, key: str) -> float:
        return self.rates.get(key, 0.0)

    def value(self, key: str) -> float:
        found = self.snapshot.get(key, 0)
        return float(found) if isinstance(found, int | float) else 0.0


@dataclass(frozen=True, slots=True)
class Figure:
    data_type: int
    #: History column and Prometheus metric name (serverlink_monitor_<name>).
    name: str
    label: str
    unit: str
    #: What the figure is for a serverlink server.
    help: str
    read: Read

    def value(self, reading: Reading) -> int:
        """The DataValue: an int, clamped to the wire's i32."""
        return max(-I32_MAX - 1, min(I32_MAX, round(self.read(reading))))


#: How a figure is read from one second of its server.
Read = Callable[[Reading], float]


def snap(key: str) -> Read:
    return lambda r: r.value(key)


def per_s(*keys: str) -> Read:
    return lambda r: sum(r.rate(k) for k in keys)


def minus(key: str, other: str) -> Read:
    return lambda r: max(0.0, r.value(key) - r.value(other))


def const(n: float) -> Read:
    return lambda r: n


def cpu(r: Reading) -> float:
    return r.cpu_percent


def memory_mb(r: Reading) -> float:
    return r.memory_bytes / 2**20


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    server_no: int
    #: Its table in the history database.
    table: str
    figures: tuple[Figure, ...]
    #: DataTypes relayed but neither charted nor stored (removed in the original).
    unused: frozenset[int] = frozenset()

    @property
    def on(self) -> Figure:
        return self.figures[0]

    def figure(self, data_type: int) -> Figure | None:
        return next((f for f in self.figures if f.data_type == data_type), None)

    def accepts(self, data_type: int) -> bool:
        return data_type in self.unused or self.figure(data_type) is not None

    def values(self, reading: Reading) -> list[tuple[int, int]]:
        """(DataType, DataValue) of every figure for one second."""
        return [(f.data_type, f.value(reading)) for f in self.figures]


def _server_figures(first: int) -> tuple[Figure, ...]:
    """on / CPU / memory / packet buffers: the first four figures of every server kind."""
    return (
        Figure(
            first, "server_on", "on", "", "1 while the server reports; 0 once it stopped", const(1)
        ),
        Figure(first + 1, "cpu", "CPU", "%", "CPU of its processes, % of the whole machine", cpu),
        Figure(first + 2, "memory", "memory", "MB", "resident memory of its processes", memory_mb),
        Figure(
            first + 3,
            "packet_pool",
            "send buffers",
            "bytes",
            "bytes waiting in its sessions' send buffers (the C++ server's packet pool use)",
            snap("queued_bytes"),
        ),
    )


MACHINE = Kind(
    "machine",
    MACHINE_NO,
    "hardware",
    (
        Figure(13, "monitor_on", "monitor on", "", "1: the monitoring server runs", const(1)),
        Figure(1, "cpu_total", "machine CPU", "%", "CPU of the whole machine", snap("cpu_total")),
        Figure(2, "memory_available", "available memory", "MB", "", snap("memory_available")),
        Figure(3, "net_recv", "network in", "bytes/s", "all interfaces", snap("net_recv")),
        Figure(4, "net_send", "network out", "bytes/s", "all interfaces", snap("net_send")),
        Figure(
            5,
            "nonpaged",
            "kernel memory",
            "MB",
            "kernel memory that cannot be swapped (Linux: slab)",
            snap("nonpaged"),
        ),
        Figure(14, "monitor_cpu", "monitor CPU", "%", "the monitoring server's CPU", cpu),
        Figure(15, "machine_cpu", "machine CPU", "%", "as DataType 1", snap("cpu_total")),
        Figure(16, "monitor_memory", "monitor memory", "MB", "its resident memory", memory_mb),
        Figure(
            17,
            "monitor_buffers",
            "tool send buffers",
            "bytes",
            "bytes waiting in the send buffers of the monitoring tools",
            snap("queued_bytes"),
        ),
        Figure(
            19,
            "login_servers",
            "login servers on",
            "",
            "login servers reporting (the original master's matchmaking count)",
            snap("login_servers"),
        ),
        Figure(
            22,
            "game_servers",
            "game servers on",
            "",
            "game servers reporting (the original master's battle count)",
            snap("game_servers"),
        ),
    ),
)

LOGIN = Kind(
    "login",
    LOGIN_NO,
    "login",
    (
        *_server_figures(6),
        Figure(10, "sessions", "sessions", "", "client connections", snap("sessions")),
        Figure(
            11,
            "players",
            "players",
            "",
            "clients whose login request is being handled",
            snap("authenticated"),
        ),
        Figure(
            12, "logins_per_s", "logins/s", "/s", "logins completed (Status 1)", per_s("logins")
        ),
    ),
)

GAME = Kind(
    "game",
    GAME_NO,
    "battle",
    (
        *_server_figures(24),
        Figure(
            28,
            "auth_per_s",
            "logins handled/s",
            "/s",
            "game logins answered per second (the C++ auth thread's loop rate)",
            per_s("logins", "login_fail"),
        ),
        Figure(
            29,
            "game_per_s",
            "packets handled/s",
            "/s",
            "packets handled per second (the C++ game thread's loop rate)",
            per_s("packets_in"),
        ),
        Figure(30, "sessions", "sessions", "", "client connections", snap("sessions")),
        Figure(
            31,
            "sessions_auth",
            "not logged in",
            "",
            "connections that have not logged in yet",
            minus("sessions", "authenticated"),
        ),
        Figure(32, "players", "players", "", "clients logged in", snap("authenticated")),
        Figure(34, "rooms_wait", "rooms waiting", "", "0: an echo server has no rooms", const(0)),
        Figure(35, "rooms_play", "rooms playing", "", "0: an echo server has no rooms", const(0)),
    ),
    unused=frozenset({33}),
)

#: The chat server's snapshot keys read here: sessions, players (logged in),
#: messages_in and deliveries (counters), queued_bytes.
CHAT = Kind(
    "chat",
    CHAT_NO,
    "chat",
    (
        *_server_figures(36),
        Figure(40, "sessions", "sessions", "", "client connections", snap("sessions")),
        Figure(41, "players", "players", "", "clients logged in", snap("players")),
        Figure(
            42,
            "messages_queued",
            "deliveries/s",
            "/s",
            "message frames queued for receivers per second (one per receiver)",
            per_s("deliveries"),
        ),
        Figure(
            43,
            "messages_per_s",
            "messages/s",
            "/s",
            "chat messages handled per second",
            per_s("messages_in"),
        ),
    ),
)

KINDS: tuple[Kind, ...] = (MACHINE, LOGIN, GAME, CHAT)
KIND_BY_NAME: Mapping[str, Kind] = {k.name: k for k in KINDS}
#: The server kinds (those that report over the LAN port).
SERVER_KINDS: tuple[Kind, ...] = (LOGIN, GAME, CHAT)
_BY_TYPE: Mapping[int, Kind] = {f.data_type: k for k in SERVER_KINDS for f in k.figures}
_BY_NO: Mapping[int, Kind] = {k.server_no: k for k in SERVER_KINDS}


def kind_of(server_no: int, data_type: int | None = None) -> Kind | None:
    """The kind of a server: by its ServerNo when it is one of the kinds' own
    (1, 2, 3), else by the DataTypes it sends (several servers of one kind
    report under other numbers)."""
    kind = _BY_NO.get(server_no)
    if kind is None and data_type is not None:
        kind = _BY_TYPE.get(data_type) or (GAME if data_type in GAME.unused else None)
    return kind


def kind_named(name: str) -> Kind:
    """The kind of a server command (``login``, ``game``, ``chat``)."""
    kind = KIND_BY_NAME.get(name)
    if kind is None or kind is MACHINE:
        raise ValueError(f"no monitoring figures for a {name!r} server")
    return kind
