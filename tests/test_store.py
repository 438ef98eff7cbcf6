"""Account store behaviour on both engines (a SQLite file and a real MariaDB):
account reads, status writes and claims, unusable rows, whiteip, the schema
check. Outages and retries are in test_store_outages.py; URLs, seeding and the
``serverlink db`` commands in test_store_admin.py."""

from __future__ import annotations

import pytest

from conftest import RawSql, add_accounts, session_key, status_of
from serverlink.store import (
    AccountRecord,
    AdminStore,
    StoreError,
    StoreUnavailable,
    open_admin_store,
    open_store,
)
from serverlink.store.base import MAX_BATCH, record_from_row

# --- get_account -------------------------------------------------------------------


async def test_get_account_returns_full_account(store: AdminStore) -> None:
    await add_accounts(store, 1, 2, 3)
    assert await store.get_account(2) == AccountRecord(
        2, "ID_2", "NICK_2", session_key(2).encode(), 0
    )


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
    assert await store.get_account(1) == AccountRecord(
        1, "ID_1", "NICK_1", session_key(1).encode(), None
    )


async def test_get_account_null_sessionkey(store: AdminStore, db_url: str, raw_sql: RawSql) -> None:
    await add_accounts(store, 1)
    await raw_sql(db_url, "UPDATE sessionkey SET sessionkey = NULL WHERE accountno = %s", (1,))
    assert await raw_sql(db_url, "SELECT COUNT(*) FROM sessionkey WHERE accountno = %s", (1,)) == [
        (1,)
    ]
    assert await store.get_account(1) == AccountRecord(1, "ID_1", "NICK_1", None, 0)


# --- statuses ----------------------------------------------------------------------


async def test_set_status_changes_only_that_account(store: AdminStore) -> None:
    await add_accounts(store, 1, 2)
    await store.set_status(1, 7)
    assert await status_of(store, 1) == 7
    assert await status_of(store, 2) == 0


@pytest.mark.parametrize(
    ("held", "expected", "new", "applied", "after"),
    [
        (7, 7, 0, True, 0),  # matching: set
        (8, 7, 0, False, 8),  # another server took the account: kept
        (0, 0, 0, True, 0),  # the same value counts as a match
    ],
)
async def test_set_status_if_sets_only_on_a_match(
    store: AdminStore, held: int, expected: int, new: int, applied: bool, after: int
) -> None:
    await add_accounts(store, 1)
    await store.set_status(1, held)
    assert await store.set_status_if(1, expected, new) is applied
    assert await status_of(store, 1) == after


@pytest.mark.parametrize("conditional", [False, True], ids=["set_status", "set_status_if"])
async def test_a_missing_status_row_is_not_created(
    store: AdminStore, db_url: str, raw_sql: RawSql, conditional: bool
) -> None:
    await add_accounts(store, 1)
    await raw_sql(db_url, "DELETE FROM status WHERE accountno = %s", (1,))
    if conditional:
        assert await store.set_status_if(1, 0, 7) is False
    else:
        await store.set_status(1, 7)
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


async def test_batches_of_every_kind_are_bounded(store: AdminStore) -> None:
    too_many = list(range(1, MAX_BATCH + 2))
    for call in (
        lambda nos: store.get_accounts(nos),
        lambda nos: store.get_statuses(nos),
        lambda nos: store.claim_statuses(nos, 7),
    ):
        with pytest.raises(ValueError, match="batch"):
            await call([])
        with pytest.raises(ValueError, match="batch"):
            await call(too_many)


async def test_get_accounts_reads_a_full_batch(store: AdminStore) -> None:
    numbers = list(range(1, MAX_BATCH + 1))
    await add_accounts(store, *numbers)
    found = await store.get_accounts(numbers)
    assert sorted(found) == numbers
    assert found[MAX_BATCH] == AccountRecord(
        MAX_BATCH, f"ID_{MAX_BATCH}", f"NICK_{MAX_BATCH}", session_key(MAX_BATCH).encode(), 0
    )


# --- get_statuses / claim_statuses ---------------------------------------------------


async def test_get_statuses_reads_the_status_rows_of_the_batch(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1, 2, 3, 4)
    await store.set_status(2, 7)
    await raw_sql(db_url, "DELETE FROM status WHERE accountno = %s", (3,))
    # 3 has no status row, 99 no account: both are left out
    assert await store.get_statuses([1, 2, 3, 99]) == {1: 0, 2: 7}
    assert await store.get_statuses([4]) == {4: 0}


async def test_claim_statuses_takes_free_and_own_rows_and_reports_them(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1, 2, 3, 4, 5)
    await store.set_status(2, 7)  # already ours
    await store.set_status(3, 8)  # held by another server
    await raw_sql(db_url, "DELETE FROM status WHERE accountno = %s", (4,))
    assert await store.claim_statuses([1, 2, 3, 4, 5, 99], 7) == {1, 2, 5}
    assert await store.get_statuses([1, 2, 3, 4, 5]) == {1: 7, 2: 7, 3: 8, 5: 7}


async def test_claim_statuses_again_gives_the_same_answer(store: AdminStore) -> None:
    await add_accounts(store, 1, 2, 3)
    await store.set_status(3, 8)
    first = await store.claim_statuses([1, 2, 3], 7)
    assert first == {1, 2}
    assert await store.claim_statuses([1, 2, 3], 7) == first
    assert await store.get_statuses([1, 2, 3]) == {1: 7, 2: 7, 3: 8}


async def test_claim_statuses_of_accounts_held_elsewhere_is_empty(store: AdminStore) -> None:
    await add_accounts(store, 1, 2)
    await store.set_statuses([1, 2], 8)
    assert await store.claim_statuses([1, 2], 7) == set()
    assert await store.get_statuses([1, 2]) == {1: 8, 2: 8}


async def test_held_status_ids_lists_each_server_holding_accounts_once(store: AdminStore) -> None:
    await add_accounts(store, 1, 2, 3, 4)
    assert await store.held_status_ids() == []
    await store.set_statuses([1, 2], 7)
    await store.set_status(3, 9)
    assert sorted(await store.held_status_ids()) == [7, 9]


# --- unusable rows -------------------------------------------------------------------


async def make_status_unusable(store: AdminStore, db_url: str, raw_sql: RawSql, n: int) -> None:
    """Give account ``n`` the status 'busy'. SQLite keeps text in an INT column; a
    MariaDB INT column cannot hold it, so that one is altered first (schema drift)."""
    if store.engine == "mysql":
        await raw_sql(db_url, "ALTER TABLE status MODIFY status VARCHAR(16) NOT NULL", ())
    await raw_sql(db_url, "UPDATE status SET status = 'busy' WHERE accountno = %s", (n,))


async def test_get_accounts_gives_an_unusable_row_as_that_accounts_error(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1, 2, 3)
    await make_status_unusable(store, db_url, raw_sql, 2)
    found = await store.get_accounts([1, 2, 3])
    assert sorted(found) == [1, 2, 3]
    assert found[1] == AccountRecord(1, "ID_1", "NICK_1", session_key(1).encode(), 0)
    assert found[3] == AccountRecord(3, "ID_3", "NICK_3", session_key(3).encode(), 0)
    error = found[2]
    assert isinstance(error, StoreError) and not isinstance(error, StoreUnavailable)
    assert "account 2" in str(error) and "'busy'" in str(error)
    assert "\n" not in str(error)


async def test_get_account_of_an_unusable_row_raises_store_error_naming_it(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1, 2)
    await make_status_unusable(store, db_url, raw_sql, 2)
    with pytest.raises(StoreError, match="account 2 ") as info:
        await store.get_account(2)
    assert not isinstance(info.value, StoreUnavailable)
    assert await store.get_account(1) == AccountRecord(
        1, "ID_1", "NICK_1", session_key(1).encode(), 0
    )


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ((1, "ID_1", "NICK_1", 12345, 0), "sessionkey is int"),
        ((1, "ID_1", "NICK_1", "k", "busy"), "status 'busy' is not an integer"),
        ((1, "ID_1", "NICK_1", "k", 7.5), "status is float"),
        ((1, "ID_1", "NICK_1", "k", True), "status is bool"),
    ],
)
def test_record_from_row_rejects_a_row_that_is_no_account(
    row: tuple[object, ...], problem: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=problem):
        record_from_row(row)


def test_record_from_row_takes_what_either_driver_returns() -> None:
    assert record_from_row((1, "ID_1", "NICK_1", bytearray(b"k"), "7")) == AccountRecord(
        1, "ID_1", "NICK_1", b"k", 7
    )
    assert record_from_row((1, "ID_1", "NICK_1", None, None)) == AccountRecord(
        1, "ID_1", "NICK_1", None, None
    )


# --- whiteip -----------------------------------------------------------------------


async def test_trusted_ips_lists_whiteip_in_insertion_order(store: AdminStore) -> None:
    assert await store.trusted_ips() == []
    assert await store.add_trusted_ip("10.0.0.2") is True
    assert await store.add_trusted_ip("127.0.0.1") is True
    assert await store.add_trusted_ip("10.0.0.2") is False  # already there
    assert await store.trusted_ips() == ["10.0.0.2", "127.0.0.1"]


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


async def test_sqlite_memory_url_works() -> None:
    store = open_admin_store("sqlite:///:memory:")
    await store.create_schema()
    await store.connect()
    await add_accounts(store, 1)
    assert await store.get_account(1) == AccountRecord(
        1, "ID_1", "NICK_1", session_key(1).encode(), 0
    )
    await store.close()
