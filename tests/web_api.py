"""The account web API in this process, beside a login and a game server on
one database, and an HTTP client for it: shared by the web API tests and
the web-mode dummy tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from linked_system import System, start_system
from serverlink.store.config import StoreConfig
from serverlink.web.accounts import AccountApi, WebConfig


@dataclass
class WebSystem:
    system: System
    api: AccountApi
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"

    async def call(
        self, method: str, path: str, body: Any = None, data: bytes | None = None
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """One request: status, the JSON answer (None when there is none), the response."""
        async with self.http.request(method, self.base + path, json=body, data=data) as r:
            text = await r.text()
            return r.status, (await r.json() if text else None), r

    async def sign_up(self, user_id: str, password: str = "password1", nick: str = "") -> int:
        body = {"userid": user_id, "password": password, "nickname": nick or f"N{user_id}"}
        status, answer, _ = await self.call("POST", "/v1/accounts", body)
        assert status == 201, answer
        return int(answer["accountno"])

    async def sign_in(self, user_id: str, password: str = "password1") -> tuple[int, bytes]:
        body = {"userid": user_id, "password": password}
        status, answer, _ = await self.call("POST", "/v1/sessions", body)
        assert status == 200, answer
        return int(answer["accountno"]), answer["sessionkey"].encode()


@asynccontextmanager
async def web_system(
    db_url: str, tmp_path: Path, idle_timeout: float | None = None, **web: Any
) -> AsyncIterator[WebSystem]:
    """A seeded login and game server (one account), and the web API on the same
    database answering with the login server's address; ``web`` overrides WebConfig,
    ``idle_timeout`` the seconds a connection has to send a whole request."""
    system = await start_system(db_url, tmp_path / "keys.txt", 1)
    config = WebConfig(
        **{
            "port": 0,
            "store": StoreConfig(db_url),
            "login_port": system.login.port,
            **web,
        }
    )
    api = AccountApi(config)
    if idle_timeout is not None:
        api.idle_timeout = idle_timeout
    await api.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield WebSystem(system, api, http)
    finally:
        await api.stop()
        await system.stop()
