"""LimitsStore on limits' async Redis storage (redis-py), against a real Redis.

Redis keeps its own time, so these tests use real windows of 1 s: 4 permits per second
(burst 4, one permit every 0.25 s), or 2 (one every 0.5 s) where a test waits for the
window. Each test counts under a prefix of its own.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis.asyncio
from limits.aio.storage import RedisStorage

from resilient import RateLimitedError, RateLimiter
from resilient.interop.limits import LimitsStore
from resilient.storage import Decision

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

T = 0.25
BURST = 4

STRATEGIES = ("fixed-window", "moving-window", "sliding-window-counter")


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def store(redis_storage: RedisStorage, strategy: str, prefix: str) -> LimitsStore:
    return LimitsStore(redis_storage, strategy=strategy, prefix=prefix)


async def take(
    store: LimitsStore, key: str = "k", *, cost: int = 1, max_wait: float = 0.0
) -> Decision:
    return await store.acquire(key, emission_interval=T, burst=BURST, cost=cost, max_wait=max_wait)


async def test_a_full_burst_then_a_rejection_until_the_window_opens(store: LimitsStore) -> None:
    decisions = [await take(store) for _ in range(BURST)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [3, 2, 1, 0]
    refused = await take(store)
    assert not refused.allowed
    assert refused.remaining == 0
    assert 0 < refused.retry_after <= 1.05


async def test_cost_peek_and_a_refusal_that_takes_nothing(store: LimitsStore) -> None:
    assert await store.peek("k", emission_interval=T, burst=BURST) == BURST
    assert (await take(store, cost=2)).remaining == 2
    assert not (await take(store, cost=3)).allowed
    assert await store.peek("k", emission_interval=T, burst=BURST) == 2
    assert (await take(store, cost=2)).allowed
    assert not (await take(store)).allowed


async def test_stores_on_one_redis_share_the_count(
    redis_url: str, redis_storage: RedisStorage, strategy: str, prefix: str
) -> None:
    pool = redis.asyncio.ConnectionPool.from_url(redis_url)
    try:
        other_storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            connection_pool=pool,  # type: ignore[arg-type]  # limits types options as scalars
        )
        here = LimitsStore(redis_storage, strategy=strategy, prefix=prefix)
        there = LimitsStore(other_storage, strategy=strategy, prefix=prefix)
        assert (await take(here, cost=3)).allowed
        assert not (await take(there, cost=2)).allowed
        assert (await take(there)).allowed
    finally:
        await pool.aclose()


async def test_stores_of_different_strategies_never_share_a_key(
    redis_storage: RedisStorage, prefix: str
) -> None:
    # The fixed window keeps a counter where the moving window keeps a list.
    for strategy in STRATEGIES:
        store = LimitsStore(redis_storage, strategy=strategy, prefix=prefix)
        assert (await take(store, cost=BURST)).allowed
        assert not (await take(store)).allowed


HOSTILE_KEYS = ["{braces}", "with/slashes", "new\nline", "é-ключ", "", "z" * 1_000_000]


async def test_any_key_is_its_own_bucket_under_a_short_name(
    store: LimitsStore, redis_url: str, prefix: str
) -> None:
    for key in HOSTILE_KEYS:
        assert (await take(store, key, cost=BURST)).allowed
    for key in HOSTILE_KEYS:
        assert not (await take(store, key)).allowed
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        names = [name async for name in client.scan_iter(match=f"*{prefix}*")]
    finally:
        await client.aclose()
    assert names
    assert max(len(name) for name in names) < 200


async def test_the_limiter_on_redis_admits_its_burst_then_rejects(
    store: LimitsStore, prefix: str
) -> None:
    limiter = RateLimiter(BURST, per=1.0, store=store, name=prefix)

    @limiter
    async def call() -> str:
        return "ok"

    assert [await call() for _ in range(BURST)] == ["ok"] * BURST
    with pytest.raises(RateLimitedError) as caught:
        await call()
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 1.05
    assert await limiter.remaining() == 0


async def test_the_limiter_on_redis_waits_for_the_window_within_max_wait(
    store: LimitsStore, prefix: str
) -> None:
    limiter = RateLimiter(2, per=1.0, max_wait=1.5, store=store, name=prefix)
    await limiter.acquire(cost=2)
    started = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - started <= 1.5
