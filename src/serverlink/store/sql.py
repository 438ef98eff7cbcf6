"""The account store on SQL: every query once, one failure policy, over a driver
(``store.mysql`` or ``store.sqlite``, see ``store.driver``).

Failure policy, per call:

- the whole call (getting a connection, connecting, the statements, the retry and
  its backoff) runs under one deadline, ``timeout`` seconds; past it the driver
  stops what may still be running and the call raises ``StoreUnavailable``;
- an error that the driver says means the connection is gone (refused, reset,
  server gone or shutting down, a SQLite file that cannot be opened, ...) is
  retried on a fresh connection after a short jittered backoff, as the store's
  ``Retry`` says (``serverlink.retry.STORE_RETRY``: once); then
  ``StoreUnavailable``. The driver has discarded the broken connection, so a later
  call reconnects without restarting the process. A retry after a connection that
  was lost while a statement may have been running is told so (``maybe_applied``):
  ``set_status_if`` then also counts a row that already holds the new status;
- anything else (missing table, access denied, a locked SQLite file) is not
  retried and is a ``StoreError`` (``StoreUnavailable`` for a lock) whose message
  says what to fix;
- a batch read turns one account's unusable row into that account's
  ``StoreError`` rather than failing the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from typing import TypeVar

from serverlink.store.base import (
    MAX_BATCH,
    AccountRecord,
    AdminStore,
    SeedAccount,
    SignInStore,
    StoreError,
    UserIdTaken,
    check_batch,
    record_from_row,
)
from serverlink.store.calls import SqlCalls
from serverlink.store.driver import Row, SqlConnection, SqlDriver
from serverlink.store.schema import KEY_EXPIRY_PROBE, SCHEMA_PROBE, account_read

T = TypeVar("T")

log = logging.getLogger("serverlink.store")

BULK_TIMEOUT = 60.0
"""Seconds for the schema or one seed batch (admin work, not the servers' path)."""

#: Stands for the IN list of a batch's account numbers (see ``Statements.batch``).
ACCOUNTS = "/*accounts*/"


class Statements:
    """Every statement of the store, written once with ``?`` placeholders and put
    in the driver's dialect when the store is made."""

    def __init__(self, driver: SqlDriver) -> None:
        self._driver = driver
        sql = driver.dialect
        self.schema_probe = sql(SCHEMA_PROBE)
        self.key_expiry_probe = sql(KEY_EXPIRY_PROBE)
        # v_account's own definition, inlined: MariaDB re-processes a view on every
        # statement that names it, which measured here costs the server 203 µs of
        # CPU per login read against 123 µs for its definition run directly (and
        # 5,700 vs 9,100 reads/s through a 10-connection pool). The login path is
        # hot; the view stays in the schema for tools and operators. A single
        # account is read as a batch of one (IN with one value is an equality).
        # The key's seconds left come in the same statement (no second query).
        now = driver.unix_now
        self.read_accounts = sql(f"{account_read(now)} WHERE a.accountno IN ({ACCOUNTS})")
        self.read_statuses = sql(
            f"SELECT accountno, status FROM status WHERE accountno IN ({ACCOUNTS})"
        )
        self.set_statuses = sql(f"UPDATE status SET status = ? WHERE accountno IN ({ACCOUNTS})")
        # The first attempt passes (expected, expected); a retry after a lost
        # attempt that may have been applied passes (expected, status).
        self.set_status_if = sql(
            "UPDATE status SET status = ? WHERE accountno = ? AND status IN (?, ?)"
        )
        self.clear_statuses_if = sql(
            f"UPDATE status SET status = 0 WHERE status = ? AND accountno IN ({ACCOUNTS})"
        )
        self.claim_statuses = sql(
            f"UPDATE status SET status = ? WHERE status IN (0, ?) AND accountno IN ({ACCOUNTS})"
        )
        self.holding_status = sql(
            f"SELECT accountno FROM status WHERE status = ? AND accountno IN ({ACCOUNTS})"
        )
        self.held_status_ids = sql("SELECT DISTINCT status FROM status WHERE status <> 0")
        self.reset_all = sql("UPDATE status SET status = 0 WHERE status <> 0")
        self.reset_only = sql("UPDATE status SET status = 0 WHERE status = ? AND status <> 0")
        self.trusted_ips = sql("SELECT ip FROM whiteip ORDER BY no")
        self.find_ip = sql("SELECT 1 FROM whiteip WHERE ip = ? LIMIT 1")
        self.add_ip = sql("INSERT INTO whiteip (ip) VALUES (?)")
        # Only placeholders in VALUES (...): that is what lets asyncmy's
        # executemany send one multi-row INSERT instead of one statement per row.
        insert_account = "INSERT INTO account (accountno, userid, userpass, usernick) "
        insert_account += "VALUES (?, ?, ?, ?) "
        self.upsert_account_keep_pass = sql(
            insert_account + driver.upsert("accountno", ("userid", "usernick"))
        )
        self.upsert_account_set_pass = sql(
            insert_account + driver.upsert("accountno", ("userid", "userpass", "usernick"))
        )
        self.upsert_key = sql(
            "INSERT INTO sessionkey (accountno, sessionkey, expires) VALUES (?, ?, ?) "
            + driver.upsert("accountno", ("sessionkey", "expires"))
        )
        self.set_key_expiry = sql(
            f"UPDATE sessionkey SET expires = {now} + ? WHERE accountno IN ({ACCOUNTS})"
        )
        self.issue_key = sql(
            f"INSERT INTO sessionkey (accountno, sessionkey, expires) VALUES (?, ?, {now} + ?) "
            + driver.upsert("accountno", ("sessionkey", "expires"))
        )
        self.revoke_key = sql(
            "UPDATE sessionkey SET sessionkey = NULL, expires = NULL "
            "WHERE accountno = ? AND sessionkey = ?"
        )
        self.new_account = sql("INSERT INTO account (userid, userpass, usernick) VALUES (?, ?, ?)")
        self.find_userpass = sql(
            "SELECT accountno, userpass FROM account WHERE userid = ?" + driver.nocase
        )
        self.upsert_status = sql(
            "INSERT INTO status (accountno, status) VALUES (?, ?) "
            + driver.upsert("accountno", ("status",))
        )

    def batch(self, statement: str, account_nos: Sequence[int]) -> str:
        """``statement`` with the IN list for ``account_nos`` (1..``MAX_BATCH``)."""
        check_batch(account_nos)
        return statement.replace(ACCOUNTS, self._driver.in_list(len(account_nos)))


class SqlAccountStore(SqlCalls, AdminStore, SignInStore):
    """The account store on MariaDB/MySQL or SQLite, through ``driver``."""

    @cached_property
    def sql(self) -> Statements:
        return Statements(self.driver)

    def _records(self, rows: Sequence[Row]) -> dict[int, AccountRecord | StoreError]:
        """Rows by account. An unusable row becomes that account's ``StoreError``: one
        bad row must not fail the other logins of a batch."""
        found: dict[int, AccountRecord | StoreError] = {}
        for row in rows:
            try:
                record = record_from_row(row)
            except (TypeError, ValueError) as exc:
                account_no = int(row[0])
                found[account_no] = StoreError(
                    f"account {account_no} has an unusable row in {self.display_url} "
                    f"({exc}): correct it in the account tables"
                )
            else:
                found[record.account_no] = record
        return found

    async def _read_accounts(
        self, what: str, account_nos: Sequence[int]
    ) -> dict[int, AccountRecord | StoreError]:
        sql, params = self.sql.batch(self.sql.read_accounts, account_nos), tuple(account_nos)

        async def op(conn: SqlConnection, maybe_applied: bool) -> Sequence[Row]:
            return await conn.fetch(sql, params)

        return self._records(await self._run(what, op))

    async def _execute(self, what: str, sql: str, params: Sequence[object] = ()) -> int:
        """One statement that may be repeated as it is: its row count."""

        async def op(conn: SqlConnection, maybe_applied: bool) -> int:
            return await conn.execute(sql, params)

        return await self._run(what, op)

    # --- AccountStore -------------------------------------------------------------
    async def connect(self) -> None:
        async def probe(conn: SqlConnection, maybe_applied: bool) -> bool:
            await conn.fetch(self.sql.schema_probe)
            try:
                await conn.fetch(self.sql.key_expiry_probe)
            except Exception as exc:
                if self.driver.lacks_column(exc):
                    return False
                raise
            return True

        if not await self._run("connect", probe):
            # A database made before key expiry and unique userids: upgrade it
            # (what `db init` does; idempotent, so two processes may race here).
            log.warning("%s: adding key expiry and unique userids to the schema", self.display_url)
            await self.create_schema()

    async def get_account(self, account_no: int) -> AccountRecord | None:
        found = (await self._read_accounts("get_account", (account_no,))).get(account_no)
        if isinstance(found, StoreError):
            raise found
        return found

    async def get_accounts(
        self, account_nos: Sequence[int]
    ) -> dict[int, AccountRecord | StoreError]:
        return await self._read_accounts("get_accounts", account_nos)

    async def get_statuses(self, account_nos: Sequence[int]) -> dict[int, int]:
        sql, params = self.sql.batch(self.sql.read_statuses, account_nos), tuple(account_nos)

        async def op(conn: SqlConnection, maybe_applied: bool) -> dict[int, int]:
            return {int(acc): int(status) for acc, status in await conn.fetch(sql, params)}

        return await self._run("get_statuses", op)

    async def set_status(self, account_no: int, status: int) -> None:
        await self._set_statuses("set_status", (account_no,), status)

    async def set_status_if(self, account_no: int, expected: int, status: int) -> bool:
        async def op(conn: SqlConnection, maybe_applied: bool) -> bool:
            also = status if maybe_applied else expected
            return (
                await conn.execute(self.sql.set_status_if, (status, account_no, expected, also)) > 0
            )

        return await self._run("set_status_if", op)

    async def set_statuses(self, account_nos: Sequence[int], status: int) -> None:
        await self._set_statuses("set_statuses", account_nos, status)

    async def _set_statuses(self, what: str, account_nos: Sequence[int], status: int) -> None:
        sql = self.sql.batch(self.sql.set_statuses, account_nos)
        await self._execute(what, sql, (status, *account_nos))

    async def clear_statuses_if(self, account_nos: Sequence[int], expected: int) -> int:
        sql = self.sql.batch(self.sql.clear_statuses_if, account_nos)
        return await self._execute("clear_statuses_if", sql, (expected, *account_nos))

    async def claim_statuses(self, account_nos: Sequence[int], status: int) -> set[int]:
        claim = self.sql.batch(self.sql.claim_statuses, account_nos)
        holding = self.sql.batch(self.sql.holding_status, account_nos)

        async def op(conn: SqlConnection, maybe_applied: bool) -> set[int]:
            # Both statements are idempotent: a retry redoes the pair whole.
            matched = await conn.execute(claim, (status, status, *account_nos))
            if matched == len(set(account_nos)):
                # Every row matched (0 or already ours; MySQL counts matched rows,
                # FOUND_ROWS): all are ours, no read-back needed (the usual case).
                return set(account_nos)
            return {int(acc) for (acc,) in await conn.fetch(holding, (status, *account_nos))}

        return await self._run("claim_statuses", op)

    async def reset_statuses(self, only: int | None = None) -> int:
        if only is None:
            return await self._execute("reset_statuses", self.sql.reset_all)
        return await self._execute("reset_statuses", self.sql.reset_only, (only,))

    async def held_status_ids(self) -> list[int]:
        async def op(conn: SqlConnection, maybe_applied: bool) -> list[int]:
            return [int(status) for (status,) in await conn.fetch(self.sql.held_status_ids)]

        return await self._run("held_status_ids", op)

    async def trusted_ips(self) -> list[str]:
        async def op(conn: SqlConnection, maybe_applied: bool) -> list[str]:
            return [str(ip).strip() for (ip,) in await conn.fetch(self.sql.trusted_ips)]

        return await self._run("trusted_ips", op)

    async def revoke_key(self, account_no: int, key: bytes) -> bool:
        # As text (SQLite never finds TEXT equal to a BLOB); latin-1 maps every byte.
        params = (account_no, key.decode("latin-1"))
        return await self._execute("revoke_key", self.sql.revoke_key, params) > 0

    async def close(self) -> None:
        await self.driver.close()

    # --- SignInStore --------------------------------------------------------------
    async def create_account(self, user_id: str, userpass: str, nickname: str) -> int:
        async def op(conn: SqlConnection, maybe_applied: bool) -> int:
            async with conn.transaction():
                try:
                    account_no = await conn.insert(
                        self.sql.new_account, (user_id, userpass, nickname)
                    )
                except Exception as exc:
                    if self.driver.is_duplicate(exc):  # the one unique key: userid
                        raise UserIdTaken(f"userid {user_id!r} is taken") from None
                    raise
                # Upserts: a row an operator left behind for this number is reset.
                await conn.execute(self.sql.upsert_key, (account_no, None, None))
                await conn.execute(self.sql.upsert_status, (account_no, 0))
            return account_no

        return await self._run("create_account", op)

    async def find_userpass(self, user_id: str) -> tuple[int, str] | None:
        async def op(conn: SqlConnection, maybe_applied: bool) -> tuple[int, str] | None:
            rows = await conn.fetch(self.sql.find_userpass, (user_id,))
            return (int(rows[0][0]), str(rows[0][1])) if rows else None

        return await self._run("find_userpass", op)

    async def issue_key(self, account_no: int, key: str, ttl: float) -> None:
        await self._execute("issue_key", self.sql.issue_key, (account_no, key, ttl))

    # --- AdminStore ---------------------------------------------------------------
    async def create_schema(self) -> None:
        await self._call(
            "create schema", self.driver.create_schema, max(self.timeout, BULK_TIMEOUT)
        )

    async def upsert_accounts(
        self, accounts: Sequence[SeedAccount], key_ttl: float | None = None
    ) -> None:
        if not accounts:
            return
        keep_pass = [
            (a.account_no, a.user_id, "", a.nickname) for a in accounts if a.userpass is None
        ]
        set_pass = [
            (a.account_no, a.user_id, a.userpass, a.nickname)
            for a in accounts
            if a.userpass is not None
        ]
        keys = [(a.account_no, a.session_key, None) for a in accounts]
        numbers = [a.account_no for a in accounts]
        expiring = [numbers[i : i + MAX_BATCH] for i in range(0, len(numbers), MAX_BATCH)]
        statuses = [(a.account_no, 0) for a in accounts]

        async def op(conn: SqlConnection, maybe_applied: bool) -> None:
            # One transaction: a retry after a lost connection redoes it whole.
            async with conn.transaction():
                if keep_pass:
                    await conn.executemany(self.sql.upsert_account_keep_pass, keep_pass)
                if set_pass:
                    await conn.executemany(self.sql.upsert_account_set_pass, set_pass)
                await conn.executemany(self.sql.upsert_key, keys)
                await conn.executemany(self.sql.upsert_status, statuses)
                if key_ttl is not None:  # by the database's clock, as the login server reads it
                    for part in expiring:
                        expiry = self.sql.batch(self.sql.set_key_expiry, part)
                        await conn.execute(expiry, (key_ttl, *part))

        await self._run("seed accounts", op, max(self.timeout, BULK_TIMEOUT))

    async def add_trusted_ip(self, ip: str) -> bool:
        async def op(conn: SqlConnection, maybe_applied: bool) -> bool:
            if await conn.fetch(self.sql.find_ip, (ip,)):
                return False
            await conn.execute(self.sql.add_ip, (ip,))
            return True

        return await self._run("add whiteip", op)
