"""Account store administration: database URLs, seeding and ``init`` on both
engines, passwords, the ``serverlink db`` commands, and the store's retry
policy (``serverlink.retry``)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import RawSql, RunSync, ServerQuery
from private_mariadb import free_port
from serverlink.cli import main
from serverlink.cli.db import db_group
from serverlink.retry import STORE_RETRY, ExponentialBackoff, Retry
from serverlink.store import (
    DEFAULT_DB_URL,
    AccountRecord,
    DatabaseUrlError,
    hash_password,
    open_store,
    parse_db_url,
    verify_password,
)
from serverlink.store.admin import init_db, new_session_key, seed_db
from serverlink.store.url import MysqlTarget, SqliteTarget

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{64}$")


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


# --- SQLite specifics --------------------------------------------------------------


async def test_sqlite_uses_wal_journal(sqlite_url: str, raw_sql: RawSql) -> None:
    await init_db(sqlite_url)
    assert await raw_sql(sqlite_url, "PRAGMA journal_mode", ()) == [("wal",)]


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


def test_store_retries_once_by_default() -> None:
    store = open_store("sqlite:///:memory:")
    assert store.retry is STORE_RETRY  # type: ignore[attr-defined]
    assert STORE_RETRY.retries == 1
    assert not STORE_RETRY.gives_up(1) and STORE_RETRY.gives_up(2)


def test_retry_backoff_is_exponential_jittered_and_capped() -> None:
    policy = Retry(ExponentialBackoff(base=0.1, cap=0.3), retries=3)
    for _ in range(50):
        assert 0.05 <= policy.delay(1) <= 0.1
        assert 0.1 <= policy.delay(2) <= 0.2
        assert 0.15 <= policy.delay(5) <= 0.3


# --- CLI ---------------------------------------------------------------------------


class Invoked:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr
        self.output = stdout + stderr


def invoke(*args: str, env: dict[str, str] | None = None) -> Invoked:
    """``serverlink db ARGS`` through main(), as the command line runs it."""
    with CliRunner().isolation(env=env) as (out, err, _):
        code = main(["db", *args])
    return Invoked(code, out.getvalue().decode(), err.getvalue().decode())


def test_cli_db_option_defaults_to_sqlite_file_and_reads_the_environment(
    sqlite_url: str,
) -> None:
    for name in ("init", "seed", "reset-status", "add-whiteip"):
        command = db_group.commands[name]
        (option,) = [p for p in command.params if p.name == "db_url"]
        assert isinstance(option, click.Option)
        assert option.default == DEFAULT_DB_URL
    # the rule (SERVERLINK_<COMMAND>_<SETTING>), the shared database, and its alias
    for var in ("SERVERLINK_DB_INIT_DB", "SERVERLINK_DATABASE_URL", "SERVERLINK_DB"):
        result = invoke("init", env={var: sqlite_url})
        assert result.exit_code == 0, result.output
        assert f"schema ready in {sqlite_url}" in result.stdout


def assert_one_line_error(result: Invoked, message: str, exit_code: int) -> None:
    assert result.exit_code == exit_code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"serverlink: {message}"), lines
    assert "Traceback" not in result.output


def test_cli_bad_url_prints_one_line_and_exits_2() -> None:
    result = invoke("init", "--db", "foo://x")
    assert_one_line_error(result, "db init: --db: unsupported database URL scheme", 2)


def test_cli_unreachable_database_prints_one_line_and_exits_1() -> None:
    port = free_port()
    result = invoke("reset-status", "--db", f"mysql://root@127.0.0.1:{port}/x")
    # the command, not the store's function name (reset_statuses)
    assert_one_line_error(result, f"db reset-status: MySQL at mysql://root@127.0.0.1:{port}/x", 1)


def test_cli_bad_ip_prints_one_line_and_exits_2(sqlite_url: str) -> None:
    result = invoke("add-whiteip", "nope", "--db", sqlite_url)
    assert_one_line_error(result, "db add-whiteip: 'nope' is not an IPv4 or IPv6", 2)


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
