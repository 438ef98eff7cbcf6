"""Shared fixtures.

Account database
----------------
``db_url`` is parametrised over both engines: a SQLite file under ``tmp_path``, and
a fresh database on the MariaDB server at ``SERVERLINK_TEST_MARIADB`` (default
``mysql://root@127.0.0.1:3306``; the ``mariadb`` marker). Each MariaDB test gets its
own database ``serverlink_test_<pid>_<random>``, which is *not* created (``init``
does that) and is dropped afterwards, so parallel runs never share one and
``accountdb`` is never touched. When the server cannot be reached the MariaDB
variants are skipped with the reason, unless ``SERVERLINK_TEST_REQUIRE_MARIADB=1`` (then
they fail). CI runs ``.ci/services.sh`` first.

``store`` is an ``AdminStore`` on ``db_url`` with the schema created; ``raw_sql``
runs SQL straight through the driver (``%s`` placeholders on both engines) to build
rows the store API cannot make; ``mariadb_query`` runs SQL on the shared server
outside any test database (information_schema, ...). ``add_accounts`` seeds
accounts ``ID_n`` / ``NICK_n`` with key ``session_key(n)`` and status 0;
``status_of`` reads one back through the store.

Key store
---------
``redis_url`` is a ``--key-store`` URL on the Redis server at ``SERVERLINK_TEST_REDIS``
(default ``redis://127.0.0.1:6379/0``) with a namespace of its own per test (its keys
are deleted afterwards); skipped with the reason when Redis does not answer, unless
``SERVERLINK_TEST_REQUIRE_REDIS=1`` (then it fails). ``private_redis`` is a throwaway
``redis-server`` of the test's own that it may stop and start.

``run_sync`` runs a coroutine from sync code (e.g. a click ``CliRunner`` test).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncmy
import pytest

from linked_system import System, start_login, start_system
from private_mariadb import PrivateMariaDB
from private_redis import PrivateRedis
from serverlink.servers.chat import ChatServer
from serverlink.servers.login import LoginServer
from serverlink.store import AccountStore, AdminStore, SeedAccount, open_admin_store
from serverlink.store.admin import init_db
from serverlink.store.url import MysqlTarget, SqliteTarget, parse_db_url

T = TypeVar("T")

REDIS_SERVER = os.environ.get("SERVERLINK_TEST_REDIS", "redis://127.0.0.1:6379/0")
MARIADB_SERVER = os.environ.get("SERVERLINK_TEST_MARIADB", "mysql://root@127.0.0.1:3306")

Rows = list[tuple[Any, ...]]
RawSql = Callable[[str, str, Sequence[object]], Awaitable[Rows]]
ServerQuery = Callable[[str, Sequence[object]], Awaitable[Rows]]
RunSync = Callable[[Coroutine[Any, Any, Any]], Any]


def run_coro_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private event loop in a helper thread, so that
    sync fixtures and tests can use async drivers whether or not a loop is running."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="run_coro_sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def mysql_connect_kwargs(target: MysqlTarget, database: str | None = None) -> dict[str, Any]:
    return {
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "password": target.password,
        "db": database,
        "autocommit": True,
        "connect_timeout": 5,
    }


async def mysql_query(
    target: MysqlTarget, sql: str, params: Sequence[object] = (), database: str | None = None
) -> list[tuple[Any, ...]]:
    conn = await asyncmy.connect(**mysql_connect_kwargs(target, database))
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql, tuple(params))
            return [tuple(r) for r in await cur.fetchall()]
    finally:
        conn.close()


def _server_target() -> MysqlTarget:
    target = parse_db_url(MARIADB_SERVER.rstrip("/") + "/mysql")
    assert isinstance(target, MysqlTarget)
    return target


@pytest.fixture(scope="session")
def mariadb_server() -> MysqlTarget:
    """The shared MariaDB server, checked once per session (skips if unreachable)."""
    target = _server_target()
    try:
        run_coro_sync(mysql_query(target, "SELECT 1"))
    except Exception as exc:
        reason = (
            f"MariaDB not usable at {target.host}:{target.port} as {target.user!r} "
            f"({' '.join(str(exc).split())}); run .ci/services.sh"
        )
        if os.environ.get("SERVERLINK_TEST_REQUIRE_MARIADB") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return target


@pytest.fixture
def mariadb_url(mariadb_server: MysqlTarget) -> Iterator[str]:
    """URL of a fresh, not yet created, database on the shared server; dropped after."""
    name = f"serverlink_test_{os.getpid()}_{secrets.token_hex(4)}"
    t = mariadb_server
    auth = t.user + (f":{t.password}" if t.password else "")
    yield f"mysql://{auth}@{t.host}:{t.port}/{name}"
    run_coro_sync(mysql_query(t, f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The shared Redis server, checked once per session (skips if unreachable)."""
    import redis

    client = redis.Redis.from_url(REDIS_SERVER, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        reason = f"Redis not usable at {REDIS_SERVER} ({exc}); run .ci/services.sh"
        if os.environ.get("SERVERLINK_TEST_REQUIRE_REDIS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        client.close()
    return REDIS_SERVER


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A key store URL with a namespace of this test's own; its keys deleted after."""
    import redis

    namespace = f"test-{os.getpid()}-{secrets.token_hex(4)}"
    yield f"{redis_server}?namespace={namespace}"
    client = redis.Redis.from_url(redis_server)
    try:
        names = list(client.scan_iter(f"{namespace}:*"))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'accounts.db'}"  # absolute path: sqlite:////...


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    """A database URL for each engine (see the module docstring)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[AdminStore]:
    """A connected store on ``db_url`` with the schema created."""
    await init_db(db_url)
    async with open_admin_store(db_url, timeout=5.0) as s:
        yield s


def session_key(n: int) -> str:
    return f"{n:064d}"


async def add_accounts(store: AdminStore, *numbers: int) -> None:
    await store.upsert_accounts(
        [SeedAccount(n, f"ID_{n}", f"NICK_{n}", session_key(n)) for n in numbers]
    )


async def status_of(store: AccountStore, account_no: int) -> int | None:
    record = await store.get_account(account_no)
    assert record is not None
    return record.status


async def raw_sql_exec(url: str, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on ``url`` through the bare driver; rows (if any)."""
    target = parse_db_url(url)
    if isinstance(target, SqliteTarget):
        conn = sqlite3.connect(target.path, isolation_level=None)
        try:
            return [tuple(r) for r in conn.execute(sql.replace("%s", "?"), tuple(params))]
        finally:
            conn.close()
    return await mysql_query(target, sql, params, database=target.database)


@pytest.fixture
def raw_sql() -> RawSql:
    """``await raw_sql(url, sql, params)``: see ``raw_sql_exec``."""
    return raw_sql_exec


@pytest.fixture
def mariadb_query(mariadb_server: MysqlTarget) -> ServerQuery:
    """``await mariadb_query(sql, params)`` on the shared server, no database selected."""

    async def query(sql: str, params: Sequence[object] = ()) -> Rows:
        return await mysql_query(mariadb_server, sql, params)

    return query


@pytest.fixture
def run_sync() -> RunSync:
    """``run_sync(coro)``: see ``run_coro_sync``."""
    return run_coro_sync


# --- a private MariaDB for outage tests (tests/private_mariadb.py) ----------------


@pytest.fixture(scope="session")
def private_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path_factory.mktemp("mariadb"))
    server.install()
    server.start()
    try:
        if not server.wait_ready():
            pytest.skip(f"private mariadbd did not start: {server.log_tail()}")
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_mariadb(private_mariadb: PrivateMariaDB) -> PrivateMariaDB:
    """The private server, (re)started if an earlier test left it down."""
    if private_mariadb.proc is None or private_mariadb.proc.poll() is not None:
        private_mariadb.start()
    assert private_mariadb.wait_ready(), private_mariadb.log_tail()
    return private_mariadb


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A throwaway redis-server a test stops and starts (tests/private_redis.py)."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        if not server.wait_ready():
            pytest.skip("redis-server did not start")
        yield server
    finally:
        server.stop()


Systems = Callable[..., Awaitable[System]]


@pytest.fixture
async def systems(tmp_path: Path) -> AsyncIterator[Systems]:
    """``await systems(url, accounts, games=1, **game_options)``: a seeded login
    server with linked game servers (``linked_system.start_system``), stopped
    after the test."""
    started: list[System] = []

    async def start(url: str, accounts: int, **options: Any) -> System:
        keys = tmp_path / f"keys{len(started)}.txt"
        system = await start_system(url, keys, accounts, **options)
        started.append(system)
        return system

    yield start
    for system in reversed(started):
        await system.stop()


Logins = Callable[..., Awaitable[LoginServer]]


@pytest.fixture
async def chat() -> AsyncIterator[ChatServer]:
    """A standalone chat server of the default configuration on a free port."""
    from chat_clients import start_chat

    server = await start_chat()
    yield server
    await server.stop()


@pytest.fixture
async def logins() -> AsyncIterator[Logins]:
    """``await logins(url, **config)``: a login server on ``url`` (schema created),
    stopped after the test."""
    started: list[LoginServer] = []

    async def start(url: str, **options: Any) -> LoginServer:
        await init_db(url)
        login = await start_login(url, **options)
        started.append(login)
        return login

    yield start
    for login in reversed(started):
        await login.stop()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition that has no event to await (server-side state)."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def http_request(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    """One HTTP request to a server's port on loopback: its status and body."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()
