"""Settings of one dummy run: what the virtual clients do and how hard.

Plain data, picklable, so the parent process hands the same object to every
worker process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from serverlink.protocol.codec import NetCodec
from serverlink.servers.chat import DEFAULT_FLOOD_MESSAGES
from serverlink.servers.sectors import GRID_SIZE

#: --mode -> "module:class" of the scenario that a virtual client runs in that
#: mode (see worker.Scenario); imported on first use, so a worker process loads
#: only the scenario it runs.
SCENARIOS = {
    "echo": "serverlink.dummy.scenario_echo:EchoScenario",
    "login": "serverlink.dummy.scenario_login:LoginScenario",
    "chat": "serverlink.dummy.scenario_chat:ChatScenario",
}
MODES = tuple(SCENARIOS)


@dataclass(frozen=True, slots=True)
class DummyConfig:
    mode: str = "echo"
    game_host: str = "127.0.0.1"
    game_port: int = 12211
    clients: int = 100
    #: CS_GAME_REQ_ECHO kept in flight per client (the original's ECHO_OVERLAP);
    #: 0 = log in and only send heartbeats.
    echo_depth: int = 1
    #: Run length from the first connect; 0 = until stopped (Ctrl-C / stop event).
    seconds: float = 10.0
    #: Worker processes; 0 = auto (see resolve_processes).
    processes: int = 0
    #: Seconds between a client's connect and its login request.
    login_delay: float = 0.0
    #: Each second, each logged-in client leaves with this probability and then
    #: reconnects and logs in again.
    disconnect_rate: float = 0.0
    #: The initial connects are spread evenly over this many seconds.
    ramp_up: float = 0.0
    #: CS_GAME_REQ_LOGIN.Version
    version: int = 1
    codec: NetCodec = field(default_factory=NetCodec)
    #: Think time, seconds: a client waits this long after a reply before sending the
    #: request that replaces it (0: at once, the original's closed loop). Lets a
    #: connection-count test (10,000 clients) hold a steady, chosen load instead
    #: of saturating the machine, where latency is clients / throughput.
    echo_interval: float = 0.0
    #: Seconds: an echo reply slower than this is an error (the original's 500 ms).
    late: float = 0.5
    #: A login or echo reply missing for this long is an error; the client drops
    #: the connection and reconnects.
    reply_timeout: float = 5.0
    connect_timeout: float = 5.0
    #: Pause before reconnecting after a failure (connect refused, server closed
    #: the connection, protocol error), so a broken server is not hammered.
    reconnect_backoff: float = 1.0
    #: Heartbeat period of a logged-in client (the original's 30 s).
    heartbeat_interval: float = 30.0
    # --- login mode --------------------------------------------------------------
    #: The login server's client port; the game server address comes from its reply.
    login_host: str = "127.0.0.1"
    login_port: int = 8091
    #: Login servers besides login_host:login_port: each new flow goes to the
    #: next one in turn (round-robin), so clients spread over all of them.
    more_login_servers: tuple[tuple[str, int], ...] = ()
    #: ``accountno key`` lines (``serverlink db seed --keys-out``); worker i of P
    #: uses the accounts on lines i, i+P, i+2P, ... so no two share an account.
    keys_file: str | None = None
    #: Every client repeats the whole flow back to back: login server, game
    #: login, one echo, disconnect (login throughput).
    relogin: bool = False
    #: An account is handed out again only this long after its game connection
    #: closed: the game server writes the logout (status 0) that the login server
    #: checks once it has seen the close, and a login that overtook that write
    #: would be refused with Status GAME. With spare accounts (the rotation
    #: queue is FIFO) the account at the front has been free far longer; the
    #: flow rate is capped at accounts / delay (counter account_wait).
    account_reuse_delay: float = 0.5
    #: After a game server cut an account's session (it crashed or was killed),
    #: Status GAME for that account is waited out for this long (``account_locked``,
    #: not an error): the login server releases it after its --release-after (30 s).
    release_wait: float = 40.0
    # --- chat mode --------------------------------------------------------------
    #: The chat server (standalone). With ``keys_file`` the clients go through the
    #: login server instead, and its reply names the chat server.
    chat_host: str = "127.0.0.1"
    chat_port: int = 50000
    #: Each client sends a message this often (each from its own random start).
    message_interval: float = 1.0
    #: Each client moves to a random sector about this often; 0: never after the
    #: first move.
    move_interval: float = 5.0
    #: Every client in this one sector (x, y), never moving (crowd tests);
    #: None: random sectors.
    sector: tuple[int, int] | None = None
    #: Share of clients (0-1) that send hostile packets instead of playing fair.
    attack: float = 0.0
    #: The chat server's flood limit (its flood_messages per second): attackers
    #: flood past it; the others must stay under it.
    chat_flood_limit: int = DEFAULT_FLOOD_MESSAGES

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.clients < 1:
            raise ValueError(f"clients must be at least 1, got {self.clients}")
        if self.echo_depth < 0:
            raise ValueError(f"echo_depth must be 0 or more, got {self.echo_depth}")
        if not 0.0 <= self.disconnect_rate <= 1.0:
            raise ValueError(f"disconnect_rate must be 0-1, got {self.disconnect_rate}")
        if self.seconds < 0 or self.ramp_up < 0 or self.login_delay < 0:
            raise ValueError("seconds, ramp_up and login_delay must not be negative")
        if not 0 < self.game_port < 65536:
            raise ValueError(f"game_port must be 1-65535, got {self.game_port}")
        if self.processes < 0:
            raise ValueError(f"processes must be 0 (auto) or more, got {self.processes}")
        if not 0 < self.login_port < 65536:
            raise ValueError(f"login_port must be 1-65535, got {self.login_port}")
        if self.account_reuse_delay < 0:
            raise ValueError("account_reuse_delay must not be negative")
        if self.mode == "login" and not self.keys_file:
            raise ValueError("login mode needs a key file (--keys FILE, from db seed --keys-out)")
        if self.relogin and self.mode != "login":
            raise ValueError("relogin is a login mode option (--mode login)")
        self._check_chat()

    def _check_chat(self) -> None:
        if self.mode != "chat":
            if self.attack or self.sector is not None:
                raise ValueError("attack and sector are chat mode options (--mode chat)")
            return
        if not 0 < self.chat_port < 65536:
            raise ValueError(f"chat_port must be 1-65535, got {self.chat_port}")
        if self.message_interval <= 0 or self.move_interval < 0:
            raise ValueError("message_interval must be positive, move_interval not negative")
        if self.sector is not None and not all(0 <= v < GRID_SIZE for v in self.sector):
            raise ValueError(f"sector must be within the {GRID_SIZE} × {GRID_SIZE} grid")
        if not 0.0 <= self.attack <= 1.0:
            raise ValueError(f"attack must be a share of 0-1, got {self.attack}")
        if self.chat_flood_limit < 0:
            raise ValueError("chat_flood_limit must not be negative")
        # A fair client sends at most 1000 / interval + 1 messages in a second;
        # one more of margin for arrival jitter, and it must stay under the limit.
        if self.chat_flood_limit and 1 / self.message_interval + 2 > self.chat_flood_limit:
            raise ValueError(
                f"message_interval {self.message_interval:g} s could take a fair client "
                f"past the chat server's flood limit ({self.chat_flood_limit} a second)"
            )

    @property
    def game_address(self) -> str:
        return f"{self.game_host}:{self.game_port}"

    @property
    def login_address(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.login_servers)

    @property
    def login_servers(self) -> tuple[tuple[str, int], ...]:
        return ((self.login_host, self.login_port), *self.more_login_servers)

    @property
    def chat_address(self) -> str:
        return f"{self.chat_host}:{self.chat_port}"

    @property
    def through_login_server(self) -> bool:
        """Login mode, and chat mode with a key file."""
        return self.mode == "login" or (self.mode == "chat" and self.keys_file is not None)

    @property
    def target(self) -> str:
        """Where the clients connect first: the login server, when they go through it."""
        if self.through_login_server:
            return self.login_address
        return self.chat_address if self.mode == "chat" else self.game_address


#: Below this many clients one process generates the load comfortably.
AUTO_PROCESSES_MIN_CLIENTS = 100


def resolve_processes(config: DummyConfig) -> int:
    """Worker processes for a run: the configured number, or with 0 (auto) one
    process for small runs and up to min(cpu count, 4) for large ones; never more
    processes than clients. One Python process tops out near one core's worth of
    echoes, so a large run against a fast server needs more than one."""
    n = config.processes
    if n == 0:
        if config.clients < AUTO_PROCESSES_MIN_CLIENTS:
            n = 1
        else:
            n = min(os.cpu_count() or 1, 4, config.clients // (AUTO_PROCESSES_MIN_CLIENTS // 2))
    return max(1, min(n, config.clients))
