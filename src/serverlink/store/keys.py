"""Session keys handed over by a login server, waiting for their client.

A ``KeyStore`` holds at most one key per account, each with a time-to-live.
``take`` is atomic: it succeeds only for the right key, removes it, and so a
key works once. ``MemoryKeyStore`` keeps them in this process (the login
server hands each key over the LAN link); ``RedisKeyStore`` keeps them in
Redis, shared by every login server, server and worker that uses it (the
login server puts the key there, no LAN round trip).
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from serverlink.batch import TurnBatcher
from serverlink.retry import STORE_RETRY
from serverlink.store.url import mask_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: ``--key-store`` forms (the message of a bad one says them).
REDIS_URL_FORM = "redis://[:password@]host[:port][/db][?namespace=name]"
KEY_STORE_FORMS = f"memory, or {REDIS_URL_FORM}"
#: The namespace of every Redis key serverlink writes, unless the URL names another.
DEFAULT_NAMESPACE = "serverlink"


class KeyStore(abc.ABC):
    #: Shared by every process that opens it: a login server may put keys
    #: there itself for a server that proved it uses the same one.
    shared: ClassVar[bool] = False

    @abc.abstractmethod
    async def put(self, account_no: int, key: bytes, ttl: float) -> None:
        """Keep ``key`` for ``account_no`` for ``ttl`` seconds (replacing an older one)."""

    @abc.abstractmethod
    async def take(self, account_no: int, key: bytes) -> bool:
        """True, and the key is gone, if ``key`` is the account's live key."""

    def put_now(self, account_no: int, key: bytes, ttl: float) -> bool:
        """``put`` without waiting, when the store can (one in this process);
        False: it cannot, await ``put``."""
        return False

    def take_now(self, account_no: int, key: bytes) -> bool | None:
        """``take`` without waiting, when the store can (one in this process);
        None: it cannot, await ``take``."""
        return None

    def scoped(self, server: str) -> KeyStore:
        """The keys of ``server`` (its announced name): a key put there works
        only on that server. A store of one process is one server's already."""
        return self

    async def prove(self) -> str | None:
        """Write a random proof of this scope's store where sharers can read it
        (``verify``); None: the store is not shared."""
        return None

    async def verify(self, server: str, proof: str) -> bool:
        """True if ``server`` wrote ``proof`` in this very store (so the login
        server may put its keys here, without the LAN hand-off)."""
        return False

    def snapshot(self) -> dict[str, int]:
        """Counters for the screens."""
        return {}

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release here
        """Release connections (a networked store)."""


class MemoryKeyStore(KeyStore):
    """Keys in a dict of this process. Expired keys are swept while keys are put
    (at most once a second), so no task is needed and memory stays bounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._keys: dict[int, tuple[bytes, float]] = {}
        self._clock = clock
        self._next_sweep = 0.0
        self.expired = 0

    async def put(self, account_no: int, key: bytes, ttl: float) -> None:
        self.put_now(account_no, key, ttl)

    async def take(self, account_no: int, key: bytes) -> bool:
        return self.take_now(account_no, key)

    def put_now(self, account_no: int, key: bytes, ttl: float) -> bool:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        self._keys[account_no] = (bytes(key), now + ttl)
        return True

    def take_now(self, account_no: int, key: bytes) -> bool:
        entry = self._keys.get(account_no)
        # Constant time: how much of a guessed key matched must not show in timing.
        if entry is None or not hmac.compare_digest(entry[0], key):
            return False
        del self._keys[account_no]
        if entry[1] < self._clock():
            self.expired += 1
            return False
        return True

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 1.0
        stale = [acc for acc, (_, deadline) in self._keys.items() if deadline < now]
        for acc in stale:
            del self._keys[acc]
        self.expired += len(stale)

    def __len__(self) -> int:
        return len(self._keys)

    def snapshot(self) -> dict[str, int]:
        return {"keys_waiting": len(self._keys), "keys_expired": self.expired}


class KeyStoreUnavailable(Exception):
    """The shared key store did not answer (Redis down or too slow); one line."""


class KeyStoreUrlError(ValueError):
    """A ``--key-store`` value that cannot be used; the message says what to fix."""


#: A batch's puts in one command: ``SET key value PX ttl`` for each key
#: (ARGV holds value and ttl in turn), one short reply for the batch.
_PUT = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PX', ARGV[2 * i])
end
return #KEYS
"""
#: A batch's takes in one command, each a compare-and-delete: a key is taken
#: only by its owner, and a wrong key leaves the right one in place. The reply
#: is one string, a character per key ("1" taken, "0" not): one bulk string is
#: the cheapest reply to read, where an array costs a parse per element.
_TAKE = """
local taken = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    taken[i] = '1'
  else
    taken[i] = '0'
  end
end
return table.concat(taken)
"""
_SCRIPTS = (_PUT.encode(), _TAKE.encode())
_PUT_SHA, _TAKE_SHA = (hashlib.sha1(script).hexdigest().encode() for script in _SCRIPTS)


def pack_command(*args: bytes) -> bytes:
    """One command in RESP, Redis's wire format. Written here, not redis-py's
    ``pack_command``: that one encodes and type-checks argument by argument in
    Python, and cost more than the rest of a batch's work; these are bytes."""
    return b"*%d\r\n%b" % (len(args), b"".join([b"$%d\r\n%b\r\n" % (len(a), a) for a in args]))


#: Seconds a proof of a server's store stays readable (it is written again each
#: time the server links to a login server).
PROOF_TTL = 600


def split_redis_url(url: str) -> tuple[str, str]:
    """``(url for redis-py, namespace)``; raises ``KeyStoreUrlError``."""
    shown = mask_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise KeyStoreUrlError(f"--key-store {shown!r}: use {KEY_STORE_FORMS}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for name, value in query if name == "namespace"]
    namespace = names[-1] if names else DEFAULT_NAMESPACE
    if not namespace or not namespace.replace("-", "").replace("_", "").isalnum():
        raise KeyStoreUrlError(
            f"--key-store {shown!r}: namespace must be letters, digits, '-' or '_'"
        )
    database = parts.path.lstrip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise KeyStoreUrlError(f"--key-store {shown!r}: the database must be a number (/0)")
    rest = urlencode([(name, value) for name, value in query if name != "namespace"])
    try:
        from redis.connection import parse_url

        parse_url(urlunsplit(parts._replace(query=rest)))  # type: ignore[no-untyped-call]
        _ = parts.port  # a port that is not a number
    except ValueError as exc:
        raise KeyStoreUrlError(f"--key-store {shown!r}: {exc}; use {KEY_STORE_FORMS}") from None
    return urlunsplit(parts._replace(query=rest)), namespace


def check_key_store_url(url: str | None) -> None:
    """Raise ``KeyStoreUrlError`` if ``open_key_store(url)`` would (settings, at start)."""
    if url is not None and url != "memory":
        split_redis_url(url)


def open_key_store(url: str | None, *, timeout: float = 2.0) -> KeyStore:
    """The key store ``url`` names: None or ``memory`` (this process), or a
    ``redis://`` URL (``?namespace=`` prefixes every key; default serverlink).
    Opening connects nothing: the first command does."""
    if url is None or url == "memory":
        return MemoryKeyStore()
    redis_url, namespace = split_redis_url(url)
    return RedisKeyStore(redis_url, namespace, timeout=timeout, shown=mask_url(url))


class RedisKeys:
    """The connection pool and the batching shared by every scope of one Redis
    key store. The puts (and the takes) asked for in one event-loop turn go out
    as one script call with one reply: at a thousand logins a second, a
    command and a reply per key cost redis-py's Python more than the round trip.
    (The keys of a batch are many keys in one script, so a Redis Cluster, which
    wants them in one slot, is not supported; one Redis, replicated, is.)"""

    def __init__(self, url: str, namespace: str, timeout: float, shown: str) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry as RedisRetry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import NoScriptError, RedisError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        # redis-py is imported here, on first use: a deployment on the memory store never loads it.
        self._no_script = NoScriptError
        self._failures = (RedisError, OSError)
        retried = (RedisConnectionError, RedisTimeoutError, OSError)
        self._retryable: Callable[[BaseException], bool] = lambda exc: isinstance(exc, retried)

        self.shown = shown
        self.namespace = namespace
        # Retries are ``call``'s (the one policy of serverlink.retry), none of redis-py's
        # (its default waits seconds between attempts to connect). The batch has one
        # deadline (``_send``): redis-py's socket timeout would run every send in a
        # task of its own (asyncio.wait_for) and every reply under a timer.
        self.timeout = timeout
        self.client: Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=timeout,
            retry=RedisRetry(NoBackoff(), 0),
        )
        # A key's requests in order: a newer put or take of an account in the
        # same turn supersedes the older one (a put replaces; a take loses). One
        # batch in flight: what comes meanwhile goes out together next, so batches
        # grow with the load. Each batch costs Redis and this process a wake-up,
        # a read and a write, more than its keys; with two in flight they were a
        # quarter smaller (18 keys against 24, bench/login_flows.sh's 200 clients).
        self.puts: TurnBatcher[bytes, tuple[bytes, bytes], bool] = TurnBatcher(
            self._put_batch, missing=False, ordered=True, superseded=True, max_in_flight=1
        )
        self.takes: TurnBatcher[bytes, bytes, bool] = TurnBatcher(
            self._take_batch, missing=False, ordered=True, superseded=False, max_in_flight=1
        )
        self._idle: list[Any] = []
        self.taken = 0
        self.failures = 0

    async def call(self, what: str, commands: list[tuple[bytes, ...]]) -> list[Any]:
        """Send ``commands`` at once and read their replies: one round trip.
        Straight on a pooled connection (redis-py's pipeline object costs more
        than the round trip at one command); a connection error is retried once
        on a fresh connection (``retry.STORE_RETRY``), a script Redis forgot
        (restarted) is loaded again. Raises ``KeyStoreUnavailable``."""
        try:
            try:
                return await STORE_RETRY.call_with_retry(
                    lambda: self._send(commands), self._retryable
                )
            except self._no_script:
                await self._send([(b"SCRIPT", b"LOAD", script) for script in _SCRIPTS])
                return await self._send(commands)
        except self._failures as exc:
            self.failures += 1
            raise KeyStoreUnavailable(f"{what}: Redis at {self.shown}: {exc}") from None

    async def _send(self, commands: list[tuple[bytes, ...]]) -> list[Any]:
        # The connections of the batches in flight are kept here between batches:
        # the pool's get and release (a lock, a readiness probe, its bookkeeping)
        # cost more CPU than a small batch's commands.
        idle = self._idle
        connection = idle.pop() if idle else None
        try:
            # One deadline for connecting (redis-py's hello on a new connection
            # reads without one) and the batch. TimeoutError is an OSError: retried.
            async with asyncio.timeout(self.timeout):
                if connection is None:
                    connection = await self.client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
                await connection.send_packed_command(
                    b"".join([pack_command(*command) for command in commands]),
                    check_health=False,
                )
                replies = [await connection.read_response() for _ in commands]
        except BaseException:
            # Replies may be left unread: the connection is not reused.
            if connection is not None:
                await connection.disconnect()
                await self.client.connection_pool.release(connection)
            raise
        idle.append(connection)
        return replies

    async def close(self) -> None:
        for connection in self._idle:
            await self.client.connection_pool.release(connection)
        self._idle.clear()
        await self.client.aclose()

    def _unexpected(self, what: str, reply: object) -> KeyStoreUnavailable:
        """A reply the scripts cannot give (not Redis, or not these scripts): the
        store is unusable, as when it does not answer."""
        self.failures += 1
        return KeyStoreUnavailable(f"{what}: Redis at {self.shown}: unexpected reply {reply!r:.40}")

    async def _put_batch(self, batch: dict[bytes, tuple[bytes, bytes]]) -> Mapping[bytes, bool]:
        values: list[bytes] = []
        for key_and_ttl in batch.values():
            values += key_and_ttl
        count = b"%d" % len(batch)
        (stored,) = await self.call("put key", [(b"EVALSHA", _PUT_SHA, count, *batch, *values)])
        if stored != len(batch):
            raise self._unexpected("put key", stored)
        return dict.fromkeys(batch, True)

    async def _take_batch(self, batch: dict[bytes, bytes]) -> Mapping[bytes, bool]:
        count = b"%d" % len(batch)
        (taken,) = await self.call(
            "take key", [(b"EVALSHA", _TAKE_SHA, count, *batch, *batch.values())]
        )
        if not isinstance(taken, bytes) or len(taken) != len(batch):
            raise self._unexpected("take key", taken)
        results = {name: flag == 49 for name, flag in zip(batch, taken, strict=True)}  # b"1"
        self.taken += taken.count(b"1")
        return results


class RedisKeyStore(KeyStore):
    """Keys in Redis, shared by every login server, server and worker that uses
    the same Redis and namespace. Each key lives under the name of the server
    the client was placed on (``scoped``): it works once, and only there.
    ``put`` is a ``SET … PX`` (Redis keeps the time-to-live), ``take`` a
    compare-and-delete (atomic: a key works once whichever process sees it
    first, and a wrong key does not remove the right one); each batched per
    event-loop turn into one Lua script call."""

    shared = True

    def __init__(
        self,
        url: str,
        namespace: str = DEFAULT_NAMESPACE,
        server: str = "",
        *,
        timeout: float = 2.0,
        shown: str | None = None,
        shared_keys: RedisKeys | None = None,
    ) -> None:
        self.url = shown or mask_url(url)
        self.keys = shared_keys or RedisKeys(url, namespace, timeout, self.url)
        self.namespace = namespace
        self.server = server
        self.prefix = f"{namespace}:key:{server}:".encode()

    @property
    def client(self) -> Redis:
        return self.keys.client

    def scoped(self, server: str) -> RedisKeyStore:
        return RedisKeyStore(self.url, self.namespace, server, shared_keys=self.keys)

    async def put(self, account_no: int, key: bytes, ttl: float) -> None:
        ttl_ms = b"%d" % max(1, int(ttl * 1000))
        await self.keys.puts.submit(self.prefix + b"%d" % account_no, (bytes(key), ttl_ms))

    async def take(self, account_no: int, key: bytes) -> bool:
        return await self.keys.takes.submit(self.prefix + b"%d" % account_no, bytes(key))

    def _proof_name(self, server: str, proof: str) -> bytes:
        # One name per proof: the links to several login servers prove at once.
        return f"{self.namespace}:proof:{server}:{proof}".encode()

    async def prove(self) -> str:
        proof = secrets.token_hex(16)
        name = self._proof_name(self.server, proof)
        await self.keys.call(
            "write proof", [(b"SET", name, proof.encode(), b"EX", b"%d" % PROOF_TTL)]
        )
        return proof

    async def verify(self, server: str, proof: str) -> bool:
        name = self._proof_name(server, proof)
        (found,) = await self.keys.call("read proof", [(b"GET", name)])
        return isinstance(found, bytes) and hmac.compare_digest(found, proof.encode())

    def snapshot(self) -> dict[str, int]:
        keys = self.keys
        return {
            "keys_taken": keys.taken,
            "key_store_failures": keys.failures,
            # Keys per batch (taken or put over batches) shows how well load is batched.
            "key_store_batches": keys.puts.batches + keys.takes.batches,
        }

    async def close(self) -> None:
        await self.keys.close()
