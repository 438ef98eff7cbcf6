"""Accounts and session keys of login mode: the file that ``serverlink db seed
--keys-out`` writes, one ``accountno key`` line per account.

Every worker process loads the file itself (a few thousand short lines) and
keeps its own share, ``keys_of``: worker i of P takes lines i, i+P, i+2P, ...
so no two processes ever use the same account. ``AccountPool``: one worker's
accounts, taken for a login flow and given back after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.metrics import Meter
from serverlink.protocol.packets import CS_GAME_REQ_LOGIN, CS_LOGIN_REQ_LOGIN

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


class Account:
    """One account of the key file, as a worker uses it."""

    __slots__ = ("cut_at", "free_at", "game_request", "key", "left_game_at", "login_request", "no")

    def __init__(self, no: int, key: bytes, version: int) -> None:
        self.no = no
        self.key = key
        # Its two request payloads never change: built once, not per flow (the
        # frames around them still get a fresh random byte each time).
        self.login_request = CS_LOGIN_REQ_LOGIN.build(no, key)
        self.game_request = CS_GAME_REQ_LOGIN.build(no, key, version)
        #: Loop time before which it is not handed out again.
        self.free_at = 0.0
        #: Loop time its last game connection closed (None: not in game this run).
        self.left_game_at: float | None = None
        #: Loop time its last game session was cut by the server (None: not so).
        self.cut_at: float | None = None


class AccountPool:
    """One worker's free accounts, first in first out.

    An account is taken for one flow and given back only once that flow's game
    connection is fully closed, to the *back* of the queue, with the earliest
    time it may be handed out again (``reuse_delay`` later; see
    ``DummyConfig.account_reuse_delay``). With more accounts than clients the
    account at the front has been free the longest, so takers rarely wait.
    """

    def __init__(self, accounts: Sequence[Account], reuse_delay: float, meter: Meter) -> None:
        self.reuse_delay = reuse_delay
        self.meter = meter
        self._loop = asyncio.get_running_loop()
        self._free: deque[Account] = deque(accounts)
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._free)

    @property
    def takers_waiting(self) -> int:
        """Takers parked until an account comes back."""
        return sum(1 for w in self._waiters if not w.done())

    async def take(self) -> Account:
        loop = self._loop
        if not self._free or self._free[0].free_at > loop.time():
            self.meter.account_wait += 1
        while not self._free:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, but leaving: pass the turn on
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
        account = self._free.popleft()
        wait = account.free_at - loop.time()
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                self._free.appendleft(account)
                self._wake()
                raise
        return account

    def give_back(self, account: Account) -> None:
        account.free_at = self._loop.time() + self.reuse_delay
        self._free.append(account)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
