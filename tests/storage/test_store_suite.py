"""One suite for every `Store`: each backend must decide exactly like the GCRA reference.

A backend joins by adding a parameter to the `backend` fixture that yields a `Backend`: the
store, and a way to move its clock forward (a fake clock for memory; a real backend may
sleep or shift its time source). The Redis store runs against a real server and a real
three-master cluster, its scripts deciding on the fake clock's time instead of the
server's (only tests can set that), so that every answer can be checked exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio

from resilient.storage import Decision, MemoryStore, RedisStore, Store
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

T = 0.25  # emission interval: 4 permits per second
BURST = 4


@dataclass
class Backend:
    store: Store
    advance: Callable[[float], None]


#: (store, event loop) pairs: the Redis store runs on asyncio only.
SETUPS = [
    pytest.param(("memory", "asyncio"), id="memory-asyncio"),
    pytest.param(("memory", "trio"), id="memory-trio"),
    pytest.param(("redis", "asyncio"), id="redis", marks=pytest.mark.redis),
    pytest.param(("cluster", "asyncio"), id="redis-cluster", marks=pytest.mark.redis),
]


@pytest.fixture(params=SETUPS)
def setup(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(setup: tuple[str, str]) -> str:
    return setup[1]


@pytest.fixture
def redis_client(setup: tuple[str, str], request: pytest.FixtureRequest) -> Any:
    """A fresh client for this test's event loop (None for memory)."""
    if setup[0] == "redis":
        return redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
    if setup[0] == "cluster":
        return redis.asyncio.RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"))
    return None


@pytest.fixture
async def backend(redis_client: Any, prefix: str) -> AsyncIterator[Backend]:
    clock = FakeClock(start=1000.0)
    if redis_client is None:
        yield Backend(MemoryStore(clock=clock), clock.advance)
        return
    # "deny": a store that cannot reach Redis must fail the test, not allow quietly.
    store = RedisStore(redis_client, prefix=prefix, on_unavailable="deny", timeout=5.0)
    store._now = clock.now
    try:
        yield Backend(store, clock.advance)
    finally:
        await redis_client.aclose()


async def take(
    backend: Backend, key: str = "k", *, cost: int = 1, max_wait: float = 0.0
) -> Decision:
    return await backend.store.acquire(
        key, emission_interval=T, burst=BURST, cost=cost, max_wait=max_wait
    )


async def peek(backend: Backend, key: str = "k") -> int:
    return await backend.store.peek(key, emission_interval=T, burst=BURST)


def test_memory_store_implements_the_protocol() -> None:
    assert isinstance(MemoryStore(), Store)


def test_redis_store_implements_the_protocol() -> None:
    assert isinstance(RedisStore("redis://127.0.0.1:1/0"), Store)


async def test_a_fresh_key_admits_a_full_burst_at_once(backend: Backend) -> None:
    decisions = [await take(backend) for _ in range(BURST)]
    assert all(d.allowed and d.wait == 0.0 for d in decisions)
    assert [d.remaining for d in decisions] == [3, 2, 1, 0]


async def test_an_empty_bucket_rejects_with_the_exact_retry_after(backend: Backend) -> None:
    for _ in range(BURST):
        await take(backend)
    backend.advance(0.1)
    decision = await take(backend)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(T - 0.1)
    assert decision.remaining == 0


async def test_a_rejection_changes_nothing(backend: Backend) -> None:
    for _ in range(BURST):
        await take(backend)
    await take(backend)
    await take(backend, cost=3)
    backend.advance(T)
    assert (await take(backend)).allowed
    assert not (await take(backend)).allowed


async def test_the_bucket_refills_one_permit_per_emission_interval(backend: Backend) -> None:
    for _ in range(BURST):
        await take(backend)
    backend.advance(2 * T)
    assert await peek(backend) == 2
    backend.advance(10.0)
    assert await peek(backend) == BURST  # never more than the burst


async def test_cost_takes_several_permits(backend: Backend) -> None:
    assert (await take(backend, cost=3)).remaining == 1
    decision = await take(backend, cost=2)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(T)


async def test_a_request_that_can_wait_reserves_its_permits(backend: Backend) -> None:
    for _ in range(BURST):
        await take(backend)
    first = await take(backend, max_wait=1.0)
    second = await take(backend, max_wait=1.0)
    assert (first.allowed, second.allowed) == (True, True)
    assert first.wait == pytest.approx(T)
    assert second.wait == pytest.approx(2 * T)  # queued behind the first reservation
    too_far = await take(backend, max_wait=2 * T)
    assert not too_far.allowed
    assert too_far.retry_after == pytest.approx(3 * T)


async def test_refund_gives_back_the_latest_reservation(backend: Backend) -> None:
    for _ in range(BURST):
        await take(backend)
    reservation = await take(backend, max_wait=1.0)
    assert await backend.store.refund("k", tat=reservation.tat, emission_interval=T, cost=1)
    again = await take(backend, max_wait=1.0)
    assert again.wait == pytest.approx(T)  # the same place in line, free again


async def test_refund_of_an_older_reservation_changes_nothing(backend: Backend) -> None:
    for _ in range(BURST):
        await take(backend)
    older = await take(backend, max_wait=1.0)
    await take(backend, max_wait=1.0)
    refunded = await backend.store.refund("k", tat=older.tat, emission_interval=T, cost=1)
    assert not refunded
    assert (await take(backend, max_wait=1.0)).wait == pytest.approx(3 * T)


async def test_refund_of_an_unknown_key_changes_nothing(backend: Backend) -> None:
    refunded = await backend.store.refund("nobody", tat=5.0, emission_interval=T, cost=1)
    assert not refunded
    assert await peek(backend, "nobody") == BURST


async def test_keys_are_independent(backend: Backend) -> None:
    for _ in range(BURST):
        await take(backend, "a")
    assert not (await take(backend, "a")).allowed
    assert (await take(backend, "b")).allowed
    assert await peek(backend, "b") == BURST - 1


HOSTILE_KEYS = [
    "é🙂中文",
    "x" * 100_000,
    "\x00",
    "a\x00b",
    "\r\n\t\x1b[2J",
    "{hash-tag}",
    "*",
    "key:with:colons",
    " ",
    "\ud800",  # a lone surrogate: a valid str, not encodable as UTF-8
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=range(len(HOSTILE_KEYS)))
async def test_hostile_keys_are_ordinary_independent_buckets(backend: Backend, key: str) -> None:
    for _ in range(BURST):
        assert (await take(backend, key)).allowed
    assert not (await take(backend, key)).allowed
    assert await peek(backend, key) == 0
    for other in ("k", key[:-1] or "other", key + "\x00"):
        assert await peek(backend, other) == BURST
