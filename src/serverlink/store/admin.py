"""What ``serverlink db`` does, as plain coroutines (the CLI is in ``serverlink.cli.db``).

Each function opens its own store for ``url``, does its work and closes it. Errors
are ``DatabaseUrlError`` (bad URL), ``StoreUnavailable`` / ``StoreError`` (database)
and ``OSError`` (keys file), each with a one-line message.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from serverlink.store import open_admin_store
from serverlink.store.base import AdminStore, SeedAccount
from serverlink.store.passwords import hash_password

SESSION_KEY_LENGTH = 64
SEED_BATCH = 1000  # accounts per transaction
WHITEIP_WIDTH = 32  # whiteip.ip is CHAR(32)


def new_session_key() -> str:
    """A fresh random session key: exactly 64 characters of [A-Za-z0-9_-]
    (``secrets.token_urlsafe`` of 48 bytes, which base64 encodes without padding)."""
    return secrets.token_urlsafe(SESSION_KEY_LENGTH * 3 // 4)


def seed_names(account_no: int) -> tuple[str, str]:
    """The original dummy tools' naming: (``ID_n``, ``NICK_n``)."""
    return f"ID_{account_no}", f"NICK_{account_no}"


@dataclass(frozen=True, slots=True)
class SeedResult:
    count: int
    first: int
    last: int
    seconds: float
    keys_out: Path | None


async def init_db(url: str) -> None:
    """Create the schema (and the MySQL database) if missing. Idempotent."""
    async with _AdminSession(url) as store:
        await store.create_schema()


async def seed_db(
    url: str,
    count: int,
    *,
    keys_out: Path | None = None,
    password: str | None = None,
    first: int = 1,
    batch_size: int = SEED_BATCH,
    key_ttl: float | None = None,
) -> SeedResult:
    """Create (or refresh) accounts ``first .. first+count-1`` named ``ID_n``/``NICK_n``,
    each with a new random 64-character session key and a status row of 0, in
    transactions of ``batch_size``. Existing accounts get new keys and status 0;
    their password is replaced only when ``password`` is given (new accounts get
    ``''`` without one). With ``password`` every seeded account gets the same scrypt
    hash (one salt: hashing thousands of test accounts one by one would take
    minutes). Creates the schema first if missing. ``key_ttl``: the keys expire
    after this many seconds and are single-use at the login server (as the web
    API's are); None: they do not expire.

    ``keys_out`` receives one ``accountno key`` line per account, written only after
    every batch is committed (atomically: a temporary file renamed into place).
    """
    if count < 1:
        raise ValueError("the number of accounts must be at least 1")
    if first < 1:
        raise ValueError("account numbers start at 1 or above")
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    # Fail on an unwritable keys file before touching the database.
    tmp_keys = _open_keys_tmp(keys_out) if keys_out is not None else None
    try:
        userpass = hash_password(password) if password is not None else None
        started = time.perf_counter()
        lines: list[str] = []
        async with _AdminSession(url) as store:
            await store.create_schema()
            for start in range(first, first + count, batch_size):
                batch: list[SeedAccount] = []
                for account_no in range(start, min(start + batch_size, first + count)):
                    user_id, nickname = seed_names(account_no)
                    key = new_session_key()
                    batch.append(SeedAccount(account_no, user_id, nickname, key, userpass))
                    lines.append(f"{account_no} {key}\n")
                await store.upsert_accounts(batch, key_ttl)
        seconds = time.perf_counter() - started
        if tmp_keys is not None and keys_out is not None:
            with open(tmp_keys, "w", encoding="ascii", newline="\n") as f:
                f.writelines(lines)
            os.replace(tmp_keys, keys_out)
            tmp_keys = None
        return SeedResult(count, first, first + count - 1, seconds, keys_out)
    finally:
        if tmp_keys is not None:
            tmp_keys.unlink(missing_ok=True)


async def reset_status_db(url: str, only: int | None = None) -> int:
    """Every non-zero status to 0 (or only those equal to ``only``); rows changed."""
    async with _AdminSession(url) as store:
        return await store.reset_statuses(only)


def normalize_ip(ip: str) -> str:
    """``ip`` in canonical form; ValueError (one line) if it is not an IP address or
    does not fit ``whiteip.ip`` CHAR(32)."""
    try:
        text = str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise ValueError(f"{ip!r} is not an IPv4 or IPv6 address") from None
    if len(text) > WHITEIP_WIDTH:
        raise ValueError(
            f"{text!r} is {len(text)} characters; whiteip.ip holds at most {WHITEIP_WIDTH}"
        )
    return text


async def add_whiteip_db(url: str, ip: str) -> tuple[str, bool]:
    """Add ``ip`` (normalised) to ``whiteip``; returns (ip, added). Not added when it is
    already there."""
    text = normalize_ip(ip)
    async with _AdminSession(url) as store:
        return text, await store.add_trusted_ip(text)


async def trusted_ips_db(url: str) -> list[str]:
    async with _AdminSession(url) as store:
        return await store.trusted_ips()


def _open_keys_tmp(keys_out: Path) -> Path:
    try:
        fd, name = tempfile.mkstemp(prefix=f".{keys_out.name}.", suffix=".tmp", dir=keys_out.parent)
    except OSError as exc:  # report the file asked for, not the temporary name
        raise OSError(exc.errno, exc.strerror, str(keys_out)) from None
    os.close(fd)
    return Path(name)


class _AdminSession:
    """``async with``: an admin store that is closed on the way out, without the
    schema check ``AccountStore.__aenter__`` does (``init`` runs before a schema
    exists)."""

    def __init__(self, url: str) -> None:
        self.store = open_admin_store(url)

    async def __aenter__(self) -> AdminStore:
        return self.store

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()
