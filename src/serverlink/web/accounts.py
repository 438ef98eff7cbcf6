"""The account web API (``serverlink web``): sign-up and sign-in over HTTP JSON
that issue the session keys a player gives the login server.

    POST   /v1/accounts  {userid, password, nickname}  201 {accountno}
    POST   /v1/sessions  {userid, password}            200 {accountno, sessionkey,
                                                            login_server, expires_in}
    DELETE /v1/sessions  {accountno, sessionkey}       204
    GET    /openapi.json, /docs, /healthz

A key is written to ``sessionkey`` with an expiry (``key_ttl``, by the
database's clock) and, with a key store, there too with that time-to-live; the
login server takes it until then and once (``LoginServer._spend_key``). Signing
in again replaces the key.

Every answer that is not a success is ``{"error": {"code", "message"}}`` with a
stable code (``openapi.ERROR_CODES``); the middleware turns anything else
(aiohttp's own 404/405/413, a database down, a bug) into one, so no traceback
reaches a client. scrypt runs on a thread pool of its own (one thread per CPU:
it is CPU and 16 MiB each), never on the event loop; past ``max_pending_hashes``
waiting, requests are answered 503 busy rather than queued without end.

Wrong credentials are one answer, whatever was wrong, and take the same time:
an unknown userid is verified against a dummy hash of the same cost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from aiohttp import web

from serverlink.errors import StartupError
from serverlink.monitor.latency import LatencyHistogram
from serverlink.store import StoreError
from serverlink.store.admin import new_session_key
from serverlink.store.base import SignInStore, UserIdTaken
from serverlink.store.config import StoreConfig
from serverlink.store.keys import KeyStore, KeyStoreUnavailable, open_key_store
from serverlink.store.passwords import HASH_LENGTH, hash_password, verify_password
from serverlink.store.url import mask_url
from serverlink.web.http import Handler, HttpServer
from serverlink.web.openapi import OPENAPI, docs_page
from serverlink.web.rules import (
    FieldError,
    RateLimit,
    check_nickname,
    check_password,
    check_userid,
    text_field,
)

log = logging.getLogger("serverlink.web")

T = TypeVar("T")

#: aiohttp's own refusals, by status, as the API's codes.
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


@dataclass(frozen=True, slots=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    store: StoreConfig = field(default_factory=StoreConfig)
    #: Also put each issued key in this key store (redis://...) with its time-to-live.
    key_store: str | None = None
    #: Seconds an issued key works at the login server (once).
    key_ttl: float = 600.0
    #: The login server's client address, given with each key.
    login_host: str = "127.0.0.1"
    login_port: int = 8091
    #: Bytes of a request body at most (413 beyond).
    max_body: int = 1024
    #: Sign-ins, and sign-ups, per client address within ``rate_window`` (0: no limit).
    rate_limit_address: int = 30
    #: Sign-ins, and sign-ups, per userid within ``rate_window`` (0: no limit).
    rate_limit_userid: int = 10
    rate_window: float = 60.0
    #: Password hashes waiting for the thread pool at most (503 busy beyond).
    max_pending_hashes: int = 256
    #: Set by the worker pool that runs it (the demo): the port it reserved.
    reuse_port: bool = False


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, a stable ``code``, a message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


class Limits:
    """The per-address and per-userid limits of one endpoint."""

    def __init__(self, config: WebConfig) -> None:
        self.by_address = RateLimit(config.rate_limit_address, config.rate_window)
        self.by_userid = RateLimit(config.rate_limit_userid, config.rate_window)

    @staticmethod
    def check(limit: RateLimit, key: str) -> None:
        wait = limit.retry_after(key, time.monotonic())
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests: try again in {wait} s",
                {"Retry-After": str(wait)},
            )


class AccountApi(HttpServer):
    name = "web"
    #: Rate limits are counted in this process.
    max_workers: ClassVar[int | None] = 1

    def __init__(
        self,
        config: WebConfig,
        store: SignInStore | None = None,
        key_store: KeyStore | None = None,
    ) -> None:
        self.config = config
        self.store = store or _sign_in_store(config.store)
        self.key_store = key_store if key_store is not None else _open_key_store(config.key_store)
        self.signup_limits = Limits(config)
        self.signin_limits = Limits(config)
        self.hashing = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="scrypt")
        self.pending_hashes = 0
        #: scrypt runs (hashes and verifications), the dummy's included.
        self.hashes = 0
        self.dummy_hash = ""
        self.counts: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        #: The server's own failures: a database that does not answer, a bug.
        self.errors: Counter[str] = Counter()
        self.signin_times = LatencyHistogram()
        app = web.Application(middlewares=[self.api_errors], client_max_size=config.max_body)
        app.router.add_post("/v1/accounts", self.sign_up)
        app.router.add_post("/v1/sessions", self.sign_in)
        app.router.add_delete("/v1/sessions", self.sign_out)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/docs", self.docs)
        app.router.add_get("/healthz", self.healthz)
        super().__init__(app, config.host, config.port, config.reuse_port)

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.store.connect()
        except StoreError as exc:
            await self.store.close()
            raise StartupError(f"account database {self.store.display_url}: {exc}") from None
        # What an unknown userid is verified against: the same cost as a real one.
        self.dummy_hash = await self._hash(hash_password, new_session_key())
        try:
            await super().start()
        except BaseException:
            await self.store.close()
            raise

    async def stop(self) -> None:
        await super().stop()
        await self.store.close()
        if self.key_store is not None:
            await self.key_store.close()
        self.hashing.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> str:
        """The start line's words; they end with the account database, as every
        server's do."""
        host, port = self.config.login_host, self.config.login_port
        shown = mask_url(self.config.key_store or "")
        store = f"; keys also in the key store {shown}" if self.key_store else ""
        return (
            f"account web API (docs at /docs); keys for the login server at {host}:{port} "
            f"live {self.config.key_ttl:g} s{store}; accounts in {self.store.display_url}"
        )

    # --- plumbing ---------------------------------------------------------------------------
    @web.middleware
    async def api_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.counts["requests"] += 1
        try:
            return await handler(request)
        except ApiError as exc:
            self.refused[exc.code] += 1
            if exc.status == 400:  # a malformed request: one line
                log.info("%s %s from %s: %s", request.method, request.path, _peer(request), exc)
            return error_response(exc.status, exc.code, str(exc), exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = HTTP_CODES.get(exc.status, "bad_request")
            self.refused[code] += 1
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_response(exc.status, code, exc.reason, headers)
        except (StoreError, KeyStoreUnavailable) as exc:
            self.errors["unavailable"] += 1
            log.warning("%s %s: %s", request.method, request.path, exc)
            return error_response(503, "unavailable", "a database of the service does not answer")
        except Exception as exc:
            self.errors["internal_error"] += 1
            log.exception("%s %s: internal error (%s)", request.method, request.path, exc)
            return error_response(500, "internal_error", "internal error")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()  # 413 past client_max_size
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "invalid_json", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the body is not a JSON object")
        return body

    async def _hash(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` (scrypt) on the hashing threads; 503 when too many wait."""
        if self.pending_hashes >= self.config.max_pending_hashes:
            raise ApiError(503, "busy", "too many sign-ins at once", {"Retry-After": "1"})
        self.pending_hashes += 1
        self.hashes += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.hashing, work, *args)
        finally:
            self.pending_hashes -= 1

    # --- the API ------------------------------------------------------------------------
    async def sign_up(self, request: web.Request) -> web.Response:
        Limits.check(self.signup_limits.by_address, _peer(request))
        body = await self._body(request)
        try:
            user_id = check_userid(text_field(body, "userid"))
            nickname = check_nickname(text_field(body, "nickname"))
            password = check_password(text_field(body, "password"))
        except FieldError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        Limits.check(self.signup_limits.by_userid, user_id.lower())
        userpass = await self._hash(hash_password, password)
        try:
            account_no = await self.store.create_account(user_id, userpass, nickname)
        except UserIdTaken:
            raise ApiError(409, "userid_taken", "this userid is taken") from None
        self.counts["signups"] += 1
        return web.json_response({"accountno": account_no}, status=201)

    async def sign_in(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        Limits.check(self.signin_limits.by_address, _peer(request))
        body = await self._body(request)
        try:
            user_id, password = text_field(body, "userid"), text_field(body, "password")
        except FieldError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        Limits.check(self.signin_limits.by_userid, user_id.lower())
        found = await self.store.find_userpass(user_id)
        # One path for every failure: an unknown userid, or an account without a
        # usable password, is verified against the dummy hash (same cost).
        usable = found is not None and len(found[1].strip()) == HASH_LENGTH
        stored = found[1] if found is not None and usable else self.dummy_hash
        matched = await self._hash(verify_password, password, stored)
        if not (matched and usable and found is not None):
            self.counts["signin_failures"] += 1
            raise ApiError(401, "wrong_credentials", "wrong userid or password")
        account_no, key, ttl = found[0], new_session_key(), self.config.key_ttl
        await self.store.issue_key(account_no, key, ttl)
        if self.key_store is not None:
            await self.key_store.put(account_no, key.encode(), ttl)
        self.counts["signins"] += 1
        self.signin_times.add(time.perf_counter() - started)
        host, port = self.config.login_host, self.config.login_port
        return web.json_response(
            {
                "accountno": account_no,
                "sessionkey": key,
                "login_server": f"{host}:{port}",
                "expires_in": ttl,
            }
        )

    async def sign_out(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        account_no, key = body.get("accountno"), body.get("sessionkey")
        if type(account_no) is not int or not isinstance(key, str):
            raise ApiError(400, "invalid_request", "accountno (integer) and sessionkey required")
        revoked = await self.store.revoke_key(account_no, key.encode("utf-8", "replace"))
        if not revoked:
            raise ApiError(401, "invalid_session", "not the account's current session key")
        if self.key_store is not None:
            await self.key_store.take(account_no, key.encode("utf-8", "replace"))
        self.counts["signouts"] += 1
        return web.Response(status=204)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def docs(self, request: web.Request) -> web.Response:
        return web.Response(text=docs_page(), content_type="text/html")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    # --- monitor ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        rate_limited = sum(
            limit.refused
            for limits in (self.signup_limits, self.signin_limits)
            for limit in (limits.by_address, limits.by_userid)
        )
        return {
            **{name: self.counts[name] for name in ("requests", "signups", "signins")},
            "signin_failures": self.counts["signin_failures"],
            "signouts": self.counts["signouts"],
            "rate_limited": rate_limited,
            "pending_hashes": self.pending_hashes,
            # Answers other than success by code: what clients got wrong, mostly
            # (not the server's errors: a demo's second run meets its accounts, 409).
            "refused": dict(self.refused),
            "errors": dict(self.errors),
            **self.signin_times.snapshot("signin_time"),
        }


def _peer(request: web.Request) -> str:
    return request.remote or "?"


def _sign_in_store(config: StoreConfig) -> SignInStore:
    store = config.open()
    assert isinstance(store, SignInStore)  # the one SQL store implements every interface
    return store


def _open_key_store(url: str | None) -> KeyStore | None:
    """The key store at ``url``, its scope ``login`` (the keys for the login
    server, beside those it puts for the game and chat servers)."""
    return open_key_store(url).scoped("login") if url is not None else None


def build_web_server(config: WebConfig) -> AccountApi:
    """Builder of the account web API (module level, as the runner wants)."""
    return AccountApi(config)
