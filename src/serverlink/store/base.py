"""The account store interface: one record type, two exceptions, one ABC.

Servers see only ``AccountStore`` (reads of accounts and statuses, status
writes, trusted IPs). ``store.sql.SqlAccountStore`` implements it for both
engines, each through a small driver (``store.mysql``, ``store.sqlite``), and
also implements ``AdminStore``, the few extra operations the ``serverlink db``
commands need (schema, seeding, whiteip).

Failure contract: every call either returns within the store's timeout or raises.
``StoreUnavailable`` means the database is down, unreachable or too slow (the
call was retried once on a connection-level error first, see
``serverlink.retry.STORE_RETRY``); any other problem (schema missing, access
denied, ...) is a plain ``StoreError`` whose message says what to fix. A batch
read does not fail as a whole because of one account's unusable row: that
account's entry is the ``StoreError``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

#: Accounts in one batch statement (get_accounts, set_statuses, ...) at most
#: (SQLite's oldest builds allow 999 bound parameters).
MAX_BATCH = 500

DEFAULT_TIMEOUT = 5.0
"""Seconds one store call may take, retry included, before ``StoreUnavailable``."""


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """One row of ``v_account``."""

    account_no: int
    user_id: str
    nickname: str
    session_key: bytes | None  # None = no sessionkey row (or NULL)
    status: int | None  # None = no status row
    #: Seconds the key has left by the database's clock; None: it does not expire
    #: (a seeded key). A key that expires is also single-use at the login server.
    key_seconds_left: float | None = None


def record_from_row(row: Sequence[Any]) -> AccountRecord:
    """An ``AccountRecord`` from a ``v_account`` row (accountno, userid, usernick,
    sessionkey, status), or the store's account read (the same and the key's
    seconds left), as either driver returns it. A row that is no account
    raises ``TypeError`` or ``ValueError``: a status that is not an integer (or the
    text of one), a key that is not text (SQLite keeps whatever it is given; a
    MySQL column can be altered)."""
    if len(row) == 6:
        acc, user_id, nick, key, status, left = row
    else:
        (acc, user_id, nick, key, status), left = row, None
    # Login reads convert every row: the types both drivers return for the
    # seed's schema are checked first, the rest off the hot path.
    if type(key) is str:
        key = key.encode()
    elif key is not None:
        key = _key_bytes(key)
    if type(status) is not int and status is not None:
        status = _status_int(status)
    if left is not None:
        left = float(left)
    return AccountRecord(int(acc), str(user_id), str(nick), key, status, left)


def _key_bytes(key: object) -> bytes:
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key)
    if isinstance(key, str):
        return key.encode()
    raise TypeError(f"sessionkey is {type(key).__name__} {key!r}, not text")


def _status_int(status: object) -> int:
    if isinstance(status, bool) or not isinstance(status, int | str):
        raise TypeError(f"status is {type(status).__name__} {status!r}, not an integer")
    try:
        return int(status)
    except ValueError:
        raise ValueError(f"status {status!r} is not an integer") from None


@dataclass(frozen=True, slots=True)
class SeedAccount:
    """One account written by ``AdminStore.upsert_accounts``."""

    account_no: int
    user_id: str
    nickname: str
    session_key: str
    userpass: str | None = None  # None = keep an existing account's password ('' if new)


def check_batch(account_nos: Sequence[int]) -> None:
    if not 0 < len(account_nos) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1..{MAX_BATCH} accounts, got {len(account_nos)}")


class StoreError(Exception):
    """Base of every store failure; the message is one line meant for a log or a CLI."""


class UserIdTaken(StoreError):
    """``create_account``: another account has this userid."""


class StoreUnavailable(StoreError):
    """The database is down, unreachable or did not answer within the timeout.

    Callers answer their client (e.g. a login failure) and log one line; the store
    reconnects by itself on a later call.
    """


class AccountStore(abc.ABC):
    """Account data as the servers need it. Use as ``async with open_store(url) as store``
    (which connects and checks the schema), or call ``connect()`` yourself; a call made
    before ``connect()`` connects lazily."""

    #: engine name, "mysql" or "sqlite"
    engine: str = ""

    @property
    @abc.abstractmethod
    def display_url(self) -> str:
        """The database URL with any password masked, for logs."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect now and check that the schema exists.

        Raises ``StoreUnavailable`` if the database cannot be reached, ``StoreError``
        if it can but the schema is missing (run ``serverlink db init``)."""

    @abc.abstractmethod
    async def get_account(self, account_no: int) -> AccountRecord | None:
        """The account's ``v_account`` row (one SELECT), or None if no such account.

        Raises the ``StoreError`` that ``get_accounts`` would give for an unusable row."""

    @abc.abstractmethod
    async def get_accounts(
        self, account_nos: Sequence[int]
    ) -> dict[int, AccountRecord | StoreError]:
        """``get_account`` for many accounts in one statement (at most ``MAX_BATCH``):
        the rows found, by account number. The login server batches the reads of
        the logins that arrive together, so one account's unusable row (a status
        that is not an integer, a key that is not text) must not fail the others:
        its entry is a ``StoreError`` that names the account."""

    @abc.abstractmethod
    async def get_statuses(self, account_nos: Sequence[int]) -> dict[int, int]:
        """The current status of each of these accounts that has a status row, in one
        statement (at most ``MAX_BATCH`` accounts)."""

    @abc.abstractmethod
    async def set_status(self, account_no: int, status: int) -> None:
        """Set the account's status. An account without a status row keeps having none
        (the login server reports that as STATUS_MISS; it is not created here)."""

    @abc.abstractmethod
    async def set_status_if(self, account_no: int, expected: int, status: int) -> bool:
        """Compare-and-set: set ``status`` only if the current status is ``expected``.

        Returns True if the row matched (also when ``expected == status``), False if the
        status was something else or there is no status row. If an attempt lost its
        connection while its UPDATE was in flight, the retry also counts a row that
        already holds ``status`` as a match (the lost attempt may have been applied)."""

    @abc.abstractmethod
    async def set_statuses(self, account_nos: Sequence[int], status: int) -> None:
        """``set_status`` for many accounts in one statement (at most
        ``MAX_BATCH`` of them): the game server batches the logins of a moment."""

    @abc.abstractmethod
    async def clear_statuses_if(self, account_nos: Sequence[int], expected: int) -> int:
        """Set to 0 the status of each of these accounts that is ``expected``, in one
        statement (at most ``MAX_BATCH`` accounts); returns the rows changed."""

    @abc.abstractmethod
    async def claim_statuses(self, account_nos: Sequence[int], status: int) -> set[int]:
        """Set ``status`` on each of these accounts whose status row holds 0 or
        already ``status`` (at most ``MAX_BATCH`` accounts); returns the accounts
        that hold ``status`` afterwards (an UPDATE, then a SELECT of those rows).
        Accounts held by another status, or without a status row, are left out.
        Idempotent, so a retry after a lost connection gives the same answer."""

    @abc.abstractmethod
    async def reset_statuses(self, only: int | None = None) -> int:
        """Set every non-zero status to 0 (``only=None``, as the login server does at
        start), or only the rows whose status is ``only`` (a game server clearing its
        own accounts). Returns the number of rows changed."""

    @abc.abstractmethod
    async def held_status_ids(self) -> list[int]:
        """Every non-zero status value in the table (the servers holding accounts)."""

    @abc.abstractmethod
    async def trusted_ips(self) -> list[str]:
        """The ``whiteip`` table, in insertion order."""

    @abc.abstractmethod
    async def revoke_key(self, account_no: int, key: bytes) -> bool:
        """Clear the account's session key if it is ``key``, in one statement: True
        if it was (and now is gone). Atomic, so of two callers with one key only
        one gets True: the login server spends a key that expires with it (one use),
        the web API's sign-out revokes one."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connections. Idempotent; later calls raise ``StoreError``."""

    async def __aenter__(self) -> Self:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_url}>"


class AdminStore(AccountStore):
    """The extra operations of ``serverlink db`` (not used on the servers' hot path)."""

    @abc.abstractmethod
    async def create_schema(self) -> None:
        """Create the tables and the ``v_account`` view if missing (and, for MySQL, the
        database named in the URL). Idempotent; existing rows are kept."""

    @abc.abstractmethod
    async def upsert_accounts(
        self, accounts: Sequence[SeedAccount], key_ttl: float | None = None
    ) -> None:
        """Insert or update the accounts, their session keys and a status row of 0 each,
        in one transaction. ``key_ttl``: the keys expire after this many seconds (and
        are single-use at the login server); None: they do not expire."""

    @abc.abstractmethod
    async def add_trusted_ip(self, ip: str) -> bool:
        """Add ``ip`` to ``whiteip``; False if it was already there."""


class SignInStore(AccountStore):
    """What the account web API needs: accounts made, passwords read, keys issued."""

    @abc.abstractmethod
    async def create_account(self, user_id: str, userpass: str, nickname: str) -> int:
        """A new account (its password already hashed), with a sessionkey row
        (no key yet) and a status row of 0, in one transaction: its number.
        ``UserIdTaken`` if another account has ``user_id`` (ignoring case)."""

    @abc.abstractmethod
    async def find_userpass(self, user_id: str) -> tuple[int, str] | None:
        """The account number and stored password hash of ``user_id``; None if
        there is no such account."""

    @abc.abstractmethod
    async def issue_key(self, account_no: int, key: str, ttl: float) -> None:
        """Make ``key`` the account's session key, expiring ``ttl`` seconds from
        now by the database's clock (replacing any earlier key)."""
