"""RedisStore specifics against a real Redis: construction, RateLimiter on Redis, keys,
scripts, cancellation. (The decisions themselves are the store suite's.)"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio

from resilient import RateLimitedError, RateLimiter
from resilient.storage import MemoryStore, RedisStore
from resilient.testing import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

T = 0.25
BURST = 4


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's client is asyncio's


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    found = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield found
    finally:
        await found.aclose()


@pytest.fixture
def store(client: redis.asyncio.Redis, prefix: str) -> RedisStore:
    return RedisStore(client, prefix=prefix, on_unavailable="deny", timeout=5.0)


async def take(store: RedisStore, key: str | bytes = "k", cost: int = 1) -> bool:
    decision = await store.acquire(
        key,  # type: ignore[arg-type]  # the store takes bytes too
        emission_interval=T,
        burst=BURST,
        cost=cost,
        max_wait=0.0,
    )
    return decision.allowed


# -- construction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": ""}, "prefix must be a non-empty string, got ''"),
        ({"prefix": 7}, "prefix must be a non-empty string, got 7"),
        ({"prefix": "a{b"}, "prefix must not contain '{' or '}'"),
        ({"on_unavailable": "open"}, "on_unavailable must be one of 'allow', 'deny' or 'local'"),
        ({"on_unavailable": None}, "got None"),
        ({"timeout": 0}, "timeout must be a finite number > 0, got 0"),
        ({"timeout": float("inf")}, "timeout must be a finite number > 0, got inf"),
        ({"timeout": True}, "timeout must be a finite number > 0, got True"),
    ],
)
def test_bad_settings_name_the_field_and_the_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        RedisStore("redis://127.0.0.1:6379/0", **kwargs)


def test_a_synchronous_client_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"would block the event loop: use redis\.asyncio"):
        RedisStore(redis.Redis())  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 6379, b"redis://x", "localhost:6379", "http://x"])
def test_anything_but_a_url_or_an_async_client_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="client_or_url must be"):
        RedisStore(value)


def test_a_refused_url_does_not_show_its_password() -> None:
    with pytest.raises(ValueError, match="client_or_url") as caught:
        RedisStore("redis://user:hunter2@127.0.0.1:notaport/0")
    assert "hunter2" not in str(caught.value)


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'resilient-patterns[redis]'")):
        RedisStore("redis://127.0.0.1:6379/0")


def test_the_repr_shows_settings_not_the_url() -> None:
    store = RedisStore("redis://:secret@127.0.0.1:6379/0", prefix="app", on_unavailable="local")
    assert repr(store) == "RedisStore(prefix='app', on_unavailable='local', timeout=0.25)"


async def connections_named(client: redis.asyncio.Redis, name: str) -> int:
    return sum(1 for c in await client.client_list() if c["name"] == name)


async def test_a_store_built_from_a_url_owns_and_closes_its_client(
    redis_url: str, client: redis.asyncio.Redis
) -> None:
    name = f"store-{uuid.uuid4().hex[:8]}"
    async with RedisStore(f"{redis_url}?client_name={name}", timeout=0.5) as store:
        assert isinstance(store.client, redis.asyncio.Redis)
        assert store.client.get_connection_kwargs()["socket_timeout"] == 0.5
        await asyncio.gather(
            *(store.peek(f"k{i}", emission_interval=T, burst=BURST) for i in range(50))
        )
        # Every round trip of the store travels on one pipelined connection.
        assert await connections_named(client, name) == 1
    await asyncio.sleep(0.05)  # the server notices the close
    assert await connections_named(client, name) == 0


async def test_a_client_passed_in_stays_open(client: redis.asyncio.Redis) -> None:
    await RedisStore(client).aclose()
    assert await client.ping()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_the_store_says_it_needs_asyncio(anyio_backend: str) -> None:
    store = RedisStore("redis://127.0.0.1:6379/0")
    with pytest.raises(RuntimeError, match="asyncio only"):
        await store.peek("k", emission_interval=T, burst=BURST)


# -- RateLimiter on Redis ------------------------------------------------------------------


async def outcome(limiter: RateLimiter, key: str, cost: int) -> tuple[str, float]:
    try:
        await limiter.acquire(key=key, cost=cost)
    except RateLimitedError as exc:
        return "rejected", round(exc.retry_after or -1.0, 6)
    return "allowed", 0.0


async def test_a_limiter_on_redis_decides_like_one_in_memory(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    clock = FakeClock(start=50.0, autojump=False)
    redis_store = RedisStore(client, prefix=prefix, on_unavailable="deny")
    redis_store._now = clock.now
    on_redis = RateLimiter(4, per=1.0, burst=6, store=redis_store, clock=clock, name="api")
    in_memory = RateLimiter(4, per=1.0, burst=6, store=MemoryStore(clock=clock), name="api")
    steps = [("a", 1), ("a", 3), ("b", 6), ("a", 2), ("a", 1), ("b", 1), ("a", 4), ("c", 5)]
    for i, (key, cost) in enumerate(steps * 3):
        clock.advance(0.05 * (i % 4))
        assert await outcome(on_redis, key, cost) == await outcome(in_memory, key, cost)
        for k in "abc":
            assert await on_redis.remaining(k) == await in_memory.remaining(k)


async def test_a_limiter_on_redis_waits_for_its_turn_with_max_wait(store: RedisStore) -> None:
    smooth = RateLimiter(100, burst=1, max_wait=1.0, store=store)
    started = time.monotonic()
    for _ in range(5):
        await smooth.acquire()
    assert time.monotonic() - started >= 0.035  # the 2nd to 5th permits each waited ~10 ms


async def test_a_cancelled_waiter_gives_its_reservation_back(store: RedisStore) -> None:
    limiter = RateLimiter(2, burst=1, max_wait=5.0, store=store)
    await limiter.acquire()
    with anyio.move_on_after(0.05):
        await limiter.acquire()  # reserved the next permit, 0.5 s ahead, then cancelled
    with pytest.raises(RateLimitedError) as caught:
        await RateLimiter(2, burst=1, store=store).acquire()  # same name, same buckets
    assert caught.value.retry_after is not None
    assert caught.value.retry_after < 0.5  # the reservation is gone: only the first permit


# -- keys ----------------------------------------------------------------------------------

HOSTILE_KEYS: list[str | bytes] = [
    "",
    "x" * 1_000_000,
    b"\x00" * 1_000_000,
    bytes(range(256)),
    "{}",
    "{",
    "}{",
    "{tag}rest",
    "\n",
    "line\r\nbreak",
    "\ud800",
]


async def test_hostile_keys_are_ordinary_independent_buckets(
    store: RedisStore, client: redis.asyncio.Redis, prefix: str
) -> None:
    store._now = FakeClock(start=50.0, autojump=False).now  # no refill while 1 MB keys travel
    for key in HOSTILE_KEYS:
        for _ in range(BURST):
            assert await take(store, key)
        assert not await take(store, key), key[:20]
    for key in HOSTILE_KEYS:
        assert await store.peek(key, emission_interval=T, burst=BURST) == 0  # type: ignore[arg-type]
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    assert len(keys) == len(HOSTILE_KEYS)
    pattern = re.compile(rf"{prefix}:rl:\{{[0-9a-f]{{32}}\}}".encode())
    assert all(pattern.fullmatch(k) for k in keys), keys


async def test_a_key_is_its_bytes_given_as_str_or_bytes(store: RedisStore) -> None:
    assert await take(store, "", cost=BURST)
    assert not await take(store, b"")
    assert await take(store, "é".encode(), cost=BURST)
    assert not await take(store, "é")


async def test_a_client_that_decodes_responses_works_alike(redis_url: str, prefix: str) -> None:
    decoding = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = RedisStore(decoding, prefix=prefix, on_unavailable="deny")
        decision = await store.acquire("k", emission_interval=T, burst=BURST, cost=3, max_wait=0)
        assert (decision.allowed, decision.remaining) == (True, 1)
        rejected = await store.acquire("k", emission_interval=T, burst=BURST, cost=2, max_wait=0)
        assert not rejected.allowed
        assert rejected.retry_after == pytest.approx(T, abs=0.05)
        assert await store.peek("k", emission_interval=T, burst=BURST) == 1
    finally:
        await decoding.aclose()


async def test_a_bucket_expires_when_it_is_full_again(
    store: RedisStore, client: redis.asyncio.Redis
) -> None:
    await take(store, "k", cost=3)
    ttl = await client.pttl(store._key("k"))
    assert 3 * T * 1000 - 100 <= ttl <= 3 * T * 1000


# -- scripts -------------------------------------------------------------------------------


async def test_scripts_flushed_mid_run_are_sent_again(
    store: RedisStore, client: redis.asyncio.Redis
) -> None:
    assert await take(store, cost=2)
    await client.script_flush()
    assert await take(store, cost=2)  # NOSCRIPT, then the script itself
    assert not await take(store)  # the state survived: the bucket is empty
    assert await client.script_exists(store._scripts["acquire"].sha) == [True]
    await client.script_flush()
    assert await store.peek("k", emission_interval=T, burst=BURST) == 0
    await client.script_flush()
    assert not await store.refund("k", tat=1.0, emission_interval=T, cost=1)


async def test_scripts_flushed_on_every_cluster_node_are_sent_again(
    redis_cluster_url: str, prefix: str
) -> None:
    cluster = redis.asyncio.RedisCluster.from_url(redis_cluster_url)
    try:
        store = RedisStore(cluster, prefix=prefix, on_unavailable="deny", timeout=5.0)
        keys = [f"key-{i}" for i in range(12)]  # spread over the three masters
        for key in keys:
            assert await take(store, key, cost=BURST)
        await cluster.script_flush()  # on every master
        for key in keys:
            assert not await take(store, key)
        slots = {cluster.keyslot(store._key(key)) for key in keys}
        assert len({cluster.nodes_manager.get_node_from_slot(s).name for s in slots}) == 3
    finally:
        await cluster.aclose()


# -- cancellation --------------------------------------------------------------------------


async def test_a_call_cancelled_after_redis_decided_leaves_no_state_behind(
    store: RedisStore, client: redis.asyncio.Redis
) -> None:
    # The script runs and takes the permits, but the answer never reaches the caller,
    # who is cancelled meanwhile.
    execute, answered = _lose_acquire_replies(store)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(take, store, "k", 3)
        await answered.wait()
        assert await client.exists(store._key("k"))
        tasks.cancel_scope.cancel()
    store._execute = execute
    assert not await client.exists(store._key("k"))  # given back: a full bucket again
    assert await store.peek("k", emission_interval=T, burst=BURST) == BURST


async def test_a_cancelled_call_keeps_permits_someone_took_after_it(store: RedisStore) -> None:
    execute, answered = _lose_acquire_replies(store)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(take, store, "k", 2)
        await answered.wait()
        store._execute = execute
        assert await take(store, "k")  # a later request takes a permit
        tasks.cancel_scope.cancel()
    assert await store.peek("k", emission_interval=T, burst=BURST) == BURST - 3


async def test_a_nonce_gives_back_one_reservation_once(store: RedisStore) -> None:
    execute = store._execute
    calls: list[tuple[Any, ...]] = []

    async def spy(*args: Any) -> Any:
        calls.append(args)
        return await execute(*args)

    store._execute = spy
    await take(store, "k", cost=2)
    nonce = calls[-1][4].split()[4]  # EVALSHA sha 1 key "T burst cost max_wait nonce"
    refund_args = f"n {nonce} {T!r} 2"
    assert await store._call("refund", store._key("k"), refund_args, False) == 1
    assert await store._call("refund", store._key("k"), refund_args, False) == 0
    assert await store.peek("k", emission_interval=T, burst=BURST) == BURST


async def test_concurrent_decisions_on_one_key_never_overdraw(store: RedisStore) -> None:
    results = await asyncio.gather(*(take(store, "hot") for _ in range(64)))
    assert sum(results) == BURST


# -- one pipelined connection ----------------------------------------------------------


async def test_callers_cancelled_in_flight_leave_the_others_answers_in_order(
    store: RedisStore,
) -> None:
    # 200 decisions on 200 keys share the store's one connection; half are cancelled
    # while their replies are on the way. Every other caller gets its own key's answer.
    async def decide(i: int) -> tuple[int, int]:
        decision = await store.acquire(
            f"k{i}", emission_interval=T, burst=BURST, cost=1 + i % 3, max_wait=0.0
        )
        return i, decision.remaining

    tasks = [asyncio.ensure_future(decide(i)) for i in range(200)]
    await asyncio.sleep(0)  # every command written, no reply read yet
    for task in tasks[::2]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    for i, result in enumerate(done):
        if i % 2:
            assert result == (i, BURST - (1 + i % 3))
        else:
            assert isinstance(result, asyncio.CancelledError)
    # The connection carries on, and cancelled callers gave their permits back.
    assert await store.peek("k0", emission_interval=T, burst=BURST) == BURST
    assert await store.peek("k1", emission_interval=T, burst=BURST) == BURST - 2


async def test_an_error_reply_fails_its_caller_only(
    store: RedisStore, client: redis.asyncio.Redis
) -> None:
    await client.rpush(store._key("a list"), "x")  # a key of ours holding another type
    results = await asyncio.gather(
        *(take(store, "a list" if i == 5 else f"k{i}") for i in range(10)),
        return_exceptions=True,
    )
    assert isinstance(results[5], redis.ResponseError)
    assert [r for i, r in enumerate(results) if i != 5] == [True] * 9
    assert await take(store, "k0")


def _lose_acquire_replies(store: RedisStore) -> tuple[Any, anyio.Event]:
    """Make the store's acquire scripts run but their replies never arrive (the caller
    hangs until cancelled); returns the store's own `_execute`, to put back, and an event
    set once a script has run."""
    execute = store._execute
    answered = anyio.Event()

    async def lost_reply(*args: Any) -> Any:
        reply = await execute(*args)
        if args[1] in store._scripts["acquire"]:  # EVALSHA <sha>, or EVAL <text>
            answered.set()
            await anyio.sleep_forever()
        return reply

    store._execute = lost_reply
    return execute, answered
