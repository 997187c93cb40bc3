"""LimitsStore on limits' memory storage, on a fake wall clock: decisions, retry_after, cost,
peek, waits, validation, and the RateLimiter on top of it.

The limiter's bucket (burst 4, one permit every 0.25 s) is counted as 4 permits per window
of 1 s. Each strategy admits bursts its own way; the tests below spell out how.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import anyio
import pytest
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.storage import MemoryStorage as SyncMemoryStorage
from limits.strategies import FixedWindowRateLimiter as SyncFixedWindowRateLimiter

from resilient import RateLimitedError, RateLimiter, Timeout
from resilient.interop.limits import LimitsStore
from resilient.storage import Decision, Store, SyncStore
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

T = 0.25  # emission interval: 4 permits per second
BURST = 4  # so the window is BURST * T = 1 s

STRATEGIES = ("fixed-window", "moving-window", "sliding-window-counter")


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(strategy: str, wall: FakeClock) -> LimitsStore:
    return LimitsStore("async+memory://", strategy=strategy, clock=wall)


async def take(
    store: LimitsStore, key: str = "k", *, cost: int = 1, max_wait: float = 0.0
) -> Decision:
    return await store.acquire(key, emission_interval=T, burst=BURST, cost=cost, max_wait=max_wait)


async def peek(store: LimitsStore, key: str = "k") -> int:
    return await store.peek(key, emission_interval=T, burst=BURST)


# -- the protocol ---------------------------------------------------------------------------


def test_it_is_a_store_that_awaits(wall: FakeClock) -> None:
    store = LimitsStore("async+memory://", strategy="moving-window")
    assert isinstance(store, Store)
    assert not isinstance(store, SyncStore)  # the limiter takes its awaiting path
    assert repr(store) == "LimitsStore(MemoryStorage, strategy='moving-window', prefix='resilient')"


def test_it_exposes_the_limits_storage_and_strategy() -> None:
    storage = MemoryStorage()
    store = LimitsStore(storage, strategy=MovingWindowRateLimiter)
    assert store.storage is storage
    assert isinstance(store.strategy, MovingWindowRateLimiter)
    assert store.strategy.storage is storage
    assert "strategy='moving-window'" in repr(store)
    assert store.strategy_name == "moving-window"


def test_a_strategy_subclass_of_ones_own_is_welcome() -> None:
    class Audited(FixedWindowRateLimiter):
        pass

    store = LimitsStore(MemoryStorage(), strategy=Audited)
    assert isinstance(store.strategy, Audited)
    assert store.strategy_name == "Audited"
    assert "strategy='Audited'" in repr(store)


# -- decisions, every strategy --------------------------------------------------------------


async def test_a_fresh_key_admits_a_full_burst_then_rejects(store: LimitsStore) -> None:
    decisions = [await take(store) for _ in range(BURST)]
    assert all(d.allowed and d.wait == 0.0 and d.retry_after == 0.0 for d in decisions)
    assert [d.remaining for d in decisions] == [3, 2, 1, 0]
    refused = await take(store)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after > 0


async def test_cost_takes_several_permits_at_once(store: LimitsStore) -> None:
    assert (await take(store, cost=3)).remaining == 1
    assert not (await take(store, cost=2)).allowed
    assert (await take(store, cost=1)).allowed
    assert await peek(store) == 0


async def test_a_refused_request_for_several_permits_takes_none(store: LimitsStore) -> None:
    # limits' fixed window counts a refused hit; the store tests first so that, as in the
    # bucket, a refusal leaves the permits for a smaller request.
    await take(store, cost=2)
    assert not (await take(store, cost=3)).allowed
    assert await peek(store) == 2
    assert (await take(store, cost=2)).allowed


async def test_peek_reads_without_taking(store: LimitsStore) -> None:
    assert await peek(store) == BURST
    await take(store, cost=3)
    assert await peek(store) == 1
    assert await peek(store) == 1
    assert (await take(store)).allowed


async def test_keys_have_their_own_windows(store: LimitsStore) -> None:
    await take(store, "a", cost=BURST)
    assert not (await take(store, "a")).allowed
    assert (await take(store, "b")).allowed


HOSTILE_KEYS = [
    "with/slashes/4/1/second",
    "{braces}",
    "new\nline",
    "spaces and\ttabs",
    "é-unicode-ключ",
    "lone-surrogate-\udc80",
    "#starts-with-hash",
    "x" * 101,
    "y" * 1_000_000,
]


async def test_any_key_is_its_own_bucket(store: LimitsStore) -> None:
    for key in HOSTILE_KEYS:
        assert (await take(store, key, cost=BURST)).allowed, key
    for key in HOSTILE_KEYS:
        assert not (await take(store, key)).allowed, key
    assert (await take(store, "plain")).allowed


async def test_refund_gives_nothing_back(store: LimitsStore) -> None:
    decision = await take(store, cost=2)
    refunded = await store.refund("k", tat=decision.tat, emission_interval=T, cost=2)
    assert refunded is False
    assert await peek(store) == 2


# -- retry_after, strategy by strategy ------------------------------------------------------


async def test_fixed_window_retry_after_is_when_the_window_resets(wall: FakeClock) -> None:
    store = LimitsStore("async+memory://", strategy="fixed-window", clock=wall)
    await take(store, cost=BURST)
    wall.advance(0.3)
    assert (await take(store)).retry_after == pytest.approx(0.7, abs=1e-6)
    wall.advance(0.7)
    # The whole window comes back at once (the bucket would have refilled gradually).
    assert (await take(store, cost=BURST)).allowed


async def test_fixed_window_admits_two_bursts_across_a_reset(wall: FakeClock) -> None:
    store = LimitsStore("async+memory://", strategy="fixed-window", clock=wall)
    assert (await take(store)).allowed  # the window starts here
    wall.advance(0.9)
    assert (await take(store, cost=3)).allowed
    wall.advance(0.1)
    assert (await take(store, cost=BURST)).allowed  # 7 permits within 0.1 s


async def test_moving_window_retry_after_is_when_the_oldest_permit_leaves(
    wall: FakeClock,
) -> None:
    store = LimitsStore("async+memory://", strategy="moving-window", clock=wall)
    for _ in range(BURST):  # at 0.0, 0.1, 0.2, 0.3
        assert (await take(store)).allowed
        wall.advance(0.1)
    wall.advance(0.1)
    refused = await take(store)  # at 0.5
    assert refused.retry_after == pytest.approx(0.5, abs=1e-6)
    wall.advance(0.5 + 1e-3)
    assert (await take(store)).allowed
    assert not (await take(store)).allowed  # the next one leaves at 1.1


async def test_moving_window_never_admits_more_than_the_burst_in_a_window(
    wall: FakeClock,
) -> None:
    store = LimitsStore("async+memory://", strategy="moving-window", clock=wall)
    admitted = 0
    for _ in range(40):  # one try every 0.05 s for 2 s
        admitted += (await take(store)).allowed
        wall.advance(0.05)
    # 4 per second, as the bucket's steady rate; unlike the bucket, which admits up to
    # burst + 1 s / T = 8 in any second, no second here ever holds more than 4.
    assert admitted == 2 * BURST


async def test_sliding_window_counter_weighs_the_previous_window(wall: FakeClock) -> None:
    store = LimitsStore("async+memory://", strategy="sliding-window-counter", clock=wall)
    await take(store, cost=BURST)  # at 0.0, the start of a window
    wall.advance(0.3)
    refused = await take(store)
    assert refused.retry_after == pytest.approx(0.7, abs=1e-6)  # when the window rolls over
    wall.advance(0.7 + 1e-3)
    # The 4 permits now count as 4 * 0.999 = 3.996, rounded down to 3: one is free.
    assert (await take(store)).allowed
    assert not (await take(store)).allowed
    wall.advance(0.25)
    assert (await take(store)).allowed  # 4 * 0.749 + 1 = 3.996 permits counted


# -- waiting --------------------------------------------------------------------------------


# These start off the edge of a window: see the last test of this section.


async def test_a_wait_that_fits_max_wait_is_admitted_when_the_window_opens(
    store: LimitsStore, wall: FakeClock
) -> None:
    wall.advance(0.1)
    await take(store, cost=BURST)
    decision = await take(store, max_wait=1.5)
    assert decision.allowed
    assert decision.wait == 0.0  # the store waited itself: nothing is reserved ahead
    # At 1.1 s, when the window resets or its oldest permit leaves; just after 1.0 s for the
    # sliding window counter, whose count starts to fade as its window rolls over.
    assert 1.0 <= wall.now() <= 1.11


async def test_a_wait_longer_than_max_wait_is_rejected_at_once(
    store: LimitsStore, wall: FakeClock
) -> None:
    wall.advance(0.1)
    await take(store, cost=BURST)
    refused = await take(store, max_wait=0.5)
    assert not refused.allowed
    # 1.0 s, when the window resets or its oldest permit leaves; 0.9 s for the sliding
    # window counter, when its window rolls over (and its count starts to fade).
    assert 0.9 - 1e-6 <= refused.retry_after <= 1.0 + 1e-6
    assert wall.now() == 0.1


async def test_a_waiter_cancelled_while_it_waits_holds_nothing(
    wall: FakeClock,
) -> None:
    gate = FakeClock(autojump=False)  # a clock whose sleeps never end by themselves
    store = LimitsStore("async+memory://", strategy="moving-window", clock=gate)
    await take(store, cost=BURST)
    with anyio.move_on_after(0.05):
        await take(store, max_wait=10.0)
    assert await peek(store) == 0  # still the first four permits, nothing more taken
    wall.advance(1.001)
    assert await peek(store) == BURST


async def test_on_the_edge_of_a_window_the_sliding_counter_is_asked_again_soon(
    wall: FakeClock,
) -> None:
    # At the very start of a window, limits' sliding window counter reports the window as
    # resetting now although it is full: the store cannot tell when it opens, and says to
    # look again in 50 ms.
    store = LimitsStore("async+memory://", strategy="sliding-window-counter", clock=wall)
    await take(store, cost=BURST)
    assert (await take(store)).retry_after == pytest.approx(0.05)


# -- validation -----------------------------------------------------------------------------


def test_an_unknown_strategy_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"strategy must be one of .*got 'leaky-bucket'"):
        LimitsStore("async+memory://", strategy="leaky-bucket")


def test_a_synchronous_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match=r"strategy must be .*RateLimiter subclass"):
        LimitsStore("async+memory://", strategy=SyncFixedWindowRateLimiter)  # type: ignore[arg-type]


def test_a_synchronous_storage_is_refused() -> None:
    with pytest.raises(ValueError, match=r"got 'memory://', a synchronous one.*'async\+memory://'"):
        LimitsStore("memory://", strategy="fixed-window")
    with pytest.raises(ValueError, match=r"synchronous MemoryStorage"):
        LimitsStore(SyncMemoryStorage(), strategy="fixed-window")  # type: ignore[arg-type]


@pytest.mark.parametrize("storage", ["nosuch://here", 42, None])
def test_a_storage_limits_cannot_use_is_refused(storage: object) -> None:
    with pytest.raises(ValueError, match="storage"):
        LimitsStore(storage, strategy="fixed-window")  # type: ignore[arg-type]


def test_options_go_with_a_storage_uri_only() -> None:
    with pytest.raises(ValueError, match=r"options are for a storage given by its URI"):
        LimitsStore(MemoryStorage(), strategy="fixed-window", options={"x": 1})
    with pytest.raises(ValueError, match=r"options must be a mapping or None, got 'x=1'"):
        LimitsStore("async+memory://", strategy="fixed-window", options="x=1")  # type: ignore[arg-type]


def test_a_redis_uri_without_coredis_says_how_to_use_redis_py() -> None:
    if importlib.util.find_spec("coredis") is not None:  # pragma: no cover
        pytest.skip("coredis is installed: limits' Redis storage would use it")
    with pytest.raises(ValueError, match=r"options=\{'implementation': 'redispy'\}"):
        LimitsStore("async+redis://localhost:6379", strategy="moving-window")


def test_a_strategy_the_storage_lacks_is_refused() -> None:
    class CountersOnly(Storage):
        """A storage with counters only: no moving window, no sliding window."""

        base_exceptions = ValueError

        async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
            return amount

        async def get(self, key: str) -> int:
            return 0

        async def get_expiry(self, key: str) -> float:
            return 0.0

        async def check(self) -> bool:
            return True

        async def reset(self) -> int | None:
            return None

        async def clear(self, key: str) -> None:
            return None

    with pytest.raises(
        ValueError, match=r"strategy 'moving-window' does not run on .*CountersOnly"
    ):
        LimitsStore(CountersOnly(), strategy="moving-window")
    assert LimitsStore(CountersOnly(), strategy="fixed-window")


@pytest.mark.parametrize("prefix", ["", "with space", "a/b", "x" * 65, 7])
def test_a_prefix_must_be_plain(prefix: object) -> None:
    with pytest.raises(ValueError, match="prefix must be"):
        LimitsStore("async+memory://", strategy="fixed-window", prefix=prefix)  # type: ignore[arg-type]


def test_a_clock_must_be_a_clock() -> None:
    with pytest.raises(ValueError, match="clock must be a Clock"):
        LimitsStore("async+memory://", strategy="fixed-window", clock=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("emission_interval", "burst", "window"),
    [(0.01, 20, "0.2s"), (0.25, 3, "0.75s"), (0.3, 5, "1.5s")],
)
async def test_a_window_of_a_fraction_of_a_second_is_refused(
    store: LimitsStore, emission_interval: float, burst: int, window: str
) -> None:
    with pytest.raises(ValueError, match=rf"whole seconds.*here {window} \(burst={burst}"):
        await store.acquire(
            "k", emission_interval=emission_interval, burst=burst, cost=1, max_wait=0.0
        )
    with pytest.raises(ValueError, match="whole seconds"):
        await store.peek("k", emission_interval=emission_interval, burst=burst)


@pytest.mark.parametrize(
    ("emission_interval", "burst", "seconds"),
    [(0.1, 10, 1), (1 / 3, 3, 1), (60.0, 1, 60), (0.25, 8, 2), (864.0, 100, 86_400)],
)
async def test_whole_second_windows_map_to_limits_items(
    store: LimitsStore, emission_interval: float, burst: int, seconds: int
) -> None:
    assert await store.peek("k", emission_interval=emission_interval, burst=burst) == burst
    (item,) = store._items.values()
    assert (item.amount, item.get_expiry()) == (burst, seconds)
    assert item.namespace == f"resilient/{store.strategy_name}"


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("cost", {"cost": 0}),
        ("cost", {"cost": BURST + 1}),
        ("cost", {"cost": 1.5}),
        ("burst", {"burst": 0}),
        ("emission_interval", {"emission_interval": float("nan")}),
        ("max_wait", {"max_wait": -1.0}),
    ],
)
async def test_direct_calls_are_checked(
    store: LimitsStore, field: str, kwargs: dict[str, object]
) -> None:
    call: dict[str, object] = {"emission_interval": T, "burst": BURST, "cost": 1, "max_wait": 0.0}
    call.update(kwargs)
    with pytest.raises(ValueError, match=f"^{field} must be"):
        await store.acquire("k", **call)  # type: ignore[arg-type]


def test_it_runs_on_asyncio_only() -> None:
    store = LimitsStore("async+memory://", strategy="fixed-window")

    async def main() -> None:
        await store.peek("k", emission_interval=T, burst=BURST)

    with pytest.raises(RuntimeError, match="asyncio only"):
        anyio.run(main, backend="trio")


def test_without_limits_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['limits'] = None\n"
        "try:\n"
        "    import resilient.interop.limits\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'resilient-patterns[limits]'" in done.stdout


def test_the_interop_package_imports_without_limits() -> None:
    code = "import sys; sys.modules['limits'] = None\nimport resilient.interop\n"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the limiter on top ---------------------------------------------------------------------


async def test_the_limiter_admits_its_burst_then_rejects_with_retry_after(
    store: LimitsStore, wall: FakeClock
) -> None:
    limiter = RateLimiter(BURST, per=1.0, store=store, clock=wall, name="partner")

    @limiter
    async def call() -> str:
        return "ok"

    assert [await call() for _ in range(BURST)] == ["ok"] * BURST
    with pytest.raises(RateLimitedError) as caught:
        await call()
    assert caught.value.policy == "partner"
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 1.0
    assert await limiter.remaining() == 0
    wall.advance(1.001)
    assert await limiter.remaining() >= 1
    assert await call() == "ok"


async def test_the_limiter_counts_cost_and_keys(store: LimitsStore, wall: FakeClock) -> None:
    limiter = RateLimiter(BURST, per=1.0, store=store, clock=wall)
    await limiter.acquire(key="tenant-1", cost=3)
    assert await limiter.remaining("tenant-1") == 1
    assert await limiter.remaining("tenant-2") == BURST
    with pytest.raises(RateLimitedError):
        await limiter.acquire(key="tenant-1", cost=2)


async def test_limiters_with_other_names_do_not_share(store: LimitsStore, wall: FakeClock) -> None:
    search = RateLimiter(BURST, store=store, clock=wall, name="search")
    export = RateLimiter(BURST, store=store, clock=wall, name="export")
    await search.acquire(cost=BURST)
    assert await export.remaining() == BURST


async def test_the_limiter_waits_within_max_wait(store: LimitsStore, wall: FakeClock) -> None:
    limiter = RateLimiter(BURST, per=1.0, max_wait=2.0, store=store, clock=wall)
    for _ in range(BURST + 1):
        await limiter.acquire()
    assert 1.0 <= wall.now() <= 1.01


async def test_the_limiter_does_not_wait_past_an_enclosing_timeout(
    store: LimitsStore, wall: FakeClock
) -> None:
    limiter = RateLimiter(BURST, per=1.0, max_wait=2.0, store=store, clock=wall)
    wall.advance(0.1)  # off the edge of a window (see above)
    await limiter.acquire(cost=BURST)
    async with Timeout(0.5, clock=wall):
        with pytest.raises(RateLimitedError):
            await limiter.acquire()
    assert wall.now() == 0.1


async def test_a_limiter_whose_window_is_not_whole_seconds_fails_on_first_use(
    store: LimitsStore, wall: FakeClock
) -> None:
    limiter = RateLimiter(100, burst=20, store=store, clock=wall)
    with pytest.raises(ValueError, match=r"here 0.2s \(burst=20"):
        await limiter.acquire()
