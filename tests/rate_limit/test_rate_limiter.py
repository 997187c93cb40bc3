"""RateLimiter: GCRA per key, rejection with retry_after, bounded waits, refunds, telemetry."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
from opentelemetry.trace import StatusCode

from resilient import Pipeline, RateLimitedError, RateLimiter, Timeout
from resilient.storage import Decision, MemoryStore
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def nothing() -> str:
    return "ok"


class RemoteLikeStore:
    """Only the `Store` coroutines, no fast path: the limiter must use the async protocol,
    as it will with Redis."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryStore(clock=clock)
        self.refunds = 0

    async def acquire(
        self, key: str, *, emission_interval: float, burst: int, cost: int, max_wait: float
    ) -> Decision:
        await anyio.lowlevel.checkpoint()  # a real round trip suspends
        return await self.inner.acquire(
            key, emission_interval=emission_interval, burst=burst, cost=cost, max_wait=max_wait
        )

    async def refund(self, key: str, *, tat: float, emission_interval: float, cost: int) -> bool:
        await anyio.lowlevel.checkpoint()
        self.refunds += 1
        return await self.inner.refund(key, tat=tat, emission_interval=emission_interval, cost=cost)

    async def peek(self, key: str, *, emission_interval: float, burst: int) -> int:
        return await self.inner.peek(key, emission_interval=emission_interval, burst=burst)


@pytest.fixture(params=["memory", "remote-like"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(clock: FakeClock, store_kind: str = "memory", **kwargs: Any) -> RateLimiter:
    store = RemoteLikeStore(clock) if store_kind == "remote-like" else None
    return RateLimiter(clock=clock, store=store, **kwargs)


# -- admitting and rejecting --------------------------------------------------------------


async def test_admits_a_full_burst_then_rejects_with_exact_retry_after(
    clock: FakeClock, store_kind: str
) -> None:
    limiter = make(clock, store_kind, rate=4, per=1.0)
    for _ in range(4):
        assert await limiter.call(nothing) == "ok"
    clock.advance(0.1)
    with pytest.raises(RateLimitedError) as info:
        await limiter.call(nothing)
    assert info.value.retry_after == pytest.approx(0.15)
    assert info.value.policy == "rate_limit"
    clock.advance(0.15)
    assert await limiter.call(nothing) == "ok"


async def test_decorator_and_async_with_take_a_permit_each(clock: FakeClock) -> None:
    limiter = RateLimiter(2, clock=clock)

    @limiter
    async def work(x: int) -> int:
        return x + 1

    assert await work(1) == 2
    async with limiter:
        pass
    with pytest.raises(RateLimitedError):
        async with limiter:
            raise AssertionError("the block must not run")  # pragma: no cover
    assert await limiter.remaining() == 0


async def test_a_rejected_call_does_not_run(clock: FakeClock) -> None:
    limiter = RateLimiter(1, clock=clock)
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    await limiter.call(work)
    with pytest.raises(RateLimitedError):
        await limiter.call(work)
    assert ran == [1]


async def test_works_as_a_pipeline_stage(clock: FakeClock) -> None:
    pipeline = Pipeline(RateLimiter(1, clock=clock), Timeout(5))
    assert await pipeline.call(nothing) == "ok"
    with pytest.raises(RateLimitedError):
        await pipeline.call(nothing)


async def test_burst_defaults_to_rate_rounded_down_and_at_least_one() -> None:
    assert RateLimiter(10).burst == 10
    assert RateLimiter(2.7).burst == 2
    assert RateLimiter(0.5).burst == 1
    assert RateLimiter(10, burst=3).burst == 3


async def test_a_fractional_rate_refills_slowly(clock: FakeClock) -> None:
    limiter = RateLimiter(1, per=60.0, clock=clock)  # one a minute
    await limiter.acquire()
    with pytest.raises(RateLimitedError) as info:
        await limiter.acquire()
    assert info.value.retry_after == pytest.approx(60.0)


# -- keys, costs, remaining ---------------------------------------------------------------


async def test_keys_have_independent_buckets(clock: FakeClock, store_kind: str) -> None:
    limiter = make(clock, store_kind, rate=2)
    await limiter.acquire(key="alice", cost=2)
    with pytest.raises(RateLimitedError):
        await limiter.acquire(key="alice")
    await limiter.acquire(key="bob")
    assert await limiter.remaining("bob") == 1
    assert await limiter.remaining() == 2  # the default key is a bucket of its own


async def test_cost_takes_several_permits(clock: FakeClock, store_kind: str) -> None:
    limiter = make(clock, store_kind, rate=10)
    await limiter.acquire(cost=7)
    assert await limiter.remaining() == 3
    with pytest.raises(RateLimitedError) as info:
        await limiter.acquire(cost=5)
    assert info.value.retry_after == pytest.approx(0.2)
    assert str(info.value) == (
        "rate limiter 'rate_limit' does not have 5 permits left within its limit of 10 per 1s; "
        "retry after 0.2s"
    )


async def test_rejection_says_which_limiter_and_when_to_retry(clock: FakeClock) -> None:
    limiter = RateLimiter(2, name="api", clock=clock)
    await limiter.acquire(cost=2)
    clock.advance(0.25)
    with pytest.raises(RateLimitedError) as info:
        await limiter.acquire()
    assert str(info.value) == (
        "rate limiter 'api' has no permit left within its limit of 2 per 1s; retry after 0.25s"
    )


async def test_remaining_counts_whole_permits_as_they_come_back(clock: FakeClock) -> None:
    limiter = RateLimiter(4, clock=clock)
    assert await limiter.remaining() == 4
    await limiter.acquire(cost=4)
    assert await limiter.remaining() == 0
    clock.advance(0.3)
    assert await limiter.remaining() == 1
    clock.advance(100)
    assert await limiter.remaining() == 4


@pytest.mark.parametrize("cost", [0, -1, 1.5, True, "2", None, 11])
async def test_bad_cost_raises_value_error(cost: object) -> None:
    limiter = RateLimiter(10)
    with pytest.raises(ValueError, match="cost"):
        await limiter.acquire(cost=cost)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", 3, b"bytes", None.__class__])
async def test_bad_keys_raise_value_error(key: object) -> None:
    limiter = RateLimiter(10)
    with pytest.raises(ValueError, match="key"):
        await limiter.acquire(key=key)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        await limiter.remaining(key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key", ["é🙂", "x" * 1_000_000, "\x00\r\n\x1b", "a:b", "{tag}", "\ud800"], ids=range(6)
)
async def test_hostile_keys_are_ordinary_buckets(clock: FakeClock, key: str) -> None:
    limiter = RateLimiter(1, clock=clock, store=MemoryStore(clock=clock))
    await limiter.acquire(key=key)
    with pytest.raises(RateLimitedError):
        await limiter.acquire(key=key)
    assert await limiter.remaining() == 1
    assert await limiter.remaining(key + "x") == 1


async def test_limiters_sharing_a_store_share_buckets_only_under_one_name(
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock=clock)
    api = RateLimiter(1, store=store, name="api", clock=clock)
    api_elsewhere = RateLimiter(1, store=store, name="api", clock=clock)
    other = RateLimiter(1, store=store, name="other", clock=clock)
    await api.acquire(key="k")
    with pytest.raises(RateLimitedError):
        await api_elsewhere.acquire(key="k")
    await other.acquire(key="k")
    # Names cannot collide through the key: ("a", "b:k") and ("a:b", "k") stay apart.
    await RateLimiter(1, store=store, name="a", clock=clock).acquire(key="b:k")
    await RateLimiter(1, store=store, name="a:b", clock=clock).acquire(key="k")


# -- waiting ------------------------------------------------------------------------------


async def test_with_max_wait_a_caller_waits_for_its_permit(
    clock: FakeClock, store_kind: str
) -> None:
    limiter = make(clock, store_kind, rate=4, max_wait=1.0)
    await limiter.acquire(cost=4)
    admitted: list[float] = []

    async def caller() -> None:
        await limiter.acquire()
        admitted.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        tg.start_soon(caller)
        await settle()
        assert admitted == []
        clock.advance(0.25)
        await settle()
        assert admitted == [0.25]
        clock.advance(0.25)
    assert admitted == [0.25, 0.5]


async def test_a_wait_longer_than_max_wait_is_rejected_at_once(
    clock: FakeClock, store_kind: str
) -> None:
    limiter = make(clock, store_kind, rate=4, max_wait=0.3)
    await limiter.acquire(cost=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)  # waits 0.25 s: fits
        await settle()
        with pytest.raises(RateLimitedError) as info:
            await limiter.acquire()  # would wait 0.5 s
        assert info.value.retry_after == pytest.approx(0.5)
        clock.advance(0.25)


async def test_an_enclosing_deadline_shorter_than_the_wait_rejects_at_once(
    clock: FakeClock, store_kind: str
) -> None:
    limiter = make(clock, store_kind, rate=4, max_wait=5.0)
    await limiter.acquire(cost=4)
    with pytest.raises(RateLimitedError) as info:
        async with Timeout(0.1, clock=clock):
            await limiter.acquire()
    assert info.value.retry_after == pytest.approx(0.25)
    assert clock.now() == 0.0
    assert await limiter.remaining() == 0
    clock.advance(0.25)
    assert await limiter.remaining() == 1  # the rejected caller reserved nothing


async def test_a_cancelled_waiter_gives_back_its_reservation_when_it_is_the_latest(
    clock: FakeClock, store_kind: str
) -> None:
    limiter = make(clock, store_kind, rate=4, max_wait=1.0)
    await limiter.acquire(cost=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        await settle()
        tg.cancel_scope.cancel()
    clock.advance(0.25)
    assert await limiter.remaining() == 1  # the permit is back in the bucket


async def test_a_cancelled_waiter_with_someone_behind_keeps_its_reservation(
    clock: FakeClock, store_kind: str
) -> None:
    limiter = make(clock, store_kind, rate=4, max_wait=1.0)
    await limiter.acquire(cost=4)
    admitted: list[float] = []

    async def second() -> None:
        await limiter.acquire()
        admitted.append(clock.now())

    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as first:
            first.start_soon(limiter.acquire)
            await settle()
            tg.start_soon(second)
            await settle()
            first.cancel_scope.cancel()
        clock.advance(0.25)
        await settle()
        assert admitted == []  # the second caller keeps its place; nobody jumps ahead
        clock.advance(0.25)
    assert admitted == [0.5]


async def test_remote_store_refund_is_awaited_under_a_shield(clock: FakeClock) -> None:
    store = RemoteLikeStore(clock)
    limiter = RateLimiter(4, max_wait=1.0, store=store, clock=clock)
    await limiter.acquire(cost=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        await settle()
        tg.cancel_scope.cancel()
    assert store.refunds == 1
    clock.advance(0.25)
    assert await limiter.remaining() == 1


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_never_admits_more_than_burst_plus_rate_times_t_with_waits_and_cancels(
    clock: FakeClock, seed: int
) -> None:
    rng = random.Random(seed)
    tick = 0.125  # a binary fraction: every time on the grid is exact in floats
    burst, interval = 3, 0.25
    limiter = RateLimiter(1 / interval, burst=burst, max_wait=1.0, clock=clock)
    admitted: list[tuple[float, int]] = []
    scopes: list[anyio.CancelScope] = []

    async def caller(cost: int) -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            try:
                await limiter.acquire(cost=cost)
            except RateLimitedError:
                return
            admitted.append((clock.now(), cost))

    async with anyio.create_task_group() as tg:
        for _ in range(400):
            for _ in range(rng.choice([0, 0, 1, 1, 2, 4])):
                tg.start_soon(caller, rng.randint(1, burst))
            await settle()
            if scopes and rng.random() < 0.2:
                rng.choice(scopes).cancel()
                await settle()
            clock.advance(tick)
            await settle()
        for _ in range(16):  # step through the last waits (max_wait is 1 s) on the grid
            clock.advance(tick)
            await settle()
    assert len(admitted) > 50
    admitted.sort()
    for i, (start, _) in enumerate(admitted):
        total = 0
        for end, cost in admitted[i:]:
            total += cost
            assert total <= burst + (end - start) / interval + 1e-9


# -- telemetry ----------------------------------------------------------------------------


def _named(name: str, **extra: str) -> dict[str, str]:
    return {"resilient.policy.name": name, **extra}


async def test_calls_are_spans_and_decisions_are_counted(telemetry: Any, clock: FakeClock) -> None:
    limiter = RateLimiter(1, name="rl-count", clock=clock)
    await limiter.call(nothing)
    with pytest.raises(RateLimitedError):
        await limiter.call(nothing)
    spans = telemetry.spans("resilient.rate_limit")
    assert [s.attributes.get("resilient.outcome", "success") for s in spans] == [
        "success",
        "rejected",
    ]
    rejected = spans[1]
    assert rejected.status.status_code is StatusCode.ERROR
    assert rejected.attributes["error.type"] == "RateLimitedError"
    assert rejected.attributes["resilient.rate_limit.decision"] == "rejected"
    decisions = "resilient.rate_limit.decisions"
    key = "resilient.rate_limit.decision"
    assert telemetry.metric_total(decisions, **_named("rl-count", **{key: "allowed"})) == 1
    assert telemetry.metric_total(decisions, **_named("rl-count", **{key: "rejected"})) == 1


async def test_a_wait_is_a_span_event_and_a_histogram_entry(
    telemetry: Any, clock: FakeClock
) -> None:
    limiter = RateLimiter(4, max_wait=1.0, name="rl-wait", clock=clock)
    await limiter.acquire(cost=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.call, nothing)
        await settle()
        clock.advance(0.25)
    span = telemetry.spans("resilient.rate_limit")[-1]
    (event,) = [e for e in span.events if e.name == "resilient.rate_limit.delayed"]
    assert event.attributes["resilient.wait.duration"] == pytest.approx(0.25)
    key = "resilient.rate_limit.decision"
    decisions = "resilient.rate_limit.decisions"
    assert telemetry.metric_total(decisions, **_named("rl-wait", **{key: "delayed"})) == 1
    assert telemetry.metric_total("resilient.wait.duration", **_named("rl-wait")) == 1


async def test_telemetry_false_emits_nothing(telemetry: Any, clock: FakeClock) -> None:
    limiter = RateLimiter(1, name="rl-silent", clock=clock, telemetry=False)
    await limiter.call(nothing)
    with pytest.raises(RateLimitedError):
        await limiter.acquire()
    assert telemetry.spans("resilient.rate_limit") == []
    assert not any(
        attrs.get("resilient.policy.name") == "rl-silent"
        for attrs, _ in telemetry.metric_points("resilient.rate_limit.decisions")
    )


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"rate": "10"}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": 10**400}, "rate"),
        ({"rate": 1, "per": 0}, "per"),
        ({"rate": 1, "per": -2.0}, "per"),
        ({"rate": 1, "per": 10**400}, "per"),
        ({"rate": 1, "burst": 0}, "burst"),
        ({"rate": 1, "burst": 1.5}, "burst"),
        ({"rate": 1, "burst": True}, "burst"),
        ({"rate": 1, "burst": 10**400}, "burst"),
        ({"rate": 1, "burst": 2**53 + 1}, "burst"),
        ({"rate": 1e300}, "burst"),  # the default burst, rate rounded down, is too big
        ({"rate": 1, "per": 1e300, "burst": 10**9}, "burst"),  # the bucket's seconds overflow
        ({"rate": 1e-320}, "per / rate"),  # a permit every 1e320 s overflows
        ({"rate": 1e300, "per": 1e-300}, "per / rate"),  # a permit every 1e-600 s underflows
        ({"rate": 1, "max_wait": -0.1}, "max_wait"),
        ({"rate": 1, "max_wait": float("inf")}, "max_wait"),
        ({"rate": 1, "max_wait": 10**400}, "max_wait"),
        ({"rate": 1, "max_wait": None}, "max_wait"),
        ({"rate": 1, "key": ""}, "key"),
        ({"rate": 1, "key": 7}, "key"),
        ({"rate": 1, "name": ""}, "name"),
        ({"rate": 1, "store": object()}, "store"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        RateLimiter(**kwargs)


def test_the_largest_burst_is_accepted() -> None:
    assert RateLimiter(1, burst=2**53).burst == 2**53
    assert RateLimiter(2.0**53).burst == 2**53  # the default, rate rounded down


def test_defaults_follow_the_design() -> None:
    limiter = RateLimiter(5)
    assert (limiter.per, limiter.burst, limiter.max_wait, limiter.key) == (1.0, 5, 0.0, "default")
    assert limiter.name == "rate_limit"
    assert isinstance(limiter.store, MemoryStore)
    assert repr(limiter) == "RateLimiter(5, per=1, burst=5, max_wait=0, name='rate_limit')"
