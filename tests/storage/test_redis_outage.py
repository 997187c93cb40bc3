"""A Redis that dies, hangs and comes back, for each `on_unavailable` mode: no call hangs,
no undocumented error escapes, the store stops paying its timeout while Redis is down,
and limiting on Redis resumes by itself once Redis is back.

These tests run on a server of their own and measure wall-clock time, since what they
check is exactly how long a caller is held by a Redis that does not answer; the bounds
carry a wide margin for a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

import resilient.telemetry
from redis_servers import RedisCluster, RedisServer, free_port
from resilient import RateLimitedError, RateLimiter, StorageUnavailableError
from resilient.storage import RedisStore
from resilient.telemetry import Event

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

#: The store's timeout, and the most a call may take beyond it on a loaded machine.
TIMEOUT = 0.2
MARGIN = 0.4


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Run:
    """Tasks calling a limiter in a loop, recording how each call ended and how long it
    took, until told to stop."""

    def __init__(self, limiter: RateLimiter, store: RedisStore) -> None:
        self.limiter = limiter
        self.store = store
        self.outcomes: list[tuple[str, float, bool]] = []  # (outcome, seconds, store up)
        self.errors: list[BaseException] = []
        self.stopped = False

    async def _hammer(self) -> None:
        while not self.stopped:
            up = self.store.available
            started = time.monotonic()
            try:
                await self.limiter.acquire()
                outcome = "allowed"
            except RateLimitedError:
                outcome = "rejected"
            except StorageUnavailableError:
                outcome = "unavailable"
            except Exception as exc:
                self.errors.append(exc)
                outcome = "error"
            self.outcomes.append((outcome, time.monotonic() - started, up))
            await asyncio.sleep(0.005)

    async def during(self, body: Callable[[], Awaitable[None]], tasks: int = 8) -> None:
        workers = [asyncio.create_task(self._hammer()) for _ in range(tasks)]
        try:
            await body()
        finally:
            self.stopped = True
            await asyncio.gather(*workers)

    def since(self, index: int) -> set[str]:
        return {outcome for outcome, _, _ in self.outcomes[index:]}

    @property
    def slowest(self) -> float:
        return max(seconds for _, seconds, _ in self.outcomes)


async def wait_for(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)


async def limits_on_redis(store: RedisStore, server: RedisServer, key: str) -> bool:
    """Whether a fresh key is limited by Redis itself: its burst, then a rejection, and
    the bucket is in Redis."""
    limiter = RateLimiter(1, per=60.0, burst=2, store=store, name="probe")
    await limiter.acquire(key=key)
    await limiter.acquire(key=key)
    with pytest.raises(RateLimitedError):
        await limiter.acquire(key=key)
    async with redis.asyncio.Redis(port=server.port) as direct:
        return bool(await direct.exists(store._key(f"5:probe:{key}")))


@pytest.mark.parametrize("mode", ["allow", "deny", "local"])
async def test_redis_killed_mid_run_and_restarted(
    redis_server: RedisServer, prefix: str, mode: Any, telemetry: Any
) -> None:
    store = RedisStore(redis_server.url, prefix=prefix, on_unavailable=mode, timeout=TIMEOUT)
    events: list[Event] = []
    subscription = resilient.telemetry.subscribe(events.append, policy=store)
    limiter = RateLimiter(20, burst=10, store=store, name="api")
    run = Run(limiter, store)
    marks: dict[str, int] = {}

    async def outage() -> None:
        await asyncio.sleep(0.3)
        assert run.since(0) == {"allowed", "rejected"}  # limited on Redis
        redis_server.kill()
        marks["killed"] = len(run.outcomes)
        await wait_for(lambda: not store.available, within=2.0)
        marks["down"] = len(run.outcomes)
        await asyncio.sleep(0.5)
        marks["restarted"] = len(run.outcomes)
        redis_server.start()  # the same port
        await wait_for(lambda: store.available, within=6.0)
        marks["up"] = len(run.outcomes)
        await asyncio.sleep(0.2)

    try:
        await run.during(outage)
        assert await limits_on_redis(store, redis_server, "after")
    finally:
        subscription.close()
        await store.aclose()

    assert run.errors == []
    assert run.slowest < TIMEOUT + MARGIN
    while_down = [o for o, _, up in run.outcomes[marks["down"] : marks["restarted"]] if not up]
    assert while_down, "calls kept coming while Redis was down"
    expected = {"allow": {"allowed"}, "deny": {"unavailable"}, "local": {"allowed", "rejected"}}
    assert set(while_down) == expected[mode]
    if mode == "local":
        # The local fallback limits too: at most its burst plus its rate meanwhile.
        assert while_down.count("allowed") <= 10 + 20 * 3
    assert run.since(marks["up"] + 8) == {"allowed", "rejected"}  # limited on Redis again

    names = [event.name for event in events if event.name != "resilient.storage.round_trip"]
    assert names.count("resilient.storage.down") == 1
    assert names.count("resilient.storage.up") == 1
    assert names.index("resilient.storage.down") < names.index("resilient.storage.up")
    fallbacks = [e for e in events if e.name == "resilient.storage.fallback"]
    assert {e.attributes["resilient.storage.on_unavailable"] for e in fallbacks} == {mode}
    assert telemetry.metric_total(
        "resilient.storage.fallbacks", policy=prefix, **{"resilient.storage.on_unavailable": mode}
    ) == len(fallbacks)
    assert telemetry.metric_total("resilient.storage.unavailable", policy=prefix) == 0
    round_trips = telemetry.metric_total(
        "resilient.storage.duration", policy=prefix, **{"resilient.storage.operation": "acquire"}
    )
    assert round_trips >= len(run.outcomes) - len(fallbacks)


async def test_a_redis_that_hangs_holds_no_call_past_the_timeout(
    redis_server: RedisServer, prefix: str
) -> None:
    # A client of the user's, without socket timeouts: the store's own bound must hold.
    client = redis.asyncio.Redis(port=redis_server.port, socket_timeout=None)
    store = RedisStore(client, prefix=prefix, on_unavailable="allow", timeout=TIMEOUT)
    limiter = RateLimiter(20, burst=10, store=store)
    run = Run(limiter, store)
    marks: dict[str, int] = {}

    async def hang() -> None:
        await asyncio.sleep(0.2)
        redis_server.pause()  # connections are accepted, nothing is answered
        marks["paused"] = len(run.outcomes)
        await wait_for(lambda: not store.available, within=2.0)
        marks["down"] = len(run.outcomes)
        await asyncio.sleep(1.0)
        marks["resumed"] = len(run.outcomes)
        redis_server.resume()
        await wait_for(lambda: store.available, within=6.0)
        marks["up"] = len(run.outcomes)
        await asyncio.sleep(0.2)

    try:
        await run.during(hang)
    finally:
        await client.aclose()

    assert run.errors == []
    assert run.slowest < TIMEOUT + MARGIN
    # Once the store counted Redis as down, calls stopped waiting for it: only the
    # occasional probe pays the timeout.
    down = run.outcomes[marks["down"] + 8 : marks["resumed"]]
    fast = [seconds for _, seconds, _ in down if seconds < TIMEOUT / 2]
    assert len(fast) >= 0.9 * len(down) > 0
    assert run.since(marks["up"] + 8) == {"allowed", "rejected"}


async def test_a_down_store_answers_peek_and_refund_by_its_mode(prefix: str) -> None:
    port = free_port()  # nothing listens there
    for mode, expected in (("allow", 4), ("local", 4)):
        store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix=prefix, on_unavailable=mode)
        assert await store.peek("k", emission_interval=0.25, burst=4) == expected
        assert not await store.refund("k", tat=1.0, emission_interval=0.25, cost=1)
        await store.aclose()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix=prefix, on_unavailable="deny")
    with pytest.raises(StorageUnavailableError, match="cannot be reached") as caught:
        await store.peek("k", emission_interval=0.25, burst=4)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    assert not await store.refund("k", tat=1.0, emission_interval=0.25, cost=1)
    for _ in range(3):
        with pytest.raises(StorageUnavailableError):
            await store.acquire("k", emission_interval=0.25, burst=4, cost=1, max_wait=0.0)
    assert not store.available
    with pytest.raises(StorageUnavailableError, match="is down"):
        await store.acquire("k", emission_interval=0.25, burst=4, cost=1, max_wait=0.0)
    await store.aclose()


async def test_the_local_fallback_limits_with_the_same_settings(prefix: str) -> None:
    port = free_port()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix=prefix, on_unavailable="local")
    limiter = RateLimiter(1, per=60.0, burst=3, store=store)
    for _ in range(3):
        await limiter.acquire()
    with pytest.raises(RateLimitedError) as caught:
        await limiter.acquire()
    assert caught.value.retry_after == pytest.approx(60.0, abs=1.0)
    assert await limiter.remaining() == 0
    await store.aclose()


class CountingStore(RedisStore):
    """A RedisStore that counts its round trips to Redis."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.round_trips = 0
        execute = self._execute

        async def counted(*command: Any) -> Any:
            self.round_trips += 1
            return await execute(*command)

        self._execute = counted


@pytest.mark.parametrize("mode", ["allow", "local"])
async def test_while_down_the_limiter_decides_without_a_round_trip_until_a_probe_is_due(
    prefix: str, mode: Any
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = CountingStore(url, prefix=prefix, on_unavailable=mode)
    limiter = RateLimiter(1, per=60.0, burst=6, store=store)
    for _ in range(3):  # three refused round trips: down
        await limiter.acquire()
    assert not store.available
    store.round_trips = 0
    for _ in range(3):  # decided in this process: the local bucket, or allowed
        await limiter.acquire()
    if mode == "local":
        with pytest.raises(RateLimitedError) as caught:
            await limiter.acquire()
        assert caught.value.retry_after == pytest.approx(60.0, abs=1.0)
    else:
        await limiter.acquire()
    assert store.round_trips == 0
    store._guard.retry_at = 0.0  # the cool-down is over: the next call probes Redis
    with contextlib.suppress(RateLimitedError):
        await limiter.acquire()
    assert store.round_trips == 1
    await store.aclose()


async def test_while_down_each_local_decision_reports_one_fallback(prefix: str) -> None:
    # Taken at once, waited for, and refused: each decision is one fallback, however the
    # limiter reached it.
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = RedisStore(url, prefix=prefix, on_unavailable="local")
    waiting = RateLimiter(200, burst=2, max_wait=0.05, store=store, key="w", name=prefix)
    refusing = RateLimiter(1, per=60.0, burst=1, store=store, key="r", name=prefix)
    for _ in range(3):  # three refused round trips: down
        await waiting.acquire()
    assert not store.available
    events: list[Event] = []
    subscription = resilient.telemetry.subscribe(events.append)
    try:
        for _ in range(6):  # 2 from the burst, then 4 waits of 5 ms
            await waiting.acquire()
        await refusing.acquire()
        with pytest.raises(RateLimitedError):
            await refusing.acquire()
    finally:
        subscription.close()
        await store.aclose()
    fallbacks = [e for e in events if e.name == "resilient.storage.fallback"]
    assert len(fallbacks) == 8
    delayed = [e for e in events if e.name == "resilient.rate_limit.delayed"]
    assert len(delayed) >= 3  # the waits went through the local store's own wait


async def test_one_dead_cluster_master_sends_mostly_its_own_keys_to_the_policy(
    prefix: str,
) -> None:
    cluster = RedisCluster().start()  # its own: a master is killed
    client = redis.asyncio.RedisCluster.from_url(cluster.url)
    store = RedisStore(client, prefix=prefix, on_unavailable="deny", timeout=TIMEOUT)
    limiter = RateLimiter(1000, store=store)
    events: list[Event] = []
    subscription = resilient.telemetry.subscribe(events.append)
    try:
        # The client learns the topology and connects to every master (on a loaded
        # machine the first round trips may take longer than the store's timeout).
        await client.initialize()
        for node in client.get_primaries():
            await client.ping(target_nodes=node)
        owners: dict[int, list[str]] = {}
        for i in range(300):
            slot = client.keyslot(store._key(f"k{i}"))
            owners.setdefault(client.nodes_manager.get_node_from_slot(slot).port, []).append(
                f"k{i}"
            )
        assert len(owners) == 3
        dead = cluster.nodes[0]
        dead.kill()
        outcomes: dict[str, list[str]] = {"dead": [], "live": []}
        for round_ in range(30):
            for port, keys in owners.items():
                started = time.monotonic()
                try:
                    await limiter.acquire(keys[round_])
                    outcome = "allowed"
                except StorageUnavailableError:
                    outcome = "unavailable"
                assert time.monotonic() - started < TIMEOUT + MARGIN
                outcomes["dead" if port == dead.port else "live"].append(outcome)
        # The dead master's guard counts it down; the live masters' keys keep being
        # decided on Redis (with one guard for the whole cluster, nearly all of them went
        # to the policy). Some still fail: redis-py rebuilds its view of the cluster after
        # a node error, and a decision that meets the rebuild can time out.
        down = [e for e in events if e.name == "resilient.storage.down"]
        assert f"127.0.0.1:{dead.port}" in [e.attributes.get("server.address") for e in down]
        assert "unavailable" in outcomes["dead"]
        assert outcomes["live"].count("allowed") >= 0.6 * len(outcomes["live"])
        assert not store.available
    finally:
        subscription.close()
        await client.aclose()
        cluster.stop()
