"""Account store: both engines (SQLite file, real MariaDB), the URL rules, the
``serverlink db`` commands, passwords, and a MariaDB that dies, hangs and restarts
under a live store (a private throwaway ``mariadbd``)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from asyncmy import errors as asyncmy_errors
from click.testing import CliRunner

from private_mariadb import PrivateMariaDB, free_port
from serverlink.retry import ExponentialBackoff, Retry
from serverlink.store import (
    DEFAULT_DB_URL,
    AccountRecord,
    AccountStore,
    AdminStore,
    DatabaseUrlError,
    SeedAccount,
    StoreError,
    StoreUnavailable,
    hash_password,
    open_admin_store,
    open_store,
    parse_db_url,
    verify_password,
)
from serverlink.store.admin import init_db, new_session_key, seed_db
from serverlink.store.base import MAX_BATCH
from serverlink.store.cli import db_group
from serverlink.store.url import MysqlTarget, SqliteTarget

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{64}$")

# Fixture types (see conftest.py)
Rows = list[tuple[Any, ...]]
RawSql = Callable[[str, str, Sequence[object]], Awaitable[Rows]]
ServerQuery = Callable[[str, Sequence[object]], Awaitable[Rows]]
RunSync = Callable[[Coroutine[Any, Any, Any]], Any]


def key(n: int) -> str:
    return f"{n:064d}"


async def add_accounts(store: AdminStore, *numbers: int) -> None:
    await store.upsert_accounts([SeedAccount(n, f"ID_{n}", f"NICK_{n}", key(n)) for n in numbers])


# --- get_account -------------------------------------------------------------------


async def test_get_account_returns_full_account(store: AdminStore) -> None:
    await add_accounts(store, 1, 2, 3)
    assert await store.get_account(2) == AccountRecord(2, "ID_2", "NICK_2", key(2).encode(), 0)


async def test_get_account_unknown_account_is_none(store: AdminStore) -> None:
    await add_accounts(store, 1)
    assert await store.get_account(999) is None


async def test_get_account_without_sessionkey_row(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1)
    await raw_sql(db_url, "DELETE FROM sessionkey WHERE accountno = %s", (1,))
    assert await store.get_account(1) == AccountRecord(1, "ID_1", "NICK_1", None, 0)


async def test_get_account_without_status_row(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1)
    await raw_sql(db_url, "DELETE FROM status WHERE accountno = %s", (1,))
    assert await store.get_account(1) == AccountRecord(1, "ID_1", "NICK_1", key(1).encode(), None)


async def test_get_account_null_sessionkey(store: AdminStore, db_url: str, raw_sql: RawSql) -> None:
    await add_accounts(store, 1)
    await raw_sql(db_url, "UPDATE sessionkey SET sessionkey = NULL WHERE accountno = %s", (1,))
    assert await raw_sql(db_url, "SELECT COUNT(*) FROM sessionkey WHERE accountno = %s", (1,)) == [
        (1,)
    ]
    assert await store.get_account(1) == AccountRecord(1, "ID_1", "NICK_1", None, 0)


# --- statuses ----------------------------------------------------------------------


async def status_of(store: AccountStore, account_no: int) -> int | None:
    record = await store.get_account(account_no)
    assert record is not None
    return record.status


async def test_set_status_changes_only_that_account(store: AdminStore) -> None:
    await add_accounts(store, 1, 2)
    await store.set_status(1, 7)
    assert await status_of(store, 1) == 7
    assert await status_of(store, 2) == 0


async def test_set_status_does_not_create_a_missing_status_row(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1)
    await raw_sql(db_url, "DELETE FROM status WHERE accountno = %s", (1,))
    await store.set_status(1, 7)
    assert await status_of(store, 1) is None


async def test_set_status_if_matching_sets_and_returns_true(store: AdminStore) -> None:
    await add_accounts(store, 1)
    await store.set_status(1, 7)
    assert await store.set_status_if(1, 7, 0) is True
    assert await status_of(store, 1) == 0


async def test_set_status_if_mismatch_returns_false_and_keeps_status(store: AdminStore) -> None:
    await add_accounts(store, 1)
    await store.set_status(1, 8)  # another server took the account
    assert await store.set_status_if(1, 7, 0) is False
    assert await status_of(store, 1) == 8


async def test_set_status_if_same_value_counts_as_match(store: AdminStore) -> None:
    await add_accounts(store, 1)
    assert await store.set_status_if(1, 0, 0) is True
    assert await status_of(store, 1) == 0


async def test_set_status_if_without_status_row_is_false(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1)
    await raw_sql(db_url, "DELETE FROM status WHERE accountno = %s", (1,))
    assert await store.set_status_if(1, 0, 7) is False
    assert await status_of(store, 1) is None


async def test_get_accounts_reads_many_and_leaves_out_unknown_ones(store: AdminStore) -> None:
    await add_accounts(store, 1, 2, 3)
    found = await store.get_accounts([3, 1, 99])
    assert sorted(found) == [1, 3]
    assert found[3] == await store.get_account(3)


async def test_set_statuses_sets_exactly_the_listed_accounts(store: AdminStore) -> None:
    await add_accounts(store, 1, 2, 3, 4)
    await store.set_statuses([1, 3, 4], 9)
    assert [await status_of(store, n) for n in (1, 2, 3, 4)] == [9, 0, 9, 9]


async def test_clear_statuses_if_clears_only_rows_holding_the_expected_value(
    store: AdminStore,
) -> None:
    await add_accounts(store, 1, 2, 3, 4)
    await store.set_statuses([1, 2, 3], 5)
    await store.set_status(3, 6)  # taken over by another server meanwhile
    assert await store.clear_statuses_if([1, 3, 4], 5) == 1
    assert [await status_of(store, n) for n in (1, 2, 3, 4)] == [0, 5, 6, 0]


async def test_batches_are_bounded(store: AdminStore) -> None:
    with pytest.raises(ValueError, match="batch"):
        await store.set_statuses([], 1)
    with pytest.raises(ValueError, match="batch"):
        await store.clear_statuses_if(list(range(1, MAX_BATCH + 2)), 1)


async def test_reset_statuses_all_clears_every_nonzero_and_counts_them(store: AdminStore) -> None:
    await add_accounts(store, 1, 2, 3, 4)
    await store.set_status(1, 7)
    await store.set_status(2, 8)
    await store.set_status(3, 7)
    assert await store.reset_statuses() == 3
    assert [await status_of(store, n) for n in (1, 2, 3, 4)] == [0, 0, 0, 0]
    assert await store.reset_statuses() == 0


async def test_reset_statuses_only_clears_that_server_id(store: AdminStore) -> None:
    await add_accounts(store, 1, 2, 3)
    await store.set_status(1, 7)
    await store.set_status(2, 8)
    await store.set_status(3, 7)
    assert await store.reset_statuses(only=7) == 2
    assert [await status_of(store, n) for n in (1, 2, 3)] == [0, 8, 0]
    assert await store.reset_statuses(only=0) == 0


# --- whiteip -----------------------------------------------------------------------


async def test_trusted_ips_lists_whiteip_in_insertion_order(store: AdminStore) -> None:
    assert await store.trusted_ips() == []
    assert await store.add_trusted_ip("10.0.0.2") is True
    assert await store.add_trusted_ip("127.0.0.1") is True
    assert await store.add_trusted_ip("10.0.0.2") is False  # already there
    assert await store.trusted_ips() == ["10.0.0.2", "127.0.0.1"]


# --- seed / init -------------------------------------------------------------------


def read_keys(path: Path) -> dict[int, str]:
    keys: dict[int, str] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        number, k = line.split(" ")
        keys[int(number)] = k
    return keys


async def test_seed_creates_accounts_and_writes_keys_file(db_url: str, tmp_path: Path) -> None:
    keys_out = tmp_path / "keys.txt"
    result = await seed_db(db_url, 5, keys_out=keys_out)
    assert (result.count, result.first, result.last) == (5, 1, 5)
    keys = read_keys(keys_out)
    assert sorted(keys) == [1, 2, 3, 4, 5]
    assert all(KEY_RE.match(k) for k in keys.values())
    assert len(set(keys.values())) == 5
    async with open_store(db_url) as store:
        for n, k in keys.items():
            assert await store.get_account(n) == AccountRecord(
                n, f"ID_{n}", f"NICK_{n}", k.encode("ascii"), 0
            )
        assert await store.get_account(6) is None


async def test_reseed_replaces_keys_and_clears_statuses(
    db_url: str, tmp_path: Path, raw_sql: RawSql
) -> None:
    await seed_db(db_url, 3, keys_out=tmp_path / "a.txt")
    first = read_keys(tmp_path / "a.txt")
    async with open_store(db_url) as store:
        await store.set_status(2, 7)
    second_path = tmp_path / "b.txt"
    await seed_db(db_url, 3, keys_out=second_path)
    second = read_keys(second_path)
    assert all(first[n] != second[n] for n in (1, 2, 3))
    assert await raw_sql(db_url, "SELECT COUNT(*) FROM account", ()) == [(3,)]
    async with open_store(db_url) as store:
        for n in (1, 2, 3):
            assert await store.get_account(n) == AccountRecord(
                n, f"ID_{n}", f"NICK_{n}", second[n].encode("ascii"), 0
            )


async def test_seed_with_password_stores_a_verifiable_hash_never_clear_text(
    db_url: str, raw_sql: RawSql
) -> None:
    await seed_db(db_url, 2, password="s3cret")
    rows = await raw_sql(db_url, "SELECT userpass FROM account ORDER BY accountno", ())
    assert len(rows) == 2
    for (stored,) in rows:
        assert len(stored) == 64 and "s3cret" not in stored
        assert verify_password("s3cret", stored)
        assert not verify_password("wrong", stored)
    # re-seeding without --password keeps the password
    await seed_db(db_url, 2)
    assert await raw_sql(db_url, "SELECT userpass FROM account ORDER BY accountno", ()) == rows


async def test_seed_without_password_stores_empty_userpass(db_url: str, raw_sql: RawSql) -> None:
    await seed_db(db_url, 2)
    assert await raw_sql(db_url, "SELECT userpass FROM account ORDER BY accountno", ()) == [
        ("",),
        ("",),
    ]


async def test_init_is_idempotent_and_keeps_data(db_url: str) -> None:
    await init_db(db_url)
    await seed_db(db_url, 2)
    await init_db(db_url)
    async with open_store(db_url) as store:
        record = await store.get_account(2)
        assert record is not None and record.user_id == "ID_2"


async def test_connect_without_schema_says_to_run_init(db_url: str) -> None:
    with pytest.raises(StoreError) as info:
        async with open_store(db_url):
            pass
    assert not isinstance(info.value, StoreUnavailable)
    assert "serverlink db init" in str(info.value)
    assert "\n" not in str(info.value)


async def test_closed_store_raises_store_error(store: AdminStore) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_account(1)


# --- retry policy ------------------------------------------------------------------


def connection_lost(store: AdminStore) -> Exception:
    """The engine's own "connection lost mid-statement" error."""
    if store.engine == "mysql":
        return asyncmy_errors.OperationalError(2013, "Lost connection to server during query")
    return sqlite3.OperationalError("disk I/O error")


async def test_connection_lost_mid_statement_is_retried_once_flagged_maybe_applied(
    store: AdminStore,
) -> None:
    seen: list[bool] = []

    async def op(conn: Any, maybe_applied: bool) -> str:
        seen.append(maybe_applied)
        if len(seen) == 1:
            raise connection_lost(store)
        return "ok"

    assert await store._run("test op", op) == "ok"  # type: ignore[attr-defined]
    assert seen == [False, True]
    await add_accounts(store, 1)  # the store is still usable
    assert await status_of(store, 1) == 0


async def test_connection_lost_twice_raises_store_unavailable(store: AdminStore) -> None:
    seen: list[bool] = []

    async def op(conn: Any, maybe_applied: bool) -> str:
        seen.append(maybe_applied)
        raise connection_lost(store)

    with pytest.raises(StoreUnavailable):
        await store._run("test op", op)  # type: ignore[attr-defined]
    assert seen == [False, True]  # one retry, no more


async def test_non_connection_errors_are_not_retried(store: AdminStore) -> None:
    seen: list[bool] = []

    async def op(conn: Any, maybe_applied: bool) -> str:
        seen.append(maybe_applied)
        if store.engine == "mysql":
            raise asyncmy_errors.ProgrammingError(1064, "You have an error in your SQL syntax")
        raise sqlite3.OperationalError('near "SELEC": syntax error')

    with pytest.raises(StoreError) as info:
        await store._run("test op", op)  # type: ignore[attr-defined]
    assert not isinstance(info.value, StoreUnavailable)
    assert seen == [False]


@pytest.mark.mariadb
async def test_mysql_connections_killed_by_the_server_next_call_succeeds(
    mariadb_url: str, mariadb_query: ServerQuery
) -> None:
    await seed_db(mariadb_url, 2)
    name = mariadb_url.rsplit("/", 1)[1]
    async with open_store(mariadb_url, pool_min=2, pool_max=2) as store:
        await asyncio.gather(store.get_account(1), store.get_account(2))
        ids = await mariadb_query(
            "SELECT id FROM information_schema.processlist WHERE db = %s", (name,)
        )
        assert len(ids) >= 1
        for (connection_id,) in ids:
            await mariadb_query(f"KILL CONNECTION {int(connection_id)}", ())
        record = await store.get_account(2)
        assert record is not None and record.user_id == "ID_2"


# --- MariaDB specifics -------------------------------------------------------------


@pytest.mark.mariadb
async def test_mysql_init_creates_the_database_named_in_the_url(
    mariadb_url: str, mariadb_query: ServerQuery
) -> None:
    name = mariadb_url.rsplit("/", 1)[1]
    query = "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s"
    assert await mariadb_query(query, (name,)) == [(0,)]
    await init_db(mariadb_url)
    assert await mariadb_query(query, (name,)) == [(1,)]
    tables = await mariadb_query(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = %s ORDER BY table_name",
        (name,),
    )
    assert tables == [
        ("account", "BASE TABLE"),
        ("sessionkey", "BASE TABLE"),
        ("status", "BASE TABLE"),
        ("v_account", "VIEW"),
        ("whiteip", "BASE TABLE"),
    ]


@pytest.mark.mariadb
async def test_mysql_seed_4000_accounts_in_a_couple_of_seconds(mariadb_url: str) -> None:
    result = await seed_db(mariadb_url, 4000)
    assert result.seconds < 3.0, f"seeding 4000 accounts took {result.seconds:.2f} s"


async def test_unreachable_mysql_raises_store_unavailable_quickly() -> None:
    store = open_store(f"mysql://root@127.0.0.1:{free_port()}/nothing", timeout=3.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable"):
        await store.get_account(1)
    assert time.monotonic() - started < 3.0
    await store.close()


# --- SQLite specifics --------------------------------------------------------------


async def test_sqlite_uses_wal_journal(sqlite_url: str, raw_sql: RawSql) -> None:
    await init_db(sqlite_url)
    assert await raw_sql(sqlite_url, "PRAGMA journal_mode", ()) == [("wal",)]


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


async def test_sqlite_memory_url_works() -> None:
    store = open_admin_store("sqlite:///:memory:")
    await store.create_schema()
    await store.connect()
    await add_accounts(store, 1)
    assert await store.get_account(1) == AccountRecord(1, "ID_1", "NICK_1", key(1).encode(), 0)
    await store.close()


async def test_sqlite_unopenable_file_raises_store_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    with pytest.raises(StoreUnavailable, match="unable to open"):
        await store.get_account(1)
    await store.close()


# --- URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///accounts.db", SqliteTarget("accounts.db")),
        ("sqlite:////var/lib/x.db", SqliteTarget("/var/lib/x.db")),
        ("sqlite:///:memory:", SqliteTarget(":memory:")),
        ("mysql://root@127.0.0.1/accountdb", MysqlTarget("root", "127.0.0.1", 3306, "accountdb")),
        (
            "mariadb://u:p%40ss@db.example:3307/acc_1",
            MysqlTarget("u", "db.example", 3307, "acc_1", "p@ss"),
        ),
    ],
)
def test_parse_good_urls(url: str, expected: object) -> None:
    assert parse_db_url(url) == expected


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("", "use sqlite:///path.db or mysql://"),
        ("accounts.db", "has no scheme"),
        ("postgres://u@h/db", "unsupported database URL scheme 'postgres'"),
        ("sqlite://accounts.db", "write sqlite:///relative/path.db"),
        ("sqlite:///", "has no file name"),
        ("sqlite:///x.db?mode=ro", "give only the file path"),
        ("mysql://127.0.0.1/accountdb", "has no user name"),
        ("mysql://root:pw@/accountdb", "has no host"),
        ("mysql://root:pw@h:99999/accountdb", "is not a number from 1 to 65535"),
        ("mysql://root:pw@h:abc/accountdb", "is not a number from 1 to 65535"),
        ("mysql://root:pw@h:3306", "has no database name"),
        ("mysql://root:pw@h/acc-db", "must be 1 to 64 characters"),
        ("mysql://root:pw@h/accountdb?ssl=1", "options after '?'"),
    ],
)
def test_bad_url_raises_value_error_saying_what_to_fix(url: str, fix: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_db_url(url)
    assert isinstance(info.value, DatabaseUrlError)
    message = str(info.value)
    assert fix in message
    assert "\n" not in message
    assert ":pw@" not in message  # the password is masked


def test_default_db_url_is_a_sqlite_file_in_the_working_directory() -> None:
    assert DEFAULT_DB_URL == "sqlite:///serverlink-accounts.db"
    assert parse_db_url(DEFAULT_DB_URL) == SqliteTarget("serverlink-accounts.db")


def test_open_store_rejects_a_bad_url_before_connecting() -> None:
    with pytest.raises(DatabaseUrlError, match="unsupported database URL scheme"):
        open_store("redis://localhost/0")


# --- passwords ---------------------------------------------------------------------


def test_hash_password_is_64_chars_salted_and_verifies() -> None:
    h1, h2 = hash_password("pw"), hash_password("pw")
    assert len(h1) == len(h2) == 64
    assert h1 != h2  # fresh salt each time
    assert verify_password("pw", h1) and verify_password("pw", h2)
    assert not verify_password("pW", h1)
    assert not verify_password("", h1)


def test_new_session_key_is_64_urlsafe_characters_and_fresh() -> None:
    keys = {new_session_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(KEY_RE.match(k) for k in keys)


@pytest.mark.parametrize("stored", ["", "x" * 64, "!" * 64, hash_password("pw")[:-4]])
def test_verify_password_rejects_empty_or_malformed_stored_value(stored: str) -> None:
    assert verify_password("pw", stored) is False


def test_retry_backoff_is_exponential_jittered_and_capped() -> None:
    policy = Retry(ExponentialBackoff(base=0.1, cap=0.3), retries=3)
    for _ in range(50):
        assert 0.05 <= policy.delay(1) <= 0.1
        assert 0.1 <= policy.delay(2) <= 0.2
        assert 0.15 <= policy.delay(5) <= 0.3


# --- CLI ---------------------------------------------------------------------------


def invoke(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(db_group, list(args), env=env, prog_name="serverlink db")


def test_cli_db_option_reads_serverlink_db_and_defaults_to_sqlite_file() -> None:
    for name in ("init", "seed", "reset-status", "add-whiteip"):
        command = db_group.commands[name]
        (option,) = [p for p in command.params if p.name == "db_url"]
        assert isinstance(option, click.Option)
        assert option.envvar == "SERVERLINK_DB"
        assert option.default == DEFAULT_DB_URL


def assert_one_line_error(result: click.testing.Result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and fragment in lines[0]
    assert "Traceback" not in result.output


def test_cli_bad_url_prints_one_line_and_exits_2() -> None:
    assert_one_line_error(invoke("init", "--db", "foo://x"), "unsupported database URL scheme")


def test_cli_unreachable_database_prints_one_line_and_exits_2() -> None:
    result = invoke(
        "reset-status", env={"SERVERLINK_DB": f"mysql://root@127.0.0.1:{free_port()}/x"}
    )
    assert_one_line_error(result, "unavailable")


def test_cli_bad_ip_prints_one_line_and_exits_2(sqlite_url: str) -> None:
    assert_one_line_error(invoke("add-whiteip", "nope", "--db", sqlite_url), "not an IPv4 or IPv6")


def test_cli_init_seed_reset_whiteip(db_url: str, tmp_path: Path, run_sync: RunSync) -> None:
    env = {"SERVERLINK_DB": db_url}
    result = invoke("init", env=env)
    assert result.exit_code == 0 and "schema ready" in result.stdout
    assert invoke("init", env=env).exit_code == 0  # idempotent
    keys_out = tmp_path / "keys.txt"
    result = invoke("seed", "--accounts", "4", "--keys-out", str(keys_out), env=env)
    assert result.exit_code == 0, result.output
    assert "seeded 4 accounts (1..4)" in result.stdout
    keys = read_keys(keys_out)
    assert sorted(keys) == [1, 2, 3, 4] and all(KEY_RE.match(k) for k in keys.values())

    async def set_some() -> None:
        async with open_store(db_url) as store:
            await store.set_status(1, 5)
            await store.set_status(3, 6)

    run_sync(set_some())
    result = invoke("reset-status", env=env)
    assert result.exit_code == 0 and result.stdout.strip() == "reset 2 status rows to 0"
    assert invoke("add-whiteip", "10.1.2.3", env=env).stdout.strip() == "added 10.1.2.3 to whiteip"
    assert invoke("add-whiteip", "10.1.2.3", env=env).stdout.strip() == (
        "10.1.2.3 is already in whiteip"
    )


# --- a private MariaDB that dies, hangs and restarts (tests/private_mariadb.py) -------


TIMEOUT = 2.0


@pytest.mark.mariadb
async def test_mariadb_killed_raises_unavailable_then_same_store_recovers_after_restart(
    running_mariadb: PrivateMariaDB,
) -> None:
    url = running_mariadb.url("restart_a")
    await seed_db(url, 3)
    store = open_store(url, timeout=TIMEOUT, pool_min=2, pool_max=4)
    await store.connect()
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
    url = running_mariadb.url("restart_b")
    await seed_db(url, 3)
    store = open_store(url, timeout=TIMEOUT, pool_min=3, pool_max=4)
    await store.connect()
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
    url = running_mariadb.url("hang")
    await seed_db(url, 1)
    store = open_store(url, timeout=TIMEOUT)
    await store.connect()
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
