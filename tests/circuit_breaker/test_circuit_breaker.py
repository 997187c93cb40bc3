"""CircuitBreaker as a policy: the faces, classification, timing and every transition,
on asyncio and trio, with the fake clock for all time."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import anyio
import pytest

from resilient import (
    CircuitBreaker,
    CircuitBreakerMetrics,
    CircuitOpenError,
    CircuitState,
    Pipeline,
    RejectedError,
    Timeout,
)
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


class NotOurProblem(Exception):
    pass


async def ok(value: int = 1) -> int:
    return value


async def boom() -> NoReturn:
    raise Boom("down")


async def fail_times(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            await breaker.call(boom)


def small(clock: FakeClock, **options: Any) -> CircuitBreaker:
    settings: dict[str, Any] = {"minimum_calls": 4, "break_duration": 5.0, "clock": clock}
    settings.update(options)
    return CircuitBreaker(**settings)


# -- the faces -----------------------------------------------------------------------


async def test_decorated_function_keeps_its_result_and_signature(clock: FakeClock) -> None:
    breaker = small(clock)

    @breaker
    async def double(x: int, *, times: int = 2) -> int:
        return x * times

    assert await double(21) == 42
    assert await double(5, times=3) == 15
    assert double.__name__ == "double"
    assert breaker.metrics().calls == 2


async def test_call_runs_the_function_with_its_arguments(clock: FakeClock) -> None:
    assert await small(clock).call(ok, 7) == 7


async def test_decorating_a_plain_function_raises_type_error() -> None:
    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match="async def"):
        CircuitBreaker()(plain)  # type: ignore[arg-type]


async def test_async_with_counts_the_block(clock: FakeClock) -> None:
    breaker = small(clock)
    for _ in range(4):
        with pytest.raises(Boom):
            async with breaker:
                raise Boom
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        async with breaker:
            pytest.fail("the block must not run while open")


async def test_async_with_nested_in_one_task_settles_each_entry(clock: FakeClock) -> None:
    breaker = small(clock, half_open_calls=2)
    await fail_times(breaker, 4)
    clock.advance(5)
    async with breaker as outer:
        assert outer is breaker
        async with breaker:
            pass
        assert breaker.state == "half_open"
    assert breaker.state == "closed"


async def test_async_with_exit_without_enter_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="without a matching __aenter__"):
        await CircuitBreaker().__aexit__(None, None, None)


async def test_works_as_a_pipeline_stage(clock: FakeClock) -> None:
    breaker = small(clock)
    pipeline = Pipeline(Timeout(10, clock=clock), breaker)
    for _ in range(4):
        with pytest.raises(Boom):
            await pipeline.call(boom)
    with pytest.raises(CircuitOpenError):
        await pipeline.call(ok)
    assert breaker.state == "open"


# -- closed -> open ------------------------------------------------------------------


async def test_opens_when_failures_reach_the_ratio(clock: FakeClock) -> None:
    breaker = small(clock, failure_ratio=0.5)
    await breaker.call(ok)
    await breaker.call(ok)
    await fail_times(breaker, 1)
    assert breaker.state == "closed"
    await fail_times(breaker, 1)
    assert breaker.state == "open"


async def test_does_not_open_before_minimum_calls(clock: FakeClock) -> None:
    breaker = small(clock, minimum_calls=10)
    await fail_times(breaker, 9)
    assert breaker.state == "closed"
    await fail_times(breaker, 1)
    assert breaker.state == "open"


async def test_opens_on_slow_calls_even_when_they_succeed(clock: FakeClock) -> None:
    breaker = small(clock, slow_call_duration=1.0, slow_call_ratio=0.5)

    async def slow() -> int:
        await clock.sleep(1.0)  # exactly the limit counts as slow
        return 1

    await breaker.call(ok)
    await breaker.call(ok)
    assert await breaker.call(slow) == 1
    assert breaker.state == "closed"
    assert await breaker.call(slow) == 1
    assert breaker.state == "open"
    assert breaker.metrics().slow_calls == 2


async def test_slow_block_counts_as_slow_in_async_with(clock: FakeClock) -> None:
    breaker = small(clock, slow_call_duration=1.0, minimum_calls=1)
    async with breaker:
        await clock.sleep(2.0)
    assert breaker.state == "open"


async def test_time_window_forgets_failures_older_than_the_window(clock: FakeClock) -> None:
    breaker = small(clock, window=10.0, minimum_calls=4)
    await fail_times(breaker, 3)
    clock.advance(11.0)
    await fail_times(breaker, 1)
    assert breaker.state == "closed"
    assert breaker.metrics().calls == 1


async def test_count_window_forgets_all_but_the_last_calls(clock: FakeClock) -> None:
    breaker = small(clock, window_calls=4, minimum_calls=4, failure_ratio=0.75)
    await fail_times(breaker, 2)
    for _ in range(3):
        await breaker.call(ok)
    clock.advance(1e6)  # time does not matter to a count window
    await fail_times(breaker, 1)  # window: ok, ok, ok, fail
    assert breaker.state == "closed"
    await fail_times(breaker, 2)  # window: ok, fail, fail, fail
    assert breaker.state == "open"


async def test_minimum_calls_is_capped_at_window_calls(clock: FakeClock) -> None:
    breaker = CircuitBreaker(window_calls=5, clock=clock)  # minimum_calls=20 by default
    await fail_times(breaker, 5)
    assert breaker.state == "open"


# -- open -----------------------------------------------------------------------------


async def test_open_rejects_with_retry_after_until_the_break_ends(clock: FakeClock) -> None:
    breaker = small(clock, break_duration=5.0)
    await fail_times(breaker, 4)
    clock.advance(2.0)
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(ok)
    assert caught.value.retry_after == pytest.approx(3.0)
    assert caught.value.policy == "circuit_breaker"
    assert isinstance(caught.value, RejectedError)
    assert "is open" in str(caught.value)


async def test_rejected_call_never_runs(clock: FakeClock) -> None:
    breaker = small(clock)
    await fail_times(breaker, 4)
    ran = []

    async def record() -> None:
        ran.append(1)

    with pytest.raises(CircuitOpenError):
        await breaker.call(record)
    assert ran == []


# -- half-open ------------------------------------------------------------------------


async def test_first_call_after_the_break_is_the_probe_and_closes_on_success(
    clock: FakeClock,
) -> None:
    breaker = small(clock, break_duration=5.0)
    await fail_times(breaker, 4)
    clock.advance(5.0)
    assert breaker.state == "open"  # nobody has asked yet
    assert await breaker.call(ok, 3) == 3
    assert breaker.state == "closed"
    assert breaker.metrics().calls == 0  # the window starts empty


async def test_half_open_closes_only_after_all_probes_succeed(clock: FakeClock) -> None:
    breaker = small(clock, half_open_calls=3)
    await fail_times(breaker, 4)
    clock.advance(5.0)
    await breaker.call(ok)
    await breaker.call(ok)
    assert breaker.state == "half_open"
    await breaker.call(ok)
    assert breaker.state == "closed"


async def test_failed_probe_reopens_with_the_break_doubled_up_to_the_max(
    clock: FakeClock,
) -> None:
    breaker = small(clock, break_duration=5.0, max_break_duration=15.0)
    await fail_times(breaker, 4)
    seen = []
    for wait in (5.0, 10.0, 15.0, 15.0):
        clock.advance(wait)
        await fail_times(breaker, 1)  # the probe fails
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(ok)
        seen.append(caught.value.retry_after)
    assert seen == [10.0, 15.0, 15.0, 15.0]


async def test_closing_resets_the_break_to_break_duration(clock: FakeClock) -> None:
    breaker = small(clock, break_duration=5.0)
    await fail_times(breaker, 4)
    clock.advance(5.0)
    await fail_times(breaker, 1)  # break 10 s
    clock.advance(10.0)
    await breaker.call(ok)  # closes
    await fail_times(breaker, 4)
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(ok)
    assert caught.value.retry_after == 5.0


async def test_half_open_rejects_others_while_the_probe_runs(clock: FakeClock) -> None:
    breaker = small(clock)
    await fail_times(breaker, 4)
    clock.advance(5.0)
    release = anyio.Event()

    async def probe() -> int:
        await release.wait()
        return 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, probe)
        await anyio.wait_all_tasks_blocked()
        assert breaker.state == "half_open"
        with pytest.raises(CircuitOpenError, match="probe") as caught:
            await breaker.call(ok)
        assert caught.value.retry_after is None
        release.set()
    assert breaker.state == "closed"


async def test_cancelled_probe_frees_its_slot(clock: FakeClock) -> None:
    breaker = small(clock)
    await fail_times(breaker, 4)
    clock.advance(5.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, anyio.sleep_forever)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)
        tg.cancel_scope.cancel()
    assert breaker.state == "half_open"
    assert await breaker.call(ok, 5) == 5  # the slot was free again
    assert breaker.state == "closed"


async def test_cancellation_is_never_counted_as_a_failure(clock: FakeClock) -> None:
    breaker = small(clock, minimum_calls=1)
    with anyio.move_on_after(0.01):
        await breaker.call(anyio.sleep_forever)
    assert breaker.state == "closed"
    assert breaker.metrics().calls == 0


async def test_cancelled_block_in_async_with_frees_the_probe_slot(clock: FakeClock) -> None:
    breaker = small(clock)
    await fail_times(breaker, 4)
    clock.advance(5.0)
    with anyio.move_on_after(0.01):
        async with breaker:
            await anyio.sleep_forever()
    assert breaker.state == "half_open"
    async with breaker:
        pass
    assert breaker.state == "closed"


# -- classification -------------------------------------------------------------------


async def test_exceptions_outside_on_pass_through_and_count_as_successes(
    clock: FakeClock,
) -> None:
    breaker = small(clock, on=Boom, minimum_calls=1)

    async def other() -> None:
        raise NotOurProblem

    for _ in range(5):
        with pytest.raises(NotOurProblem):
            await breaker.call(other)
    assert breaker.metrics() == CircuitBreakerMetrics(
        state=CircuitState.CLOSED,
        calls=5,
        failures=0,
        slow_calls=0,
        failure_ratio=0.0,
        slow_call_ratio=0.0,
    )
    await fail_times(breaker, 5)
    assert breaker.state == "open"


async def test_on_accepts_a_tuple_of_types(clock: FakeClock) -> None:
    breaker = small(clock, on=(KeyError, Boom), minimum_calls=1)
    await fail_times(breaker, 1)
    assert breaker.state == "open"


async def test_on_predicate_decides_what_is_a_failure(clock: FakeClock) -> None:
    breaker = small(clock, on=lambda exc: "fatal" in str(exc), minimum_calls=2)

    async def raise_(message: str) -> None:
        raise Boom(message)

    with pytest.raises(Boom):
        await breaker.call(raise_, "harmless")
    with pytest.raises(Boom):
        await breaker.call(raise_, "fatal")
    assert breaker.metrics().failures == 1
    assert breaker.state == "open"  # 1 of 2 failed


async def test_on_result_marks_results_as_failures(clock: FakeClock) -> None:
    breaker = small(clock, on_result=lambda status: status >= 500)
    assert await breaker.call(ok, 200) == 200
    for _ in range(3):
        assert await breaker.call(ok, 503) == 503  # returned, but counted as failed
    assert breaker.metrics().failures == 3
    assert breaker.state == "open"


async def test_a_raising_on_result_counts_nothing_and_frees_the_probe(clock: FakeClock) -> None:
    broken = {"raise": False}

    def on_result(result: object) -> bool:
        if broken["raise"]:
            raise ValueError("bad predicate")
        return False

    breaker = small(clock, on_result=on_result)
    await fail_times(breaker, 4)
    clock.advance(5.0)
    broken["raise"] = True
    with pytest.raises(ValueError, match="bad predicate"):
        await breaker.call(ok)
    assert breaker.state == "half_open"
    broken["raise"] = False
    assert await breaker.call(ok) == 1  # the probe slot was freed
    assert breaker.state == "closed"


async def test_a_raising_on_predicate_frees_the_probe(clock: FakeClock) -> None:
    flaky = {"raise": False}

    def on(exc: BaseException) -> bool:
        if flaky["raise"]:
            raise RuntimeError("bad predicate")
        return True

    breaker = small(clock, on=on)
    await fail_times(breaker, 4)
    clock.advance(5.0)
    flaky["raise"] = True
    with pytest.raises(RuntimeError, match="bad predicate"):
        await breaker.call(boom)
    flaky["raise"] = False
    assert await breaker.call(ok) == 1
    assert breaker.state == "closed"


async def test_late_success_from_before_the_trip_does_not_close_the_breaker(
    clock: FakeClock,
) -> None:
    breaker = small(clock)
    release = anyio.Event()

    async def slow_ok() -> int:
        await release.wait()
        return 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, slow_ok)  # admitted while closed
        await anyio.wait_all_tasks_blocked()
        await fail_times(breaker, 4)
        clock.advance(5.0)
        tg.start_soon(breaker.call, anyio.sleep_forever)  # the probe
        await anyio.wait_all_tasks_blocked()
        assert breaker.state == "half_open"
        release.set()  # the old call succeeds, but it is not the probe
        await anyio.wait_all_tasks_blocked()
        assert breaker.state == "half_open"
        tg.cancel_scope.cancel()


# -- manual control -------------------------------------------------------------------


async def test_force_open_rejects_every_call_until_reset(clock: FakeClock) -> None:
    breaker = small(clock)
    breaker.force_open()
    assert breaker.state == "forced_open"
    clock.advance(1e6)
    with pytest.raises(CircuitOpenError, match="forced open") as caught:
        await breaker.call(ok)
    assert caught.value.retry_after is None
    breaker.reset()
    assert await breaker.call(ok) == 1


async def test_disabled_admits_every_call_and_records_nothing(clock: FakeClock) -> None:
    breaker = small(clock, minimum_calls=1)
    breaker.disable()
    await fail_times(breaker, 10)
    assert breaker.state == "disabled"
    assert breaker.metrics().calls == 0
    async with breaker:
        pass
    breaker.reset()
    assert breaker.state == "closed"


async def test_reset_closes_and_clears_the_window(clock: FakeClock) -> None:
    breaker = small(clock)
    await fail_times(breaker, 4)
    assert breaker.state == "open"
    breaker.reset()
    assert breaker.state == "closed"
    assert breaker.metrics().calls == 0
    await fail_times(breaker, 3)
    assert breaker.state == "closed"


async def test_on_state_change_hears_every_transition(clock: FakeClock) -> None:
    changes: list[tuple[str, str]] = []
    breaker = small(clock, on_state_change=lambda old, new: changes.append((old, new)))
    await fail_times(breaker, 4)
    clock.advance(5.0)
    await breaker.call(ok)
    breaker.force_open()
    breaker.disable()
    breaker.reset()
    assert changes == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "forced_open"),
        ("forced_open", "disabled"),
        ("disabled", "closed"),
    ]


async def test_a_raising_on_state_change_is_logged_and_the_breaker_goes_on(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(old: CircuitState, new: CircuitState) -> None:
        raise RuntimeError("listener bug")

    breaker = small(clock, on_state_change=broken)
    with caplog.at_level(logging.ERROR, logger="resilient.circuit_breaker"):
        await fail_times(breaker, 4)
    assert breaker.state == "open"
    assert "on_state_change" in caplog.text


async def test_repr_names_the_breaker_and_its_state() -> None:
    assert repr(CircuitBreaker("db")) == "CircuitBreaker('db', state='closed')"
