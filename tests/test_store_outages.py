"""Account store outages and retries, through the public interface over really
broken connections: a TCP proxy (tests/tcp_proxy.py) between the store and
MariaDB that the test cuts before or in the middle of a statement, a SQLite
connection closed under the store and a database file that cannot be opened, a
locked SQLite file, and a private MariaDB that dies, hangs and restarts
(tests/private_mariadb.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import RawSql, ServerQuery, add_accounts, status_of
from private_mariadb import PrivateMariaDB, free_port
from serverlink.retry import Retry
from serverlink.store import (
    AccountStore,
    AdminStore,
    PoolLimits,
    StoreError,
    StoreUnavailable,
    open_admin_store,
    open_store,
)
from serverlink.store.admin import init_db, seed_db
from serverlink.store.driver import DEFAULT_POOL
from serverlink.store.url import MysqlTarget, SqliteTarget, parse_db_url
from tcp_proxy import CuttingProxy

# Statement texts as they travel to MariaDB (asyncmy binds parameters client-side).
SET_STATUS_7 = b"UPDATE status SET status = 7 WHERE accountno IN (1)"
SET_STATUS_IF = b"AND status IN ("


@pytest.fixture
async def mariadb_proxy(mariadb_server: MysqlTarget) -> AsyncIterator[CuttingProxy]:
    proxy = CuttingProxy(mariadb_server.host, mariadb_server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
def proxied_url(mariadb_url: str, mariadb_proxy: CuttingProxy) -> str:
    """``mariadb_url`` through ``mariadb_proxy`` (seed and check through
    ``mariadb_url`` itself, so that the proxy sees only the store under test)."""
    target = parse_db_url(mariadb_url)
    assert isinstance(target, MysqlTarget)
    return mariadb_url.replace(f":{target.port}/", f":{mariadb_proxy.port}/")


PROXIED_ACCOUNTS = 50


@pytest.fixture
async def proxied_store(mariadb_url: str, proxied_url: str) -> AsyncIterator[AccountStore]:
    """A connected store through ``mariadb_proxy`` on a database seeded with
    accounts 1..50, each with status 0."""
    await seed_db(mariadb_url, PROXIED_ACCOUNTS)
    async with open_store(proxied_url) as store:
        yield store


async def status_in_db(raw_sql: RawSql, url: str, account_no: int) -> int:
    rows = await raw_sql(url, "SELECT status FROM status WHERE accountno = %s", (account_no,))
    return int(rows[0][0])


# --- MariaDB: connections cut before or during a statement --------------------------


@pytest.mark.mariadb
async def test_mysql_statement_lost_on_its_way_is_retried_once_on_a_fresh_connection(
    proxied_store: AccountStore, mariadb_proxy: CuttingProxy, mariadb_url: str, raw_sql: RawSql
) -> None:
    connections = mariadb_proxy.accepted
    mariadb_proxy.cut_on(SET_STATUS_7, deliver=False)
    await proxied_store.set_status(1, 7)
    assert mariadb_proxy.cuts == 1
    assert mariadb_proxy.seen[SET_STATUS_7] == 2  # the lost attempt and one retry
    assert mariadb_proxy.accepted == connections + 1  # the retry's new connection
    assert await status_in_db(raw_sql, mariadb_url, 1) == 7


@pytest.mark.mariadb
async def test_mysql_update_applied_but_its_answer_lost_set_status_if_still_matches(
    proxied_store: AccountStore, mariadb_proxy: CuttingProxy, mariadb_url: str, raw_sql: RawSql
) -> None:
    # The server applies 0 -> 7; the retry finds 7 where it expected 0, and
    # counts it as its own (maybe applied) rather than someone else's.
    mariadb_proxy.cut_on(SET_STATUS_IF, deliver=True)
    assert await proxied_store.set_status_if(1, 0, 7) is True
    assert mariadb_proxy.cuts == 1
    assert mariadb_proxy.seen[SET_STATUS_IF] == 2
    assert await status_in_db(raw_sql, mariadb_url, 1) == 7
    # A row another server took meanwhile is still no match after such a loss.
    await raw_sql(mariadb_url, "UPDATE status SET status = 8 WHERE accountno = %s", (2,))
    mariadb_proxy.cut_on(SET_STATUS_IF, deliver=True)
    assert await proxied_store.set_status_if(2, 0, 7) is False
    assert await status_in_db(raw_sql, mariadb_url, 2) == 8


@pytest.mark.mariadb
async def test_mysql_connection_lost_twice_raises_store_unavailable_after_one_retry(
    proxied_store: AccountStore, mariadb_proxy: CuttingProxy, mariadb_url: str, raw_sql: RawSql
) -> None:
    mariadb_proxy.cut_on(SET_STATUS_7, deliver=False, times=2)
    with pytest.raises(StoreUnavailable, match="unavailable"):
        await proxied_store.set_status(1, 7)
    assert mariadb_proxy.seen[SET_STATUS_7] == 2  # one retry, no more
    await proxied_store.set_status(1, 7)  # the same store reconnects on the next call
    assert mariadb_proxy.seen[SET_STATUS_7] == 3
    assert await status_in_db(raw_sql, mariadb_url, 1) == 7


@pytest.mark.mariadb
async def test_mysql_errors_other_than_a_lost_connection_are_not_retried(
    proxied_store: AccountStore, mariadb_proxy: CuttingProxy, mariadb_url: str, raw_sql: RawSql
) -> None:
    await raw_sql(mariadb_url, "DROP TABLE status", ())
    mariadb_proxy.watch(SET_STATUS_7)
    with pytest.raises(StoreError) as info:
        await proxied_store.set_status(1, 7)
    assert not isinstance(info.value, StoreUnavailable)
    assert "serverlink db init" in str(info.value)
    assert mariadb_proxy.seen[SET_STATUS_7] == 1


@pytest.mark.mariadb
@pytest.mark.parametrize(
    "lost",
    [
        pytest.param(b"WHERE status IN (0, 7)", id="update-answer-lost"),
        pytest.param(b"SELECT accountno FROM status WHERE status = 7", id="read-back-lost"),
    ],
)
async def test_mysql_claim_statuses_retried_after_a_lost_answer_gives_the_same_claim(
    lost: bytes,
    proxied_store: AccountStore,
    mariadb_proxy: CuttingProxy,
    mariadb_url: str,
    raw_sql: RawSql,
) -> None:
    await raw_sql(mariadb_url, "UPDATE status SET status = 8 WHERE accountno = %s", (3,))
    mariadb_proxy.cut_on(lost, deliver=True)
    assert await proxied_store.claim_statuses([1, 2, 3], 7) == {1, 2}
    assert mariadb_proxy.seen[lost] == 2
    assert await proxied_store.get_statuses([1, 2, 3]) == {1: 7, 2: 7, 3: 8}


@pytest.mark.mariadb
async def test_mysql_batch_reads_and_writes_are_one_statement_each(
    proxied_store: AccountStore, mariadb_proxy: CuttingProxy
) -> None:
    numbers = list(range(1, PROXIED_ACCOUNTS + 1))
    mariadb_proxy.watch(b"SELECT", b"UPDATE")
    assert len(await proxied_store.get_accounts(numbers)) == PROXIED_ACCOUNTS
    await proxied_store.set_statuses(numbers, 7)
    assert await proxied_store.clear_statuses_if(numbers, 7) == PROXIED_ACCOUNTS
    assert mariadb_proxy.seen == {b"SELECT": 1, b"UPDATE": 2}


@pytest.mark.mariadb
async def test_mysql_connections_killed_by_the_server_next_call_succeeds(
    mariadb_url: str, mariadb_query: ServerQuery
) -> None:
    await seed_db(mariadb_url, 2)
    name = mariadb_url.rsplit("/", 1)[1]
    async with open_store(mariadb_url, pool=PoolLimits(min=2, max=2)) as store:
        await asyncio.gather(store.get_account(1), store.get_account(2))
        ids = await mariadb_query(
            "SELECT id FROM information_schema.processlist WHERE db = %s", (name,)
        )
        assert len(ids) >= 1
        for (connection_id,) in ids:
            await mariadb_query(f"KILL CONNECTION {int(connection_id)}", ())
        record = await store.get_account(2)
        assert record is not None and record.user_id == "ID_2"


# --- SQLite: a connection closed under the store, a file that cannot be opened ------


async def close_connection_under(store: AdminStore) -> None:
    """Close the store's own SQLite connection behind its back (as a crashed worker
    thread would leave it): its next statement fails with "Connection closed"."""
    conn = store.driver._conn  # type: ignore[attr-defined]
    assert conn is not None
    await conn.raw.close()


async def test_sqlite_connection_closed_under_the_store_is_reopened_for_the_retry(
    sqlite_url: str,
) -> None:
    await init_db(sqlite_url)
    async with open_admin_store(sqlite_url) as store:
        await add_accounts(store, 1)
        await close_connection_under(store)
        assert await store.set_status_if(1, 0, 7) is True
        assert await status_of(store, 1) == 7


async def test_sqlite_connection_closed_without_a_retry_is_store_unavailable(
    sqlite_url: str,
) -> None:
    await init_db(sqlite_url)
    async with open_admin_store(sqlite_url, retry=Retry(retries=0)) as store:
        await add_accounts(store, 1)
        await close_connection_under(store)
        with pytest.raises(StoreUnavailable, match="unavailable"):
            await store.set_status(1, 7)
        await store.set_status(1, 7)  # the broken connection was dropped: reopened
        assert await status_of(store, 1) == 7


async def test_sqlite_file_unopenable_after_a_lost_connection_then_back(tmp_path: Path) -> None:
    home = tmp_path / "db"
    home.mkdir()
    url = f"sqlite:///{home / 'accounts.db'}"
    await init_db(url)
    async with open_admin_store(url) as store:
        await add_accounts(store, 1)
        await close_connection_under(store)
        home.rename(tmp_path / "elsewhere")  # the retry cannot reopen it
        with pytest.raises(StoreUnavailable, match=r"unable to open.*does its directory exist"):
            await store.set_status(1, 7)
        (tmp_path / "elsewhere").rename(home)
        await store.set_status(1, 7)
        assert await status_of(store, 1) == 7


async def test_sqlite_errors_other_than_a_lost_connection_are_not_retried(
    sqlite_url: str, raw_sql: RawSql
) -> None:
    await init_db(sqlite_url)
    async with open_admin_store(sqlite_url) as store:
        await add_accounts(store, 1)
        # RAISE(FAIL) keeps what the statement did before: one row per attempt.
        await raw_sql(sqlite_url, "CREATE TABLE attempts (status INT)", ())
        await raw_sql(
            sqlite_url,
            "CREATE TRIGGER refuse BEFORE UPDATE ON status BEGIN "
            "INSERT INTO attempts VALUES (NEW.status); SELECT RAISE(FAIL, 'refused here'); END",
            (),
        )
        with pytest.raises(StoreError, match="refused here") as info:
            await store.set_status(1, 7)
        assert not isinstance(info.value, StoreUnavailable)
        assert await raw_sql(sqlite_url, "SELECT status FROM attempts", ()) == [(7,)]


# --- unreachable, locked, dead, hung ----------------------------------------------------


async def test_unreachable_mysql_raises_store_unavailable_quickly() -> None:
    store = open_store(f"mysql://root@127.0.0.1:{free_port()}/nothing", timeout=3.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable"):
        await store.get_account(1)
    assert time.monotonic() - started < 3.0
    await store.close()


async def test_sqlite_locked_database_raises_store_unavailable_within_timeout(
    sqlite_url: str,
) -> None:
    await seed_db(sqlite_url, 1)
    target = parse_db_url(sqlite_url)
    assert isinstance(target, SqliteTarget)
    async with open_store(sqlite_url, timeout=1.0) as store:
        locker = sqlite3.connect(target.path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.set_status(1, 7)
            assert time.monotonic() - started < 1.5
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await store.set_status(1, 7)  # usable again once the lock is gone
        assert await status_of(store, 1) == 7


async def test_sqlite_unopenable_file_raises_store_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    with pytest.raises(StoreUnavailable, match="unable to open"):
        await store.get_account(1)
    await store.close()


# --- a private MariaDB that dies, hangs and restarts (tests/private_mariadb.py) -------


TIMEOUT = 2.0


async def seeded_store(
    server: PrivateMariaDB, database: str, accounts: int, pool: PoolLimits = DEFAULT_POOL
) -> AccountStore:
    """A connected store (call timeout ``TIMEOUT``) on ``accounts`` seeded
    accounts in ``database`` of the private server."""
    url = server.url(database)
    await seed_db(url, accounts)
    store = open_store(url, timeout=TIMEOUT, pool=pool)
    await store.connect()
    return store


@pytest.mark.mariadb
async def test_mariadb_killed_raises_unavailable_then_same_store_recovers_after_restart(
    running_mariadb: PrivateMariaDB,
) -> None:
    store = await seeded_store(running_mariadb, "restart_a", 3, PoolLimits(min=2, max=4))
    before = await store.get_account(1)
    assert before is not None

    running_mariadb.kill()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.get_account(1)
    assert time.monotonic() - started < TIMEOUT + 0.5

    running_mariadb.start()
    assert running_mariadb.wait_ready(), running_mariadb.log_tail()
    assert await store.get_account(1) == before  # same store object, no restart
    await store.set_status(1, 9)
    assert await store.set_status_if(1, 9, 0) is True
    await store.close()


@pytest.mark.mariadb
async def test_mariadb_restart_unnoticed_next_call_succeeds(
    running_mariadb: PrivateMariaDB,
) -> None:
    store = await seeded_store(running_mariadb, "restart_b", 3, PoolLimits(min=3, max=4))
    # several idle pooled connections, all of which the restart breaks
    assert len(await asyncio.gather(*(store.get_account(n) for n in (1, 2, 3)))) == 3

    running_mariadb.kill()
    running_mariadb.start()
    assert running_mariadb.wait_ready(), running_mariadb.log_tail()

    for n in (1, 2, 3):  # every call succeeds: dead connections are discarded, not used
        record = await store.get_account(n)
        assert record is not None and record.user_id == f"ID_{n}"
    await store.close()


@pytest.mark.mariadb
async def test_mariadb_hung_server_times_out_then_recovers(
    running_mariadb: PrivateMariaDB,
) -> None:
    store = await seeded_store(running_mariadb, "hang", 1)
    running_mariadb.pause()  # SIGSTOP: the socket stays open, nothing answers
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="within"):
            await store.get_account(1)
        elapsed = time.monotonic() - started
        assert TIMEOUT - 0.1 <= elapsed < TIMEOUT + 0.5
    finally:
        running_mariadb.resume()
    record = await store.get_account(1)
    assert record is not None and record.user_id == "ID_1"
    await store.close()
