"""Accounts and session keys of login mode: the file that ``serverlink db seed
--keys-out`` writes, one ``accountno key`` line per account.

Every worker process loads the file itself (a few thousand short lines) and
keeps its own share, ``keys_of``: worker i of P takes lines i, i+P, i+2P, ...
so no two processes ever use the same account.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from serverlink.dummy.config import DummyConfig

KEY_LENGTH = 64  # CS_LOGIN_REQ_LOGIN.SessionKey, char[64]

AccountKey = tuple[int, bytes]


class KeyFileError(ValueError):
    """A key file that cannot be used; the message is one line."""


def load_keys(path: str | Path) -> list[AccountKey]:
    """(AccountNo, 64-byte key) per line, in file order. Blank lines are
    skipped; anything else that is not ``accountno key`` is an error."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"key file {path}: not ASCII text") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    keys: list[AccountKey] = []
    seen: set[int] = set()
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"key file {path}, line {number}"
        if len(fields) != 2 or not fields[0].isdigit():
            raise KeyFileError(f"{where}: expected 'accountno key'")
        account_no = int(fields[0])
        key = fields[1].encode("ascii")
        if not 0 < account_no < 2**63:
            raise KeyFileError(f"{where}: account number {account_no} out of range")
        if len(key) != KEY_LENGTH:
            raise KeyFileError(f"{where}: key of {len(key)} characters, expected {KEY_LENGTH}")
        if account_no in seen:
            raise KeyFileError(f"{where}: account {account_no} listed twice")
        seen.add(account_no)
        keys.append((account_no, key))
    if not keys:
        raise KeyFileError(f"key file {path} lists no accounts")
    return keys


def keys_of(worker: int, processes: int, keys: Sequence[AccountKey]) -> list[AccountKey]:
    """One worker's share of the accounts (disjoint across workers)."""
    return list(keys[worker::processes])


def check_key_count(config: DummyConfig, accounts: int) -> None:
    """Enough accounts for the run: one per client; with relogin two per client,
    so that a client always finds an account whose last session has had time
    to close (the free queue rotates through the spare ones)."""
    clients = config.clients
    if accounts < clients:
        raise KeyFileError(
            f"key file {config.keys_file} has {accounts} accounts, fewer than the "
            f"{clients} clients (one account per client)"
        )
    if config.relogin and accounts < 2 * clients:
        raise KeyFileError(
            f"--relogin needs at least 2 × clients = {2 * clients} accounts; "
            f"key file {config.keys_file} has {accounts}"
        )
