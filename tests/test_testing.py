from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

from resilient import Bulkhead, BulkheadFullError, RateLimiter, Timeout, TimeoutExceeded
from resilient.testing import MAX_TIME, FakeClock

pytestmark = pytest.mark.anyio


async def nothing() -> None:
    return None


def test_starts_at_the_given_time_and_advances() -> None:
    clock = FakeClock(start=100.0)
    clock.advance(2.5)
    assert clock.now() == 102.5


async def test_sleep_moves_time_at_once() -> None:
    clock = FakeClock()
    await clock.sleep(3)
    await clock.sleep(0)
    assert clock.now() == 3


def test_timers_fire_in_order_and_at_their_time() -> None:
    clock = FakeClock()
    fired: list[tuple[str, float]] = []
    clock.call_at(2, lambda: fired.append(("b", clock.now())))
    clock.call_at(1, lambda: fired.append(("a", clock.now())))
    clock.advance(1.5)
    assert fired == [("a", 1.0)]
    clock.advance(1)
    assert fired == [("a", 1.0), ("b", 2.0)]
    assert clock.now() == 2.5


def test_a_cancelled_timer_does_not_fire() -> None:
    clock = FakeClock()
    fired: list[int] = []
    clock.call_at(1, lambda: fired.append(1)).cancel()
    clock.advance(5)
    assert fired == []


def test_a_timer_already_due_fires_immediately() -> None:
    clock = FakeClock(start=5)
    fired: list[int] = []
    clock.call_at(4, lambda: fired.append(1))
    assert fired == [1]


@pytest.mark.parametrize("seconds", [-1, math.nan])
def test_time_never_goes_backwards(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        FakeClock().advance(seconds)


@pytest.mark.parametrize("start", [math.inf, math.nan])
def test_start_must_be_finite(start: float) -> None:
    with pytest.raises(ValueError, match="start must be a finite number"):
        FakeClock(start)


@pytest.mark.parametrize(
    "start",
    ["1", True, None, 10**400, 1e16, -1e16],
    ids=["str", "bool", "None", "huge int", "1e16", "-1e16"],
)
def test_start_must_be_a_number_of_seconds_a_float_resolves(start: object) -> None:
    with pytest.raises(ValueError, match="start must be a finite number of seconds"):
        FakeClock(start)  # type: ignore[arg-type]


def test_time_cannot_be_moved_past_where_a_float_resolves_a_microsecond() -> None:
    clock = FakeClock(start=MAX_TIME - 1)
    with pytest.raises(ValueError, match="within 2\\*\\*32"):
        clock.advance(2)
    assert clock.now() == MAX_TIME - 1


@pytest.mark.parametrize("autojump", [1, None, "yes"])
def test_autojump_must_be_a_bool(autojump: object) -> None:
    with pytest.raises(ValueError, match="autojump must be True or False"):
        FakeClock(autojump=autojump)  # type: ignore[arg-type]


async def test_a_short_timeout_holds_at_the_largest_start() -> None:
    clock = FakeClock(start=MAX_TIME - 10)
    timeout = Timeout(0.001, clock=clock)
    await timeout.call(clock.sleep, 0.0005)
    with pytest.raises(TimeoutExceeded):
        await timeout.call(anyio.sleep_forever)
    assert clock.now() == pytest.approx(MAX_TIME - 10 + 0.0015, abs=1e-6)


# -- autojump: timed waits make progress on their own -----------------------------------------


async def test_a_limiter_wait_completes_without_moving_time_by_hand() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, max_wait=5, clock=clock)
    await limiter.acquire()
    await limiter.acquire()  # waits one second of fake time
    assert clock.now() == 1.0
    assert clock.pending_timers == 0


async def test_a_bulkhead_queue_times_out_without_moving_time_by_hand() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=2.0, clock=clock)
    never = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, never.wait)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(BulkheadFullError, match="no slot within 2s"):
            await bulkhead.call(nothing)
        tg.cancel_scope.cancel()
    assert clock.now() == 2.0
    assert clock.pending_timers == 0


async def test_a_timeout_fires_at_its_fake_deadline_without_moving_time_by_hand() -> None:
    clock = FakeClock()
    with pytest.raises(TimeoutExceeded):
        await Timeout(30, clock=clock).call(anyio.sleep_forever)
    assert clock.now() == 30.0
    assert clock.pending_timers == 0


async def test_a_wait_that_ends_early_leaves_no_timer_and_moves_no_time() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=5.0, clock=clock)
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, release.wait)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(bulkhead.call, nothing)
        await anyio.wait_all_tasks_blocked()
        assert bulkhead.waiting == 1
        assert clock.pending_timers == 1
        release.set()
    assert clock.pending_timers == 0
    assert clock.now() == 0.0


async def test_a_cancelled_wait_leaves_no_timer() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, per=10.0, max_wait=10.0, clock=clock)
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        await anyio.wait_all_tasks_blocked()
        assert clock.pending_timers == 1
        tg.cancel_scope.cancel()
    assert clock.pending_timers == 0
    assert clock.now() == 0.0


async def test_time_jumps_in_order_across_several_waiters() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def wait(name: str, seconds: float) -> None:
        with pytest.raises(TimeoutExceeded):
            await Timeout(seconds, clock=clock).call(anyio.sleep_forever)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "late", 3.0)
        tg.start_soon(wait, "early", 1.0)
        tg.start_soon(wait, "middle", 2.0)
    assert woke == [("early", 1.0), ("middle", 2.0), ("late", 3.0)]


async def test_without_autojump_time_stays_until_the_test_moves_it() -> None:
    clock = FakeClock(autojump=False)
    limiter = RateLimiter(1, max_wait=5, clock=clock)
    await limiter.acquire()
    done: list[float] = []

    async def second() -> None:
        await limiter.acquire()
        done.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        await anyio.wait_all_tasks_blocked()
        assert done == []
        assert clock.now() == 0.0
        clock.advance(1.0)
    assert done == [1.0]


def test_many_cancelled_timers_do_not_grow_the_heap() -> None:
    clock = FakeClock()
    keep = clock.call_at(1e6, lambda: None)
    for i in range(10_000):
        clock.call_at(1.0 + i, lambda: None).cancel()
    assert clock.pending_timers == 1
    assert len(clock._timers) <= 64 + 2
    keep.cancel()
    assert clock.pending_timers == 0
