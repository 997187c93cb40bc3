"""LoadShedder: a concurrency limit with a bounded queue per priority, on asyncio and trio."""

from __future__ import annotations

import pickle
import random

import anyio
import pytest

from gates import Gate, settle
from resilient import LoadShedError, Pipeline, RejectedError, Timeout, TimeoutExceeded
from resilient.load_shedding import AIMD, LoadShedder, current_priority, priority
from resilient.load_shedding._shedder import ShedderCore, _Waiter
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


async def shed_reason(shedder: LoadShedder, fn: object, *args: object) -> str | None:
    """Run a call; the reason it was shed, or None when it ran."""
    try:
        await shedder.call(fn, *args)  # type: ignore[arg-type]
    except LoadShedError as error:
        return error.reason
    return None


# -- the faces ----------------------------------------------------------------------------


async def test_decorated_call_runs_inside_the_limit() -> None:
    shedder = LoadShedder(2)

    @shedder
    async def double(x: int) -> int:
        assert shedder.in_flight == 1
        return 2 * x

    assert await double(21) == 42
    assert shedder.in_flight == 0


async def test_async_with_holds_a_slot_and_call_is_shed_over_the_limit() -> None:
    shedder = LoadShedder(1)
    async with shedder:
        assert shedder.in_flight == 1
        with pytest.raises(LoadShedError) as info:
            await shedder.call(Gate())
    assert shedder.in_flight == 0
    assert info.value.reason == "limit"
    assert info.value.policy == "load_shed"
    assert isinstance(info.value, RejectedError)


async def test_works_as_a_pipeline_stage_and_errors_pass_unwrapped() -> None:
    shedder = LoadShedder(1)

    async def fail() -> None:
        assert shedder.in_flight == 1
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await Pipeline(Timeout(5), shedder).call(fail)
    assert shedder.in_flight == 0


def test_default_limit_is_100_with_no_queue() -> None:
    shedder = LoadShedder()
    assert (shedder.limit, shedder.max_waiting, shedder.max_wait) == (100, 0, None)
    assert shedder.priority_levels == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"max_waiting": -1}, "max_waiting"),
        ({"max_wait": 0}, "max_wait"),
        ({"priority_levels": 0}, "priority_levels"),
        ({"name": ""}, "name"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LoadShedder(**kwargs)  # type: ignore[arg-type]


def test_load_shed_error_pickles_with_its_reason() -> None:
    error = LoadShedError("shed", policy="api", retry_after=0.5, reason="queue_full")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.policy, copy.retry_after, copy.reason, str(copy)) == (
        "api",
        0.5,
        "queue_full",
        "shed",
    )


# -- priority -----------------------------------------------------------------------------


async def test_priority_flows_down_and_is_restored() -> None:
    assert current_priority() == 0
    with priority(2):
        assert current_priority() == 2
        with priority(1):
            assert current_priority() == 1
        assert current_priority() == 2
    assert current_priority() == 0


def test_priority_rejects_negative_levels() -> None:
    with pytest.raises(ValueError, match="level"), priority(-1):
        pass


# -- load leveling ------------------------------------------------------------------------


async def test_queue_is_fifo_within_a_level_and_the_full_queue_sheds() -> None:
    shedder = LoadShedder(1, max_waiting=3)
    gate = Gate()
    order: list[int] = []

    async def work(i: int) -> None:
        order.append(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        for i in range(3):
            tg.start_soon(shedder.call, work, i)
            await settle()
        assert shedder.waiting == 3
        assert await shed_reason(shedder, work, 99) == "queue_full"
        gate.opened.set()
    assert order == [0, 1, 2]
    assert (shedder.in_flight, shedder.waiting) == (0, 0)


async def test_more_important_waiter_is_admitted_before_a_less_important_one() -> None:
    shedder = LoadShedder(1, max_waiting=4, priority_levels=3)
    gate = Gate()
    order: list[str] = []

    async def work(label: str, level: int) -> None:
        with priority(level):
            await shedder.call(record, label)

    async def record(label: str) -> None:
        order.append(label)

    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        for label, level in [("batch", 2), ("normal", 1), ("critical", 0), ("batch2", 2)]:
            tg.start_soon(work, label, level)
            await settle()
        gate.opened.set()
    assert order == ["critical", "normal", "batch", "batch2"]


async def test_important_arrival_evicts_the_newest_least_important_waiter() -> None:
    shedder = LoadShedder(1, max_waiting=2, priority_levels=3)
    gate = Gate()
    outcomes: dict[str, str | None] = {}

    async def work(label: str, level: int) -> None:
        with priority(level):
            outcomes[label] = await shed_reason(shedder, noop)

    async def noop() -> None:
        pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        tg.start_soon(work, "old-batch", 2)
        await settle()
        tg.start_soon(work, "new-batch", 2)
        await settle()
        tg.start_soon(work, "critical", 0)  # the queue is full: pushes out new-batch
        await settle()
        assert outcomes == {"new-batch": "priority"}
        tg.start_soon(work, "another-batch", 2)  # nothing less important to push out
        await settle()
        assert outcomes["another-batch"] == "queue_full"
        gate.opened.set()
    assert outcomes == {
        "new-batch": "priority",
        "another-batch": "queue_full",
        "old-batch": None,
        "critical": None,
    }
    assert (shedder.in_flight, shedder.waiting) == (0, 0)


async def test_levels_past_the_last_count_as_the_last() -> None:
    shedder = LoadShedder(1, max_waiting=1, priority_levels=2)
    gate = Gate()
    outcomes: list[str | None] = []

    async def work(level: int) -> None:
        with priority(level):
            outcomes.append(await shed_reason(shedder, gate))

    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        tg.start_soon(work, 7)
        await settle()
        tg.start_soon(work, 1)  # the same level as 7: no eviction
        await settle()
        assert outcomes == ["queue_full"]
        gate.opened.set()
    assert outcomes == ["queue_full", None]


async def test_waiter_past_max_wait_is_dropped_before_it_runs(clock: FakeClock) -> None:
    shedder = LoadShedder(1, max_waiting=1, max_wait=0.5, clock=clock)
    gate = Gate()
    ran: list[int] = []
    outcomes: list[str | None] = []

    async def work() -> None:
        ran.append(1)

    async def queued() -> None:
        outcomes.append(await shed_reason(shedder, work))

    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        tg.start_soon(queued)
        await settle()
        clock.advance(0.4)
        await settle()
        assert outcomes == []
        clock.advance(0.1)
        await settle()
        assert outcomes == ["waited_too_long"]
        assert (shedder.waiting, clock.pending_timers) == (0, 0)
        gate.opened.set()
    assert ran == []
    assert shedder.in_flight == 0


async def test_enclosing_deadline_bounds_the_wait(clock: FakeClock) -> None:
    shedder = LoadShedder(1, max_waiting=1, max_wait=10.0, clock=clock)
    gate = Gate()
    errors: list[BaseException] = []

    async def queued() -> None:
        try:
            async with Timeout(1.0, clock=clock):
                await shedder.call(gate)
        except (TimeoutExceeded, LoadShedError) as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        tg.start_soon(queued)
        await settle()
        clock.advance(1.0)
        await settle()
        assert len(errors) == 1  # after 1 s, not max_wait's 10 s
        assert shedder.waiting == 0
        gate.opened.set()
    assert shedder.in_flight == 0


async def test_cancelled_waiter_leaves_no_slot_entry_or_timer(clock: FakeClock) -> None:
    shedder = LoadShedder(1, max_waiting=2, max_wait=5.0, priority_levels=2, clock=clock)
    gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(shedder.call, gate)
            with priority(1):
                doomed.start_soon(shedder.call, gate)
            await settle()
            assert (shedder.waiting, clock.pending_timers) == (2, 2)
            doomed.cancel_scope.cancel()
        assert (shedder.in_flight, shedder.waiting, clock.pending_timers) == (1, 0, 0)
        gate.opened.set()
    assert (shedder.in_flight, shedder.waiting) == (0, 0)
    assert gate.entered == 1


async def test_random_cancellation_of_many_callers_leaks_nothing(clock: FakeClock) -> None:
    shedder = LoadShedder(4, max_waiting=20, max_wait=1.0, priority_levels=3, clock=clock)
    rng = random.Random(7)
    gate = Gate()
    scopes: list[anyio.CancelScope] = []

    async def caller(level: int) -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            with priority(level):
                try:
                    await shedder.call(gate)
                except LoadShedError:
                    pass

    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(caller, rng.randrange(3))
        await settle()
        assert (shedder.in_flight, shedder.waiting) == (4, 20)
        for scope in rng.sample(scopes, 30):
            scope.cancel()
        await settle()
        gate.opened.set()
    assert (shedder.in_flight, shedder.waiting, clock.pending_timers) == (0, 0, 0)


# -- adaptive limits ----------------------------------------------------------------------


async def test_adaptive_limit_grows_while_calls_are_healthy(clock: FakeClock) -> None:
    shedder = LoadShedder(AIMD(initial_limit=2, min_limit=1), clock=clock)
    assert shedder.limit == 2

    async def quick() -> None:
        await clock.sleep(0.01)

    gate = Gate()
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(shedder.call, gate)
        await settle()
        gate.opened.set()
    assert shedder.limit >= 3  # both slots were in use: the limit was stretched
    await shedder.call(quick)
    assert shedder.limit >= 3
    assert shedder.in_flight == 0


async def test_adaptive_limit_backs_off_on_timeouts_and_learns_the_round_trip(
    clock: FakeClock,
) -> None:
    shedder = LoadShedder(AIMD(initial_limit=10, min_limit=1), clock=clock)

    async def slow() -> None:
        await clock.sleep(0.2)
        raise TimeoutError

    async def quick() -> None:
        await clock.sleep(0.1)

    await shedder.call(quick)
    with pytest.raises(TimeoutError):
        await shedder.call(slow)
    assert shedder.limit == 9  # int(10 * 0.9)

    gate = Gate()
    async with anyio.create_task_group() as tg:
        for _ in range(9):
            tg.start_soon(shedder.call, gate)
        await settle()
        with pytest.raises(LoadShedError) as info:
            await shedder.call(quick)
        gate.opened.set()
    assert info.value.retry_after == pytest.approx(0.1)  # the round trip of quick calls


def test_core_hands_new_slots_to_waiters_when_the_limit_rises() -> None:
    core = ShedderCore(1, max_waiting=3, levels=2)
    assert core.try_acquire()
    waiters = [_Waiter(1), _Waiter(0), _Waiter(1)]
    for waiter in waiters:
        assert core.enqueue(waiter) is None
    core.set_limit(3)
    assert [w.granted for w in waiters] == [True, True, False]  # level 0 first, then FIFO
    assert (core.in_flight, core.waiting) == (3, 1)


def test_core_takes_slots_back_as_calls_end_when_the_limit_falls() -> None:
    core = ShedderCore(3, max_waiting=1, levels=1)
    for _ in range(3):
        assert core.try_acquire()
    waiter = _Waiter(0)
    assert core.enqueue(waiter) is None
    core.set_limit(1)
    core.release()
    core.release()
    assert (waiter.granted, core.in_flight) == (False, 1)
    core.release()  # now at the limit: this slot goes to the waiter
    assert (waiter.granted, core.in_flight) == (True, 1)
    assert (core.in_flight, core.waiting) == (1, 0)


async def test_cancelled_calls_are_not_samples(clock: FakeClock) -> None:
    shedder = LoadShedder(AIMD(initial_limit=2, min_limit=1), clock=clock)
    with anyio.CancelScope() as scope:
        async with shedder:
            scope.cancel()
            await anyio.lowlevel.checkpoint()
    assert shedder.limit == 2
    assert shedder.in_flight == 0
