"""Key stores: a handed-over key works once, only for its account, until it
expires; the Redis store against the local Redis server (never a mock)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import pytest

from serverlink.store.keys import KeyStore, KeyStoreUnavailable, MemoryKeyStore, RedisKeyStore

REDIS_URL = os.environ.get("SERVERLINK_TEST_REDIS", "redis://127.0.0.1:6379/0")
KEY = b"k" * 64


async def redis_store(namespace: str) -> RedisKeyStore:
    store = RedisKeyStore(REDIS_URL, namespace)
    try:
        await store.client.ping()
    except Exception as exc:
        await store.close()
        reason = f"Redis not usable at {REDIS_URL} ({exc}); run .ci/services.sh"
        if os.environ.get("SERVERLINK_TEST_REQUIRE_REDIS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return store


@pytest.fixture(params=["memory", "redis"])
async def keys(request: pytest.FixtureRequest) -> AsyncIterator[KeyStore]:
    if request.param == "memory":
        yield MemoryKeyStore()
        return
    store = await redis_store(f"test-{secrets.token_hex(4)}")
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


async def test_a_redis_key_is_taken_once_across_processes_and_namespaces() -> None:
    namespace = f"test-{secrets.token_hex(4)}"
    first, second = await redis_store(namespace), await redis_store(namespace)
    elsewhere = await redis_store(namespace + "-other")
    try:
        await first.put(7, KEY, 60)
        assert not await elsewhere.take(7, KEY)  # another server's namespace
        results = await asyncio.gather(*(s.take(7, KEY) for s in (first, second) * 5))
        assert results.count(True) == 1
    finally:
        for store in (first, second, elsewhere):
            await store.close()


async def test_redis_down_is_a_clear_error() -> None:
    store = RedisKeyStore("redis://127.0.0.1:1/0", "test", timeout=0.5)
    try:
        with pytest.raises(KeyStoreUnavailable, match=r"Redis at redis://127\.0\.0\.1:1/0"):
            await store.take(1, KEY)
    finally:
        await store.close()
