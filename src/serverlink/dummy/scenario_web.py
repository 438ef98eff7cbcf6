"""Web mode: a player's whole way in, over the account web API first.

One flow of a virtual client:

1. take a free account of the worker's (``AccountPool``, as login mode); the
   first time, sign it up (POST /v1/accounts; 409 is an account of an earlier
   run with the same ``web_user_prefix``, signed in to as well);
2. sign in (POST /v1/sessions) for a fresh session key; the request's time
   (HTTP round trip, the server's scrypt included) goes to the web latency
   histogram. Any other answer, or none within ``web_timeout``, is ``web_fail``
   with its detail ``web:<endpoint>:<code>``;
3. with that key, login mode's flow (``LoginScenario._flow``): the login server
   the answer names, then the game server, echoes (with ``relogin``: one, then
   the next flow, so every flow signs in again).

The key works once at the login server, so every flow needs its sign-in: the
web API's rate limits must allow the run (``serverlink web --rate-limit-address
0`` for a load test from one address). No server code runs here: the dummy
speaks HTTP and the protocol like any client.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import aiohttp

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.keys import Account, AccountPool
from serverlink.dummy.metrics import BUCKET_NS, WEB_FAILURE
from serverlink.dummy.scenario_login import (
    GameClient,
    LoginScenario,
    ReloginClient,
    ServerAddresses,
)
from serverlink.protocol.packets import CS_GAME_REQ_LOGIN, CS_LOGIN_REQ_LOGIN

if TYPE_CHECKING:
    from serverlink.dummy.worker import VirtualClient, Worker

_clock = time.monotonic_ns

#: The password of every dummy account (test accounts of a load test).
PASSWORD = "dummy-password"


class WebAccount(Account):
    """An account of the web API: its userid, and the key of its last sign-in."""

    __slots__ = ("signed_up", "user_id", "version")

    def __init__(self, user_id: str, version: int) -> None:
        super().__init__(0, b"\0" * 64, version)
        self.user_id = user_id
        self.version = version
        self.signed_up = False

    def use_key(self, account_no: int, key: bytes) -> None:
        """The account number and key of a sign-in: the flow's two requests."""
        self.no, self.key = account_no, key
        self.login_request = CS_LOGIN_REQ_LOGIN.build(account_no, key)
        self.game_request = CS_GAME_REQ_LOGIN.build(account_no, key, self.version)


class WebScenario(LoginScenario):
    """Sign up once, sign in over HTTP, then login mode's flow with the key."""

    def __init__(self, worker: Worker) -> None:  # no key file: LoginScenario's is not run
        cfg = worker.config
        self.worker = worker
        # As login mode: one account per client, two with relogin so that an
        # account's last session has closed before it is used again.
        count = len(worker.clients) * (2 if cfg.relogin else 1)
        if cfg.web_seeded_password is None:
            prefix = f"{cfg.web_user_prefix}{worker.index}x"
            user_ids = [f"{prefix}{i}" for i in range(count)]
        else:  # worker i of P: ID_(i+1), ID_(i+1+P), ... (disjoint, as login mode's keys)
            numbers = range(worker.index + 1, count * worker.processes + 1, worker.processes)
            user_ids = [f"ID_{n}" for n in numbers][:count]
        self.password = cfg.web_seeded_password or PASSWORD
        accounts = [WebAccount(user_id, cfg.version) for user_id in user_ids]
        for account in accounts:
            account.signed_up = cfg.web_seeded_password is not None
        self.accounts = AccountPool(accounts, cfg.account_reuse_delay, worker.meter)
        self.game_client = ReloginClient if cfg.relogin else GameClient
        self.addresses = ServerAddresses()
        self.url = cfg.web_url.rstrip("/")
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=cfg.web_timeout),
        )
        self._login_server = ""

    @staticmethod
    def preflight(config: DummyConfig) -> None:
        """Nothing to read beforehand (LoginScenario's checks the key file)."""

    async def run_once(self, client: VirtualClient) -> bool:
        account = await self.accounts.take()
        try:
            assert isinstance(account, WebAccount)
            if not await self._sign_in(account):
                return True
            return await self._flow(client, account)
        finally:
            self.accounts.give_back(account)

    async def close(self) -> None:
        await self.http.close()

    # --- the web API --------------------------------------------------------------------------
    async def _sign_in(self, account: WebAccount) -> bool:
        meter = self.worker.meter
        credentials = {"userid": account.user_id, "password": self.password}
        if not account.signed_up:
            status, _ = await self._post(
                "signup", "/v1/accounts", {**credentials, "nickname": account.user_id}
            )
            if status == 201:
                meter.web_signups += 1
            elif status != 409:
                return False
            account.signed_up = True
        started = _clock()
        status, answer = await self._post("signin", "/v1/sessions", credentials)
        if status != 200:
            return False
        try:
            account_no, key = int(answer["accountno"]), str(answer["sessionkey"]).encode()
            self._follow(str(answer["login_server"]))
        except (KeyError, TypeError, ValueError):
            meter.error("web_fail", f"{WEB_FAILURE}signin:bad_answer")
            return False
        elapsed = _clock() - started
        meter.web_signins += 1
        meter.web_lat_max_ns = max(meter.web_lat_max_ns, elapsed)
        hist = meter.web_hist
        bucket = elapsed // BUCKET_NS
        hist[bucket] = hist.get(bucket, 0) + 1
        account.use_key(account_no, key)
        return True

    async def _post(self, what: str, path: str, body: dict[str, str]) -> tuple[int, Any]:
        """Status and JSON answer of one request; a failure is counted, with the
        answer's error code (status 0: no answer)."""
        meter = self.worker.meter
        try:
            async with self.http.post(self.url + path, json=body) as response:
                answer = await response.json(content_type=None)
                status = response.status
        except TimeoutError:
            meter.error("web_fail", f"{WEB_FAILURE}{what}:timeout")
            return 0, None
        except (aiohttp.ClientError, ValueError) as exc:
            meter.error("web_fail", f"{WEB_FAILURE}{what}:{type(exc).__name__}")
            return 0, None
        if status not in (200, 201, 409):
            # Whatever the answer holds: a code when it is the API's error shape.
            error = answer.get("error") if isinstance(answer, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            meter.error(
                "web_fail", f"{WEB_FAILURE}{what}:{code if isinstance(code, str) else status}"
            )
        return status, answer

    def _follow(self, login_server: str) -> None:
        """Go to the login server the web API names (parsed when it changes)."""
        if login_server == self._login_server:
            return
        host, _, port = login_server.rpartition(":")
        self.worker.login_addresses = [(host.strip("[]"), int(port))]
        self._login_server = login_server
