"""The account web API over real HTTP, with its keys taken by a real login
server and game server over sockets, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from linked_system import game_login, login_request
from serverlink.protocol.status import GameLoginStatus, LoginStatus
from serverlink.store.keys import open_key_store
from serverlink.web.openapi import ERROR_CODES
from web_api import WebSystem, web_system


@pytest.fixture
async def web(db_url: str, tmp_path: Path) -> AsyncIterator[WebSystem]:
    async with web_system(db_url, tmp_path) as w:
        yield w


def error_code(answer: Any) -> str:
    assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message"}, answer
    code: str = answer["error"]["code"]
    assert any(code in codes for codes in ERROR_CODES.values()), code
    return code


async def test_sign_up_sign_in_then_login_and_game_with_the_key(web: WebSystem) -> None:
    account_no = await web.sign_up("alice", nick="Alice A")
    status, answer, _ = await web.call(
        "POST", "/v1/sessions", {"userid": "alice", "password": "password1"}
    )
    assert status == 200
    assert answer["accountno"] == account_no and len(answer["sessionkey"]) == 64
    assert answer["login_server"] == f"127.0.0.1:{web.system.login.port}"
    key = answer["sessionkey"].encode()
    reply, _ = await login_request(web.system.login.port, account_no, key)
    assert (reply.Status, reply.ID, reply.Nickname) == (LoginStatus.OK, "alice", "Alice A")
    game, _ = await game_login(reply.GameServerPort, account_no, key)
    assert game.Status == GameLoginStatus.OK


async def test_silent_and_trickling_connections_are_closed_and_others_served(
    db_url: str, tmp_path: Path
) -> None:
    async with web_system(db_url, tmp_path, idle_timeout=1.0) as web:
        silent, silent_out = await asyncio.open_connection("127.0.0.1", web.api.port)
        trickling, trickling_out = await asyncio.open_connection("127.0.0.1", web.api.port)
        trickling_out.write(b"POST /v1/sessions HTTP/1.1\r\n")

        async def drip() -> None:  # a header line every 0.2 s: never a whole request
            with contextlib.suppress(OSError):
                while True:
                    trickling_out.write(b"X-Slow: 1\r\n")
                    await asyncio.sleep(0.2)  # the hostile peer's pace, not synchronisation

        dripping = asyncio.get_running_loop().create_task(drip())
        try:
            assert await web.sign_up("dave")  # served while both hold their connections
            async with asyncio.timeout(5):
                assert await silent.read() == b""  # closed by the server
                assert await trickling.read() == b""
        finally:
            dripping.cancel()
            silent_out.close()
            trickling_out.close()


async def test_a_taken_userid_is_409(web: WebSystem) -> None:
    await web.sign_up("bob")
    body = {"userid": "BOB", "password": "password2", "nickname": "other"}
    status, answer, _ = await web.call("POST", "/v1/accounts", body)
    assert status == 409 and error_code(answer) == "userid_taken"


async def test_wrong_password_and_unknown_user_are_one_answer_and_one_hash(
    web: WebSystem,
) -> None:
    await web.sign_up("carol")
    answers = []
    for user_id in ("carol", "nobody"):
        hashes = web.api.hashes
        status, answer, _ = await web.call(
            "POST", "/v1/sessions", {"userid": user_id, "password": "wrong-one"}
        )
        # An unknown userid costs one scrypt verification too (the dummy hash).
        assert web.api.hashes == hashes + 1
        answers.append((status, answer))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401 and error_code(answers[0][1]) == "wrong_credentials"


async def test_a_second_sign_in_replaces_the_key(web: WebSystem) -> None:
    account_no = await web.sign_up("dave")
    _, first = await web.sign_in("dave")
    _, second = await web.sign_in("dave")
    assert first != second
    reply, _ = await login_request(web.system.login.port, account_no, first)
    assert reply.Status == LoginStatus.FAIL
    reply, _ = await login_request(web.system.login.port, account_no, second)
    assert reply.Status == LoginStatus.OK


async def test_a_key_works_once_at_the_login_server(web: WebSystem) -> None:
    account_no = await web.sign_up("erin")
    _, key = await web.sign_in("erin")
    reply, _ = await login_request(web.system.login.port, account_no, key)
    assert reply.Status == LoginStatus.OK
    reply, _ = await login_request(web.system.login.port, account_no, key)
    assert reply.Status == LoginStatus.SESSION_MISS  # spent: no key any more


async def test_two_logins_at_once_with_one_key_one_is_refused(web: WebSystem) -> None:
    account_no = await web.sign_up("frank")
    _, key = await web.sign_in("frank")
    port = web.system.login.port
    replies = await asyncio.gather(*(login_request(port, account_no, key) for _ in range(2)))
    statuses = sorted(reply.Status for reply, _ in replies)
    assert statuses == sorted([LoginStatus.OK, LoginStatus.FAIL])
    assert web.system.login.login_stats.keys_reused == 1


async def test_an_expired_key_is_a_wrong_key(db_url: str, tmp_path: Path) -> None:
    async with web_system(db_url, tmp_path, key_ttl=0.2) as web:
        account_no = await web.sign_up("gina")
        _, key = await web.sign_in("gina")
        await asyncio.sleep(0.3)  # the time-to-live itself: nothing to await but time
        reply, _ = await login_request(web.system.login.port, account_no, key)
        assert reply.Status == LoginStatus.FAIL
        assert web.system.login.login_stats.keys_expired == 1


async def test_sign_out_revokes_the_key(web: WebSystem) -> None:
    account_no = await web.sign_up("hank")
    _, key = await web.sign_in("hank")
    body = {"accountno": account_no, "sessionkey": key.decode()}
    status, _, _ = await web.call("DELETE", "/v1/sessions", body)
    assert status == 204
    status, answer, _ = await web.call("DELETE", "/v1/sessions", body)
    assert status == 401 and error_code(answer) == "invalid_session"
    reply, _ = await login_request(web.system.login.port, account_no, key)
    assert reply.Status != LoginStatus.OK


async def test_sign_ins_past_the_address_limit_are_429(db_url: str, tmp_path: Path) -> None:
    async with web_system(db_url, tmp_path, rate_limit_address=2) as web:
        await web.sign_up("ivan")
        await web.sign_in("ivan")
        await web.sign_in("ivan")
        status, answer, response = await web.call(
            "POST", "/v1/sessions", {"userid": "ivan", "password": "password1"}
        )
        assert status == 429 and error_code(answer) == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_sign_ins_and_sign_ups_past_the_userid_limit_are_429(
    db_url: str, tmp_path: Path
) -> None:
    async with web_system(db_url, tmp_path, rate_limit_address=0, rate_limit_userid=1) as web:
        await web.sign_up("judy")
        body = {"userid": "JUDY", "password": "password1", "nickname": "again"}
        status, answer, _ = await web.call("POST", "/v1/accounts", body)
        assert status == 429 and error_code(answer) == "rate_limited"
        await web.sign_in("judy")
        status, answer, _ = await web.call(
            "POST", "/v1/sessions", {"userid": "judy", "password": "password1"}
        )
        assert status == 429 and error_code(answer) == "rate_limited"


@pytest.mark.parametrize(
    ("body", "data", "status", "code"),
    [
        (None, b"x" * 2000, 413, "body_too_large"),
        (None, b"{not json", 400, "invalid_json"),
        (None, b"[1, 2]", 400, "invalid_json"),
        (None, b"[" * 500 + b"]" * 500, 400, "invalid_json"),
        ({"userid": "kim"}, None, 400, "invalid_request"),
        ({"userid": "kim", "password": 5, "nickname": "K"}, None, 400, "invalid_request"),
        (
            {"userid": "k" * 20, "password": "password1", "nickname": "K"},
            None,
            400,
            "invalid_userid",
        ),
        ({"userid": "k m", "password": "password1", "nickname": "K"}, None, 400, "invalid_userid"),
        ({"userid": "kim", "password": "short", "nickname": "K"}, None, 400, "invalid_password"),
        # 10 characters outside the BMP are 20 UTF-16 units: one too many.
        (
            {"userid": "kim", "password": "password1", "nickname": "\U0001f600" * 10},
            None,
            400,
            "invalid_nickname",
        ),
        (
            {"userid": "kim", "password": "password1", "nickname": "a\nb"},
            None,
            400,
            "invalid_nickname",
        ),
    ],
)
async def test_oversized_and_malformed_sign_ups_are_json_errors(
    web: WebSystem, body: Any, data: bytes | None, status: int, code: str
) -> None:
    got, answer, _ = await web.call("POST", "/v1/accounts", body, data)
    assert (got, error_code(answer)) == (status, code)
    assert web.api.snapshot()["signups"] == 0


async def test_names_at_the_protocol_limit_reach_the_login_server_whole(web: WebSystem) -> None:
    nick = "\u00e9" * 19  # 19 UTF-16 units: the most a WCHAR[20] field carries
    account_no = await web.sign_up("u" * 19, nick=nick)
    _, key = await web.sign_in("u" * 19)
    reply, _ = await login_request(web.system.login.port, account_no, key)
    assert (reply.ID, reply.Nickname) == ("u" * 19, nick)


async def test_other_paths_and_methods_are_json_errors(web: WebSystem) -> None:
    status, answer, _ = await web.call("GET", "/nothing")
    assert status == 404 and error_code(answer) == "not_found"
    status, answer, response = await web.call("PUT", "/v1/sessions", {})
    assert status == 405 and error_code(answer) == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


async def test_openapi_describes_every_endpoint_and_docs_show_them(web: WebSystem) -> None:
    status, spec, _ = await web.call("GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {"/v1/accounts", "/v1/sessions"}
    assert set(spec["paths"]["/v1/sessions"]) == {"post", "delete"}
    async with web.http.get(web.base + "/docs") as r:
        page = await r.text()
    assert r.status == 200 and "DELETE /v1/sessions" in page and "/openapi.json" in page


async def test_a_key_store_gets_each_key_with_its_time_to_live(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    keys = open_key_store(redis_url).scoped("login")
    try:
        async with web_system(sqlite_url, tmp_path, key_store=redis_url, key_ttl=0.3) as web:
            account_no = await web.sign_up("kate")
            _, first = await web.sign_in("kate")
            _, second = await web.sign_in("kate")
            assert not await keys.take(account_no, first)  # replaced by the second sign-in
            assert await keys.take(account_no, second)
            _, third = await web.sign_in("kate")
            await asyncio.sleep(0.4)  # past the time-to-live: nothing to await but time
            assert not await keys.take(account_no, third)
    finally:
        await keys.close()


async def test_a_database_that_does_not_answer_is_503_json(web: WebSystem) -> None:
    await web.api.store.close()  # every later store call fails at once
    status, answer, _ = await web.call(
        "POST", "/v1/sessions", {"userid": "lena", "password": "password1"}
    )
    assert status == 503 and error_code(answer) == "unavailable"
    assert "Traceback" not in answer["error"]["message"]
    assert web.api.snapshot()["errors"] == {"unavailable": 1}
