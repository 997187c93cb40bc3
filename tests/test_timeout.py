from __future__ import annotations

import asyncio
import gc
import math
import time
import weakref
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry import trace

import resilient.timeout as timeout_module
from resilient import (
    Bulkhead,
    BulkheadFullError,
    Pipeline,
    RateLimiter,
    Timeout,
    TimeoutExceeded,
    time_left,
)
from resilient._clock import Clock, MonotonicClock
from resilient.telemetry import configure
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


async def returns(value: int) -> int:
    return value


async def test_call_returns_the_result_before_the_deadline() -> None:
    assert await Timeout(5).call(returns, 7) == 7


async def test_decorated_function_returns_the_result() -> None:
    @Timeout(5)
    async def double(x: int) -> int:
        return 2 * x

    assert await double(21) == 42


async def test_fake_clock_deadline_raises_timeout_exceeded(clock: FakeClock) -> None:
    timeout = Timeout(1.5, clock=clock)
    with pytest.raises(TimeoutExceeded) as caught:
        await timeout.call(clock.sleep, 10)
    assert caught.value.timeout == 1.5
    assert "timed out after 1.5s" in str(caught.value)
    assert isinstance(caught.value, TimeoutError)


async def test_real_deadline_cancels_a_real_wait() -> None:
    with pytest.raises(TimeoutExceeded):
        await Timeout(0.01).call(anyio.sleep, 30)


async def test_async_with_raises_timeout_exceeded(clock: FakeClock) -> None:
    with pytest.raises(TimeoutExceeded):
        async with Timeout(1, clock=clock):
            await clock.sleep(2)


async def test_async_with_passes_when_the_block_finishes_in_time(clock: FakeClock) -> None:
    async with Timeout(1, clock=clock):
        await clock.sleep(0.5)
    assert clock.now() == 0.5


async def test_fake_clock_advanced_from_another_task_expires_the_timeout(
    clock: FakeClock,
) -> None:
    outcome: list[str] = []

    async def guarded() -> None:
        try:
            await Timeout(2, clock=clock).call(anyio.sleep_forever)
        except TimeoutExceeded:
            outcome.append("timeout")

    async with anyio.create_task_group() as tg:
        tg.start_soon(guarded)
        await anyio.wait_all_tasks_blocked()
        clock.advance(1.9)
        await anyio.wait_all_tasks_blocked()
        assert outcome == []
        clock.advance(0.2)
    assert outcome == ["timeout"]


async def test_the_inner_timeout_of_two_raises_first(clock: FakeClock) -> None:
    outer, inner = Timeout(10, clock=clock, name="outer"), Timeout(1, clock=clock, name="inner")
    with pytest.raises(TimeoutExceeded) as caught:
        await Pipeline(outer, inner).call(clock.sleep, 5)
    assert "inner" in str(caught.value)


async def test_the_outer_timeout_is_not_mistaken_for_the_inner_one(clock: FakeClock) -> None:
    outer, inner = Timeout(1, clock=clock, name="outer"), Timeout(10, clock=clock, name="inner")
    with pytest.raises(TimeoutExceeded) as caught:
        await Pipeline(outer, inner).call(clock.sleep, 5)
    assert "outer" in str(caught.value)


async def test_real_outer_timeout_is_not_mistaken_for_the_inner_one() -> None:
    outer, inner = Timeout(0.02, name="outer"), Timeout(30, name="inner")
    with pytest.raises(TimeoutExceeded) as caught:
        await Pipeline(outer, inner).call(anyio.sleep, 30)
    assert "outer" in str(caught.value)


async def test_cancellation_from_outside_propagates_as_cancellation() -> None:
    reached = anyio.Event()

    async def wait_forever() -> None:
        reached.set()
        await anyio.sleep_forever()

    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(Timeout(30).call, wait_forever)
            await reached.wait()
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught


async def test_exceptions_from_the_call_pass_through_unchanged() -> None:
    async def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await Timeout(5).call(fail)


async def test_time_left_is_published_inside_the_call(clock: FakeClock) -> None:
    seen: list[float | None] = []

    async def look() -> None:
        seen.append(time_left())
        await clock.sleep(0.25)
        seen.append(time_left())

    assert time_left() is None
    await Timeout(2, clock=clock).call(look)
    assert seen == [2.0, 1.75]
    assert time_left() is None


async def test_time_left_is_the_nearest_of_nested_deadlines(clock: FakeClock) -> None:
    seen: list[float | None] = []

    async def look() -> None:
        seen.append(time_left())

    await Pipeline(Timeout(1, clock=clock), Timeout(5, clock=clock)).call(look)
    await Pipeline(Timeout(5, clock=clock), Timeout(1, clock=clock)).call(look)
    assert seen == [1.0, 1.0]


async def test_time_left_is_published_inside_async_with(clock: FakeClock) -> None:
    async with Timeout(3, clock=clock):
        assert time_left() == 3.0
    assert time_left() is None


async def test_one_timeout_object_serves_concurrent_async_with_blocks(clock: FakeClock) -> None:
    timeout = Timeout(1, clock=clock)
    results: list[str] = []

    async def block(duration: float) -> None:
        try:
            async with timeout:
                await anyio.sleep(duration)
            results.append("done")
        except TimeoutExceeded:
            results.append("timeout")

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(block, 0)
    assert results == ["done"] * 50


async def test_nested_async_with_on_the_same_object_unwinds_in_order(clock: FakeClock) -> None:
    timeout = Timeout(2, clock=clock)
    async with timeout:
        async with timeout:
            assert time_left() == 2.0
        await clock.sleep(1)
        assert time_left() == 1.0
    assert time_left() is None


async def test_aexit_without_aenter_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without a matching __aenter__"):
        await Timeout(1).__aexit__(None, None, None)


@pytest.mark.parametrize(
    "seconds", [0, -1, math.inf, math.nan, "1", None, True, pytest.param(10**400, id="10**400")]
)
def test_bad_seconds_is_rejected_naming_the_field(seconds: object) -> None:
    with pytest.raises(ValueError, match=r"seconds must be .*got"):
        Timeout(seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "  ", 3])
def test_bad_name_is_rejected(name: object) -> None:
    with pytest.raises(ValueError, match="name must be"):
        Timeout(1, name=name)  # type: ignore[arg-type]


class TestTelemetry:
    async def test_span_records_success(self, telemetry, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
        await Timeout(1, name="t-ok", clock=clock).call(returns, 1)
        (span,) = telemetry.spans("resilient.timeout")
        assert span.attributes["resilient.policy.name"] == "t-ok"
        assert "resilient.outcome" not in span.attributes  # a success leaves it unset
        assert span.status.is_ok or span.status.status_code.name == "UNSET"

    async def test_span_records_timeout_as_error(self, telemetry, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(TimeoutExceeded):
            await Timeout(1, name="t-late", clock=clock).call(clock.sleep, 3)
        (span,) = telemetry.spans("resilient.timeout")
        assert span.status.status_code.name == "ERROR"
        assert span.attributes["error.type"] == "TimeoutExceeded"
        assert span.attributes["resilient.outcome"] == "timeout"
        assert telemetry.metric_total("resilient.calls", policy="t-late") == 1

    async def test_policy_switch_silences_it(self, telemetry) -> None:  # type: ignore[no-untyped-def]
        await Timeout(1, name="t-quiet", telemetry=False).call(returns, 1)
        assert telemetry.spans() == []
        assert telemetry.metric_total("resilient.calls", policy="t-quiet") == 0

    async def test_global_switch_turns_spans_off(self, telemetry) -> None:  # type: ignore[no-untyped-def]
        configure(spans=False)
        try:
            await Timeout(1, name="t-global").call(returns, 1)
        finally:
            configure(spans=True)
        assert telemetry.spans() == []
        assert telemetry.metric_total("resilient.calls", policy="t-global") == 1

    async def test_async_with_records_a_span(self, telemetry, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
        async with Timeout(1, name="t-cm", clock=clock):
            pass
        (span,) = telemetry.spans("resilient.timeout")
        assert span.attributes["resilient.policy.name"] == "t-cm"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_shared_deadline_queue_expires_exactly_the_late_calls() -> None:
    # The native asyncio path (one queue and one loop timer per Timeout) runs on real loop
    # time, so this test uses short real sleeps: calls that finish early must not keep
    # later calls from expiring, and the timer re-arms for calls that start later.
    timeout = Timeout(0.05)
    outcomes: dict[int, str] = {}

    async def call(i: int) -> None:
        await anyio.sleep(0.01 * (i % 3))  # stagger the starts
        try:
            await timeout.call(anyio.sleep, 0.0 if i % 2 else 5)
            outcomes[i] = "ok"
        except TimeoutExceeded:
            outcomes[i] = "timeout"

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(call, i)
    assert outcomes == {i: "ok" if i % 2 else "timeout" for i in range(30)}
    assert not timeout._queue or not timeout._queue.entries


async def test_a_timeout_made_per_call_leaves_nothing_behind() -> None:
    # Users often write `async with Timeout(5):` per request; nothing global may keep the
    # policy alive afterwards.
    timeout = Timeout(30)
    await timeout.call(returns, 1)
    async with timeout:
        pass
    ref = weakref.ref(timeout)
    del timeout
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_timeouts_of_one_duration_share_one_deadline_queue() -> None:
    await Timeout(31).call(returns, 1)
    queues = timeout_module._queues[asyncio.get_running_loop()]
    before = dict(queues)
    for _ in range(500):
        await Timeout(31).call(returns, 1)
        async with Timeout(31):
            pass
    assert queues == before
    assert not queues[31.0].entries


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_durations_computed_per_call_do_not_pile_up_timers() -> None:
    # Past the shared queues' limit, each Timeout gets a private queue that disarms its
    # loop timer as soon as its last call is over.
    made = [Timeout(1 + i / 1000) for i in range(timeout_module._MAX_SHARED_QUEUES + 50)]
    for timeout in made:
        await timeout.call(returns, 1)
    queues = timeout_module._queues[asyncio.get_running_loop()]
    assert len(queues) == timeout_module._MAX_SHARED_QUEUES
    private = [t._queue for t in made if t._queue is not None and not t._queue.shared]
    assert len(private) >= 50
    assert all(q.handle is None and not q.entries for q in private)


# -- regressions: what a Timeout leaves behind -------------------------------------------------


class _PlainClock:
    """A clock that satisfies the Clock protocol and nothing more: no timers of its own."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


async def _nursery_whose_child_fails_while_cancelled() -> None:
    async def child() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
        await anyio.sleep_forever()


@pytest.mark.parametrize("face", ["call", "async with"])
@pytest.mark.parametrize("fake", [True, False], ids=["fake clock", "monotonic clock"])
async def test_a_scope_exit_that_raises_still_closes_the_deadline_and_the_span(
    telemetry: Any, face: str, fake: bool
) -> None:
    # On trio, leaving the cancel scope re-raises what is left of the task group's
    # exception group; the Timeout's books must be closed all the same.
    timeout = Timeout(0.01, name="t-exit-raises", clock=FakeClock() if fake else None)

    async def through_the_timeout() -> None:
        if face == "call":
            await timeout.call(_nursery_whose_child_fails_while_cancelled)
        else:
            async with timeout:
                await _nursery_whose_child_fails_while_cancelled()

    with pytest.raises(BaseExceptionGroup) as caught:
        await through_the_timeout()
    assert caught.group_contains(ValueError, match="cleanup failed")
    assert time_left() is None
    (span,) = telemetry.spans("resilient.timeout")
    assert span.end_time is not None
    assert not trace.get_current_span().is_recording()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_finished_calls_do_not_pin_their_tasks_while_an_older_call_runs() -> None:
    # One slow call holds the front of the shared deadline queue while many short calls,
    # each in its own task, go through the same Timeout and return a large result.
    timeout = Timeout(30)
    release = anyio.Event()

    class Payload:
        pass

    results: list[weakref.ref[Payload]] = []

    async def short() -> Payload:
        payload = Payload()
        results.append(weakref.ref(payload))
        return payload

    async with anyio.create_task_group() as tg:
        tg.start_soon(timeout.call, release.wait)
        await anyio.wait_all_tasks_blocked()
        for _ in range(2_000):
            await asyncio.create_task(timeout.call(short))
        queue = timeout._queue
        assert queue is not None
        # Nothing per finished call while the slow one runs: each finished call unlinked
        # its own entry, and only the slow call is left in line.
        assert len(queue.entries) == 1
        await anyio.lowlevel.checkpoint()  # let the loop drop its handle on the last task
        gc.collect()
        assert sum(ref() is not None for ref in results) == 0
        release.set()
    assert not queue.entries


def test_no_event_loop_that_ran_a_timeout_stays_alive() -> None:
    shared = Timeout(30)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await shared.call(returns, 1)
        async with shared:
            pass
        await Timeout(30).call(returns, 1)
        await Timeout(7.25).call(returns, 1)  # a timer still armed when the loop closes

    for _ in range(50):
        asyncio.run(main())
    gc.collect()
    assert [ref for ref in loops if ref() is not None] == []


@pytest.mark.parametrize(
    "clock", [MonotonicClock(), _PlainClock()], ids=["MonotonicClock()", "plain"]
)
async def test_every_clock_of_the_protocol_works_on_every_backend(clock: Clock) -> None:
    timeout = Timeout(0.01, clock=clock)
    assert await timeout.call(returns, 3) == 3
    with pytest.raises(TimeoutExceeded):
        await timeout.call(anyio.sleep, 30)
    with pytest.raises(TimeoutExceeded):
        async with timeout:
            await anyio.sleep(30)
    assert time_left() is None


async def test_a_deadline_stops_applying_to_tasks_that_outlive_its_timeout(
    clock: FakeClock,
) -> None:
    spawned = anyio.Event()
    seen: dict[str, float | None] = {}

    async def background(go: anyio.Event) -> None:
        seen["while running"] = time_left()
        spawned.set()
        await go.wait()
        seen["after"] = time_left()

    go = anyio.Event()
    async with anyio.create_task_group() as tg:
        async with Timeout(10, clock=clock):
            async with Timeout(0.5, clock=clock):
                tg.start_soon(background, go)
                await spawned.wait()
            await clock.sleep(1)
            go.set()
            await anyio.wait_all_tasks_blocked()
        seen["outer closed"] = time_left()
    assert seen["while running"] == 0.5
    # The inner Timeout ended: the task sees the outer one, which is still open...
    assert seen["after"] == 9.0
    # ...and once that ends too, no deadline at all.
    assert seen["outer closed"] is None


async def test_code_inside_a_task_group_the_timeout_bounds_keeps_its_deadline(
    clock: FakeClock,
) -> None:
    seen: list[float | None] = []

    async def child() -> None:
        await clock.sleep(0.25)
        seen.append(time_left())

    async with Timeout(2, clock=clock), anyio.create_task_group() as tg:
        tg.start_soon(child)
    assert seen == [1.75]


@pytest.mark.parametrize(
    "clock", [MonotonicClock(), _PlainClock()], ids=["MonotonicClock()", "plain"]
)
async def test_every_clock_of_the_protocol_bounds_bulkhead_and_limiter_waits(clock: Clock) -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=0.01, clock=clock)
    never = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, never.wait)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(BulkheadFullError, match="no slot within"):
            await bulkhead.call(returns, 1)
        tg.cancel_scope.cancel()
    limiter = RateLimiter(100, burst=1, max_wait=1.0, clock=clock)
    await limiter.acquire()
    await limiter.acquire()  # waits about 10 ms on the clock's own time line


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_calls_leave_the_deadline_queue_from_anywhere_in_any_order() -> None:
    # The queue is a line of the calls in flight: whichever call ends, from the front, the
    # middle or the back, only its own entry goes, and the rest keep their order.
    import random

    loop = asyncio.get_running_loop()
    queue = timeout_module.DeadlineQueue(loop, 3600.0, shared=False)
    rng = random.Random(8)
    live: list[Any] = []
    for step in range(2_000):
        if live and rng.random() < 0.45:
            entry = live.pop(rng.randrange(len(live)))
            assert queue.leave(entry, None) is False
        else:
            live.append(queue.push(loop))
        if step % 97 == 0:
            assert [id(e) for e in queue.entries] == [id(e) for e in live]
    for entry in reversed(live):
        queue.leave(entry, None)
    assert queue.entries == []
    assert queue.handle is None  # a private queue calls its timer off once empty


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_deadline_queue_expires_only_what_is_due_and_keeps_the_rest_in_line() -> None:
    loop = asyncio.get_running_loop()
    queue = timeout_module.DeadlineQueue(loop, 0.05, shared=False)
    first = queue.push(loop)
    second = queue.push(loop)
    queue.leave(first, None)
    # Only `second` is in line; when its deadline passes the timer cancels this task.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(10)
    assert queue.leave(second, asyncio.CancelledError()) is True
    assert queue.entries == []
