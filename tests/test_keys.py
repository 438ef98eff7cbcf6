"""Key stores: a handed-over key works once, only for its account and server,
until it expires; the Redis store against the local Redis server (never a mock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from serverlink.store.keys import (
    KeyStore,
    KeyStoreUnavailable,
    KeyStoreUrlError,
    MemoryKeyStore,
    RedisKeyStore,
    check_key_store_url,
    open_key_store,
)

KEY = b"k" * 64


@pytest.fixture(params=["memory", "redis"])
async def keys(request: pytest.FixtureRequest) -> AsyncIterator[KeyStore]:
    if request.param == "memory":
        yield MemoryKeyStore()
        return
    store = open_key_store(request.getfixturevalue("redis_url")).scoped("game@127.0.0.1:1")
    yield store
    await store.close()


async def test_a_key_works_once_and_only_for_its_account(keys: KeyStore) -> None:
    await keys.put(1, KEY, 60)
    assert not await keys.take(2, KEY)  # another account
    assert not await keys.take(1, b"x" * 64)  # a wrong key does not use it up
    assert await keys.take(1, KEY)
    assert not await keys.take(1, KEY)  # taken


async def test_a_newer_key_replaces_the_older_one(keys: KeyStore) -> None:
    await keys.put(1, KEY, 60)
    await keys.put(1, b"n" * 64, 60)
    assert not await keys.take(1, KEY)
    assert await keys.take(1, b"n" * 64)


async def test_an_unused_key_expires(keys: KeyStore) -> None:
    await keys.put(1, KEY, 0.2)
    await asyncio.sleep(0.4)  # the time-to-live is the behaviour under test
    assert not await keys.take(1, KEY)


async def test_a_redis_key_is_taken_once_across_processes_and_only_on_its_server(
    redis_url: str,
) -> None:
    login, first, second = (open_key_store(redis_url) for _ in range(3))
    try:
        await login.scoped("game@a:1").put(7, KEY, 60)
        assert not await first.scoped("game@b:1").take(7, KEY)  # another server
        takers = [s.scoped("game@a:1") for s in (first, second)] * 5
        results = await asyncio.gather(*(t.take(7, KEY) for t in takers))
        assert results.count(True) == 1
    finally:
        for store in (login, first, second):
            await store.close()


async def test_redis_commands_of_one_turn_share_one_round_trip(redis_url: str) -> None:
    store = open_key_store(redis_url)
    assert isinstance(store, RedisKeyStore)
    try:
        scoped = store.scoped("game@a:1")
        await asyncio.gather(*(scoped.put(n, KEY, 60) for n in range(50)))
        results = await asyncio.gather(
            *(scoped.take(n, KEY if n % 2 else b"x" * 64) for n in range(50))
        )
        assert results == [n % 2 == 1 for n in range(50)]
        # Wrong keys left the right ones in place.
        assert all(await asyncio.gather(*(scoped.take(n, KEY) for n in range(0, 50, 2))))
        assert (store.keys.puts.batches, store.keys.takes.batches) == (1, 2)
        assert scoped.snapshot()["key_store_batches"] == 3  # what operators see
    finally:
        await store.close()


async def test_a_proof_is_verified_only_in_the_same_store(redis_url: str) -> None:
    game, login = open_key_store(redis_url).scoped("game@a:1"), open_key_store(redis_url)
    elsewhere = open_key_store(redis_url + "-other")
    try:
        proof = await game.prove()
        assert proof is not None
        assert await login.verify("game@a:1", proof)
        assert not await login.verify("game@b:1", proof)
        assert not await login.verify("game@a:1", "0" * 32)
        assert not await elsewhere.verify("game@a:1", proof)  # another namespace
        assert await MemoryKeyStore().prove() is None
    finally:
        for store in (game, login, elsewhere):
            await store.close()


async def test_redis_down_is_a_clear_error() -> None:
    store = open_key_store("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        with pytest.raises(KeyStoreUnavailable, match=r"Redis at redis://127\.0\.0\.1:1/0"):
            await store.take(1, KEY)
    finally:
        await store.close()


async def test_a_silent_redis_is_unavailable_within_the_timeout() -> None:
    # A peer that accepts and reads but never answers, from its first byte
    # (redis-py's hello on connecting) on: the store's one deadline covers both.
    heard = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            heard.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = open_key_store(f"redis://127.0.0.1:{port}/0", timeout=0.3).scoped("game@a:1")
    try:
        async with asyncio.timeout(5):  # the store's own deadline is under test
            with pytest.raises(KeyStoreUnavailable, match="take key"):
                await store.take(1, KEY)
        assert heard.is_set()
    finally:
        await store.close()
        server.close()
        await server.wait_closed()


async def commands_answered(answer: bytes) -> asyncio.Server:
    """A peer on a port that answers every RESP command it reads with ``answer``:
    "+OK" to redis-py's hello, and then to the key store's scripts too."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while header := await reader.readline():  # *<n>, then n times $<len> and data
                for _ in range(int(header[1:])):
                    length = int((await reader.readline())[1:])
                    await reader.readexactly(length + 2)
                writer.write(answer)
        except (ValueError, asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(peer, "127.0.0.1", 0)


@pytest.mark.parametrize("answer", [b"+OK\r\n", b":7\r\n", b"$3\r\n101\r\n"])
async def test_a_reply_the_scripts_cannot_give_is_unavailable_not_a_crash(answer: bytes) -> None:
    # A wrong server on the key store's address (or a proxy in the way) must not
    # make logins fail with an exception nobody catches: one clear error per batch.
    server = await commands_answered(answer)
    port = server.sockets[0].getsockname()[1]
    store = open_key_store(f"redis://127.0.0.1:{port}/0", timeout=2).scoped("game@a:1")
    assert isinstance(store, RedisKeyStore)
    try:
        with pytest.raises(KeyStoreUnavailable, match=r"take key.*unexpected reply"):
            await store.take(1, KEY)
        with pytest.raises(KeyStoreUnavailable, match=r"put key.*unexpected reply"):
            await store.put(1, KEY, 60)
        assert store.snapshot()["key_store_failures"] == 2
    finally:
        await store.close()
        server.close()
        await server.wait_closed()


async def test_a_peer_that_does_not_speak_redis_is_unavailable() -> None:
    server = await commands_answered(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    port = server.sockets[0].getsockname()[1]
    store = open_key_store(f"redis://127.0.0.1:{port}/0", timeout=2).scoped("game@a:1")
    try:
        with pytest.raises(KeyStoreUnavailable, match="take key"):
            await store.take(1, KEY)
    finally:
        await store.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x", "use memory, or redis://"),
        ("redis://h:port/0", "redis://h:port/0"),
        ("redis://h/0?namespace=a:b", "namespace must be"),
        ("redis://:secret@h/x", r"redis://:\*\*\*@h/x.*must be a number"),
    ],
)
def test_a_bad_key_store_url_says_what_to_write(url: str, message: str) -> None:
    with pytest.raises(KeyStoreUrlError, match=message):
        check_key_store_url(url)
    check_key_store_url("memory")
    check_key_store_url("redis://127.0.0.1:6379/0?namespace=sl")
