"""Login mode: the linked ("systemlink") flow of PROTOCOL.md, as a client does it.

One flow of a virtual client:

1. take a free account (AccountNo, key) from the worker's ``AccountPool``;
2. connect to the login server, send CS_LOGIN_REQ_LOGIN, read
   CS_LOGIN_RES_LOGIN. The server closes the connection after its reply: that
   close is expected. A Status other than OK is an error counted by name
   (``login_server:FAIL``, ``login_server:NOSERVER``, ...);
3. connect to the reply's GameServerIP/Port and send CS_GAME_REQ_LOGIN with the
   same key. Its reply completes the flow: the time from step 2's connect goes
   to the login latency histogram. A refusal is counted by name
   (``game_login:FAIL``, ...);
4. echo exactly as echo mode does (``EchoClient``: K requests in flight, every
   reply verified) until the client leaves (``disconnect_rate``) or, with
   ``relogin``, right after one echo;
5. once the game connection is fully closed the account goes to the back of
   the free queue, and the client starts again at 1.

Still closing: the game server writes an account's logout (status 0) after it
has seen the close, and the login server refuses the account (Status GAME)
until then. The free queue's ``account_reuse_delay`` covers that write
normally; under heavy load it may not. So Status GAME for an account whose game
session *this dummy* closed less than ``reply_timeout`` ago is not an error but
``account_busy``: the account goes back to the queue and the client takes the
next one. Past ``reply_timeout`` (or for an account this run never had in game)
GAME is an error: the status was left set (the bug the issue's prototype had).

Per flow this costs two connects and a handful of small packets; nothing here
runs per echo (the echo hot path is EchoClient's, unchanged).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.keys import Account, AccountPool, check_key_count, keys_of, load_keys
from serverlink.dummy.metrics import BUCKET_NS, FLOW_TO, GAME_LOGIN_STATUS, LOGIN_SERVER_STATUS
from serverlink.dummy.scenario_echo import CLEAN_ENDS, EchoClient
from serverlink.dummy.scenario_echo import LOGIN_SENT as GAME_LOGIN_SENT
from serverlink.dummy.worker import ScenarioSession
from serverlink.net.session import SessionDeps
from serverlink.protocol.packets import (
    CS_LOGIN_RES_LOGIN,
    decode_wstr,
)
from serverlink.protocol.status import GameLoginStatus, LoginStatus

if TYPE_CHECKING:
    from serverlink.dummy.worker import VirtualClient, Worker

_clock = time.monotonic_ns
_RES = CS_LOGIN_RES_LOGIN.struct
_RES_SIZE = CS_LOGIN_RES_LOGIN.size
_RES_TYPE = CS_LOGIN_RES_LOGIN.type_bytes

# LoginServerClient states.
CONNECTED, REQUEST_SENT, ANSWERED, CLOSED = range(4)

#: ``done`` results of a LoginServerClient that got its reply (BUSY: Status GAME
#: for an account still closing, see the module docstring).
OK, REFUSED, BUSY = "ok", "refused", "busy"

#: Distinct game server addresses a worker keeps decoded (a real deployment
#: has a handful; the cap only bounds what a broken server could make us keep).
_ADDRESS_CACHE_MAX = 64


def _status_name(enum: type[LoginStatus] | type[GameLoginStatus], status: int) -> str:
    try:
        return enum(status).name
    except ValueError:
        return f"status_{status}"


class LoginServerClient(ScenarioSession):
    """One connection to the login server: one request, one reply."""

    __slots__ = (
        "_sent_at",
        "account",
        "account_no",
        "chat_ip",
        "chat_port",
        "game_ip",
        "game_port",
        "nickname",
        "release_wait",
        "state",
        "timeout_ns",
        "user_id",
    )

    error_prefix = "login_server_"

    def __init__(self, deps: SessionDeps, worker: Worker, account: Account) -> None:
        super().__init__(deps, worker)
        cfg = worker.config
        self.account = account
        self.account_no = account.no
        self.state = CONNECTED
        self.timeout_ns = int(cfg.reply_timeout * 1e9)
        self.release_wait = cfg.release_wait
        # ``done``: OK / REFUSED once the reply is in; a close reason if it never came.
        #: From an OK reply, as sent (WCHAR fields raw): ID, Nickname, the game
        #: and chat servers' addresses.
        self.user_id = self.nickname = b""
        self.game_ip = self.chat_ip = b""
        self.game_port = self.chat_port = 0
        self._sent_at = 0

    # --- ClientLink ------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return False

    def outstanding(self) -> int:
        return 1 if self.state == REQUEST_SENT else 0

    def check(self, now_ns: int) -> None:
        if self.state == REQUEST_SENT and now_ns - self._sent_at > self.timeout_ns:
            self.meter.error("login_timeout", "login_server:timeout")
            self.abort("login_timeout")

    def finish(self, now_ns: int) -> None:
        # The run ends in the middle of flows. A login is an error only past
        # reply_timeout (there is no "late" login), at the end as during the run:
        # with hundreds of flows in flight a reply may well take over late.
        if self.state == REQUEST_SENT and now_ns - self._sent_at > self.timeout_ns:
            self.meter.error("login_timeout", "login_server:no_reply_at_end")

    def leave(self) -> None:
        # Only logged-in (game) connections leave on purpose.
        pass

    # --- the exchange ----------------------------------------------------------------------
    def send_request(self) -> None:
        if self.closed or self.transport is None:
            return
        self.state = REQUEST_SENT
        self._sent_at = _clock()
        self.transport.write(self.framing.encode(self.account.login_request))

    def dispatch(self, payloads: list[bytes]) -> None:
        # The reply of one request: no handler table, the whole exchange is here.
        if self.state != REQUEST_SENT or len(payloads) > 1:
            # One reply per request, and nothing after it.
            self.fail("unexpected_packet")
            return
        p = payloads[0]
        if p[:2] != _RES_TYPE:
            self.fail("unexpected_type")
            return
        if len(p) != _RES_SIZE:
            self.fail("bad_size")
            return
        # Nothing is decoded here: the flow decodes the address it follows.
        _, account_no, status, user_id, nickname, game_ip, game_port, chat_ip, chat_port = (
            _RES.unpack(p)
        )
        if account_no != self.account_no:
            self.fail("wrong_account")
            return
        self.state = ANSWERED
        if status == LoginStatus.OK:
            self.meter.login_server_ok += 1
            self.user_id, self.nickname = user_id, nickname
            self.game_ip, self.game_port = game_ip, game_port
            self.chat_ip, self.chat_port = chat_ip, chat_port
            result = OK
        elif status == LoginStatus.GAME and self._still_closing():
            self.meter.account_busy += 1
            result = BUSY
        elif status == LoginStatus.GAME and self._cut_recently():
            self.meter.account_locked += 1
            result = BUSY
        else:
            name = _status_name(LoginStatus, status)
            self.meter.error("login_server_fail", LOGIN_SERVER_STATUS + name)
            result = REFUSED
        # The server closes the connection next (expected, see on_close); the
        # flow goes on at once rather than waiting for that close.
        if not self.done.done():
            self.done.set_result(result)

    def _still_closing(self) -> bool:
        """Our own last game session of this account ended less than
        reply_timeout ago: its logout may not be written yet."""
        left = self.account.left_game_at
        return left is not None and self.worker.loop.time() - left < self.timeout_ns / 1e9

    def _cut_recently(self) -> bool:
        """The account's last game session was cut by its server less than
        release_wait ago: the login server has not released it yet."""
        cut = self.account.cut_at
        return cut is not None and self.worker.loop.time() - cut < self.release_wait

    def server_closed(self, reason: str) -> None:
        # After the reply the server's close is the protocol; before it, an error.
        if self.state != ANSWERED:
            self.meter.error("disconnect_server", f"disconnect:{reason}_in_login_server")

    def on_close(self) -> None:
        super().on_close()
        self.state = CLOSED


class GameClient(EchoClient):
    """The game server connection of a login flow: EchoClient, plus the flow's
    completion time and refusals counted by Status name."""

    __slots__ = ("_echoed", "account", "flow_started", "flow_to")
    #: ``relogin``: one echo at most (ReloginClient).
    one_echo: ClassVar[bool] = False

    def __init__(
        self,
        deps: SessionDeps,
        worker: Worker,
        account: Account,
        flow_started: int,
        flow_to: str = "",
    ) -> None:
        super().__init__(deps, worker, account.no)
        self.account = account
        self.flow_started = flow_started
        #: The detail counting a completed flow by its game server (FLOW_TO...).
        self.flow_to = flow_to
        self._echoed = False
        if self.one_echo:
            self.depth = min(self.depth, 1)

    def login_refused(self, status: int) -> None:
        self.meter.error("login_fail", GAME_LOGIN_STATUS + _status_name(GameLoginStatus, status))

    def server_closed(self, reason: str) -> None:
        # The game server went away: its claim on the account stays until the
        # login server releases it (see LoginServerClient._cut_recently).
        self.meter.error("server_lost", f"server_lost:{reason}_in_{self.phase}")
        self.account.cut_at = self.worker.loop.time()

    def finish(self, now_ns: int) -> None:
        # A game login cut off by the end of the run: as LoginServerClient.finish.
        if self.state == GAME_LOGIN_SENT:
            if now_ns - self._login_at > self.timeout_ns:
                self.meter.error("login_timeout", "game_login:no_reply_at_end")
            return
        super().finish(now_ns)

    def logged_in_at(self, now: int) -> None:
        self.account.cut_at = None
        meter = self.meter
        meter.login_flows += 1
        if self.flow_to:
            meter.details[self.flow_to] += 1
        lat = now - self.flow_started
        if lat > meter.login_lat_max_ns:
            meter.login_lat_max_ns = lat
        hist = meter.login_hist
        bucket = lat // BUCKET_NS
        hist[bucket] = hist.get(bucket, 0) + 1


class ReloginClient(GameClient):
    """``relogin``: log in, one echo (none with echo_depth 0), disconnect."""

    __slots__ = ()
    one_echo = True

    def logged_in_at(self, now: int) -> None:
        super().logged_in_at(now)
        if not self.depth:
            self.close("relogin")

    def _send_echoes(self, n: int, now: int) -> None:
        # Called once at login (send the one echo), then once its reply has been
        # verified by EchoClient.data_received: that is the end of this flow.
        if self._echoed:
            self.close("relogin")
            return
        self._echoed = True
        super()._send_echoes(n, now)


class LoginScenario:
    """Login server -> game server -> echo; see the module docstring."""

    def __init__(self, worker: Worker) -> None:
        cfg = worker.config
        assert cfg.keys_file is not None  # DummyConfig checks it in login mode
        self.worker = worker
        keys = keys_of(worker.index, worker.processes, load_keys(cfg.keys_file))
        self.accounts = AccountPool(
            [Account(no, key, cfg.version) for no, key in keys],
            cfg.account_reuse_delay,
            worker.meter,
        )
        self.game_client = ReloginClient if cfg.relogin else GameClient
        self.addresses = ServerAddresses()

    @staticmethod
    def preflight(config: DummyConfig) -> None:
        """The key file is readable, well formed and has enough accounts
        (KeyFileError, a ValueError with a one-line message)."""
        assert config.keys_file is not None
        check_key_count(config, len(load_keys(config.keys_file)))

    async def run_once(self, client: VirtualClient) -> bool:
        account = await self.accounts.take()
        try:
            return await self._flow(client, account)
        finally:
            self.accounts.give_back(account)

    async def _flow(self, client: VirtualClient, account: Account) -> bool:
        worker = self.worker
        meter = worker.meter
        started = _clock()
        login, failed = await ask_login_server(worker, client, account)
        if login is None:
            return failed
        address = self.addresses.get(login.game_ip, login.game_port)
        if address is None:
            meter.error("packet_error", "packet:login_server_no_game_address")
            return True
        flow_to = f"{FLOW_TO}{address[0]}:{address[1]}"

        # --- game server ---
        meter.in_game += 1
        try:
            game = await worker.connect(
                address,
                lambda deps: self.game_client(deps, worker, account, started, flow_to),
                "game",
                failure="server_lost",  # the server it was sent to is gone
            )
            if game is None:
                return True
            client.link = game
            try:
                game.send_login_payload(account.game_request)
                # Set in on_close: the connection is fully closed, so the account
                # can go back to the queue.
                reason = await game.done
            finally:
                client.link = None
                # Even a game login cut short may have marked it in game.
                account.left_game_at = worker.loop.time()
        finally:
            meter.in_game -= 1
            if not login.closed:
                # The login server should have closed it long ago.
                login.abort("flow_done")
        return reason not in CLEAN_ENDS


async def ask_login_server(
    worker: Worker, client: VirtualClient, account: Account
) -> tuple[LoginServerClient | None, bool]:
    """Step 2 of a flow: the login server's OK reply (the connection, closed
    or closing), or None and whether that was a failure (a refusal, a lost
    connection; BUSY is none: the client goes on with the next free account)."""
    meter = worker.meter
    meter.in_login += 1
    try:
        login = await worker.connect(
            worker.next_login_address(),
            lambda deps: LoginServerClient(deps, worker, account),
            "login_server",
        )
        if login is None:
            return None, True
        client.link = login
        try:
            login.send_request()
            outcome = await login.done
        finally:
            client.link = None
    finally:
        meter.in_login -= 1
    if outcome != OK:
        return None, outcome not in CLEAN_ENDS and outcome != BUSY
    return login, False


class ServerAddresses:
    """Server addresses of login replies (an IP as its raw WCHAR field, a port)
    as connect addresses, decoded once per distinct value."""

    def __init__(self) -> None:
        self._decoded: dict[tuple[bytes, int], tuple[str, int] | None] = {}

    def get(self, ip_field: bytes, port: int) -> tuple[str, int] | None:
        """None for an empty address (no server of that kind linked)."""
        entry = (ip_field, port)
        try:
            return self._decoded[entry]
        except KeyError:
            pass
        host = decode_wstr(ip_field)
        address = (host, port) if host and port else None
        if len(self._decoded) < _ADDRESS_CACHE_MAX:
            self._decoded[entry] = address
        return address
