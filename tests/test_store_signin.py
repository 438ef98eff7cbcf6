"""The account store's sign-in side (the web API's): accounts made with a
unique userid, passwords read, keys issued with an expiry by the database's
clock and revoked once; the schema upgrade of a database made before them.
On SQLite and MariaDB."""

from __future__ import annotations

import asyncio

import pytest

from conftest import RawSql, add_accounts
from serverlink.store import AdminStore, open_admin_store
from serverlink.store.admin import new_session_key, seed_db
from serverlink.store.base import UserIdTaken
from serverlink.store.passwords import hash_password, verify_password


async def test_create_account_has_its_key_and_status_rows(store: AdminStore) -> None:
    account_no = await store.create_account("alice", hash_password("pw"), "Alice")
    record = await store.get_account(account_no)
    assert record is not None
    assert (record.user_id, record.nickname, record.session_key, record.status) == (
        "alice",
        "Alice",
        None,
        0,
    )
    found = await store.find_userpass("alice")
    assert found is not None and found[0] == account_no and verify_password("pw", found[1])


async def test_a_taken_userid_is_refused_whatever_its_case(store: AdminStore) -> None:
    first = await store.create_account("bob", hash_password("pw"), "Bob")
    with pytest.raises(UserIdTaken):
        await store.create_account("bob", hash_password("other"), "Bob2")
    with pytest.raises(UserIdTaken):
        await store.create_account("BOB", hash_password("other"), "Bob3")
    second = await store.create_account("carol", hash_password("pw"), "Carol")
    assert second > first  # the refused attempts left no account behind
    assert await store.find_userpass("nobody") is None


async def test_issued_key_has_seconds_left_and_an_expired_one_none(store: AdminStore) -> None:
    account_no = await store.create_account("dave", hash_password("pw"), "Dave")
    key = new_session_key()
    await store.issue_key(account_no, key, 600)
    record = await store.get_account(account_no)
    assert record is not None and record.session_key == key.encode()
    assert record.key_seconds_left is not None and 590 < record.key_seconds_left <= 600
    await store.issue_key(account_no, key, 0.001)  # a second issue replaces the first
    record = await store.get_account(account_no)
    assert record is not None and record.key_seconds_left is not None
    assert record.key_seconds_left < 0.001


async def test_revoke_key_works_once_and_only_for_the_right_key(store: AdminStore) -> None:
    account_no = await store.create_account("erin", hash_password("pw"), "Erin")
    key = new_session_key()
    await store.issue_key(account_no, key, 600)
    assert not await store.revoke_key(account_no, b"x" * 64)
    assert await store.revoke_key(account_no, key.encode())
    assert not await store.revoke_key(account_no, key.encode())
    record = await store.get_account(account_no)
    assert record is not None and record.session_key is None


async def test_seeded_keys_do_not_expire_unless_a_ttl_is_given(db_url: str) -> None:
    await seed_db(db_url, 2)
    await seed_db(db_url, 1, first=3, key_ttl=60)
    async with open_admin_store(db_url) as store:
        plain, expiring = await store.get_account(1), await store.get_account(3)
    assert plain is not None and plain.key_seconds_left is None
    assert expiring is not None and expiring.key_seconds_left is not None
    assert 0 < expiring.key_seconds_left <= 60


async def test_opening_a_database_made_before_key_expiry_upgrades_it(
    store: AdminStore, db_url: str, raw_sql: RawSql
) -> None:
    await add_accounts(store, 1)
    await raw_sql(db_url, "ALTER TABLE sessionkey DROP COLUMN expires", [])
    on_table = " ON account" if store.engine == "mysql" else ""
    await raw_sql(db_url, "DROP INDEX userid_UNIQUE" + on_table, [])
    async with open_admin_store(db_url) as upgraded:
        record = await upgraded.get_account(1)
        assert record is not None and record.key_seconds_left is None
        with pytest.raises(UserIdTaken):
            await upgraded.create_account("ID_1", hash_password("pw"), "again")


async def test_sign_ups_at_once_with_taken_userids_lose_no_other_write(store: AdminStore) -> None:
    """SQLite shares one connection: a transaction rolled back (a taken userid)
    must not take another task's statement with it, nor two overlap."""
    first = await store.create_account("zed", hash_password("pw"), "Zed")
    key = new_session_key()
    userpass = hash_password("pw")
    async with asyncio.timeout(10):  # overlapping transactions on one connection hang
        outcomes = await asyncio.gather(
            *(store.create_account(f"user{i}", userpass, "N") for i in range(10)),
            *(store.create_account("zed", userpass, "again") for _ in range(5)),
            store.issue_key(first, key, 600),
            return_exceptions=True,
        )
    made = [o for o in outcomes[:10] if isinstance(o, int)]
    assert len(set(made)) == 10
    assert all(isinstance(o, UserIdTaken) for o in outcomes[10:15])
    record = await store.get_account(first)
    assert record is not None and record.session_key == key.encode()
    for account_no in made:
        account = await store.get_account(account_no)
        assert account is not None and account.status == 0
