"""Retry as a decorator and through .call(): what is retried, when it stops, and why."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from resilient import (
    Backoff,
    CircuitOpenError,
    Pipeline,
    RateLimitedError,
    RejectedError,
    Retry,
    RetryBudget,
    RetryStatistics,
    Timeout,
)
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

NO_JITTER = Backoff(initial=1.0, multiplier=2.0, max_delay=100.0, jitter="none")


class Flaky:
    """Raises the given errors in turn, then returns `value`; counts its calls."""

    def __init__(self, *errors: BaseException, value: Any = "ok") -> None:
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def always(error: type[Exception]) -> Callable[[], Awaitable[None]]:
    async def fail() -> None:
        await anyio.lowlevel.checkpoint()
        raise error("boom")

    return fail


async def test_success_on_the_first_attempt_returns_at_once(clock: FakeClock) -> None:
    retry = Retry(clock=clock)
    assert await retry.call(Flaky()) == "ok"
    assert clock.now() == 0.0
    assert retry.statistics == RetryStatistics(1, 1, 0, 1, 0, 0, 0, 0, 0, 0)


async def test_retries_matching_exceptions_until_the_call_succeeds(clock: FakeClock) -> None:
    flaky = Flaky(ConnectionError(), ConnectionError())
    retry = Retry(attempts=3, backoff=NO_JITTER, on=ConnectionError, clock=clock)
    assert await retry.call(flaky) == "ok"
    assert flaky.calls == 3
    assert clock.now() == 3.0  # slept 1 s, then 2 s
    stats = retry.statistics
    assert (stats.calls, stats.attempts, stats.retries, stats.successes) == (1, 3, 2, 1)


async def test_exceptions_outside_on_are_not_retried(clock: FakeClock) -> None:
    flaky = Flaky(ValueError("bad input"))
    retry = Retry(on=ConnectionError, clock=clock)
    with pytest.raises(ValueError, match="bad input") as caught:
        await retry.call(flaky)
    assert flaky.calls == 1
    assert not getattr(caught.value, "__notes__", [])
    assert retry.statistics.failures == 1


async def test_a_tuple_of_types_retries_each_of_them(clock: FakeClock) -> None:
    flaky = Flaky(ConnectionError(), TimeoutError())
    retry = Retry(on=(ConnectionError, TimeoutError), clock=clock)
    assert await retry.call(flaky) == "ok"
    assert flaky.calls == 3


async def test_a_predicate_on_decides_what_is_retried(clock: FakeClock) -> None:
    def transient(exc: BaseException) -> bool:
        return isinstance(exc, OSError) and exc.errno == 111

    retry = Retry(on=transient, clock=clock)
    flaky = Flaky(OSError(111, "refused"), OSError(2, "missing"))
    with pytest.raises(OSError, match="missing"):
        await retry.call(flaky)
    assert flaky.calls == 2


async def test_giving_up_re_raises_the_last_exception_with_a_note(clock: FakeClock) -> None:
    errors = [ConnectionError(f"try {n}") for n in (1, 2, 3)]
    retry = Retry(attempts=3, name="fetch", clock=clock)
    with pytest.raises(ConnectionError) as caught:
        await retry.call(Flaky(*errors))
    assert caught.value is errors[-1]
    assert caught.value.__notes__ == ["resilient: Retry 'fetch' gave up after 3 attempts"]
    assert retry.statistics.exhausted == 1


async def test_a_single_attempt_never_retries(clock: FakeClock) -> None:
    flaky = Flaky(ConnectionError())
    with pytest.raises(ConnectionError) as caught:
        await Retry(attempts=1, clock=clock).call(flaky)
    assert flaky.calls == 1
    assert caught.value.__notes__ == ["resilient: Retry 'retry' gave up after 1 attempt"]


async def test_on_result_retries_a_rejected_result(clock: FakeClock) -> None:
    results = iter(["pending", "pending", "done"])

    async def poll() -> str:
        return next(results)

    retry = Retry(attempts=5, on_result=lambda r: r == "pending", clock=clock)
    assert await retry.call(poll) == "done"
    assert retry.statistics.attempts == 3


async def test_when_attempts_run_out_on_results_the_last_result_is_returned(
    clock: FakeClock,
) -> None:
    results = iter([1, 2, 3, 4])

    async def poll() -> int:
        return next(results)

    retry = Retry(attempts=3, on_result=lambda r: r < 10, clock=clock)
    assert await retry.call(poll) == 3
    stats = retry.statistics
    assert (stats.successes, stats.failures, stats.exhausted) == (0, 1, 1)


async def test_on_result_and_on_combine(clock: FakeClock) -> None:
    results: list[str | Exception] = [ConnectionError(), "pending", "done"]

    async def poll() -> str:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    retry = Retry(attempts=3, on_result=lambda r: r == "pending", clock=clock)
    assert await retry.call(poll) == "done"


@pytest.mark.parametrize("error", [CircuitOpenError, RateLimitedError])
async def test_rejected_errors_are_not_retried_by_default(
    clock: FakeClock, error: type[RejectedError]
) -> None:
    flaky = Flaky(error("open", policy="db"))
    with pytest.raises(error):
        await Retry(clock=clock).call(flaky)
    assert flaky.calls == 1


async def test_rejected_errors_are_not_retried_when_on_names_only_their_bases(
    clock: FakeClock,
) -> None:
    flaky = Flaky(CircuitOpenError("open", policy="db"))
    with pytest.raises(CircuitOpenError):
        await Retry(on=(Exception, LookupError), clock=clock).call(flaky)
    assert flaky.calls == 1


@pytest.mark.parametrize("on", [RejectedError, CircuitOpenError, (ValueError, CircuitOpenError)])
async def test_rejected_errors_are_retried_when_on_names_them(clock: FakeClock, on: Any) -> None:
    flaky = Flaky(CircuitOpenError("open", policy="db"))
    assert await Retry(on=on, clock=clock).call(flaky) == "ok"
    assert flaky.calls == 2


async def test_naming_one_rejection_does_not_retry_the_others(clock: FakeClock) -> None:
    flaky = Flaky(RateLimitedError("slow down", policy="api"))
    with pytest.raises(RateLimitedError):
        await Retry(on=(Exception, CircuitOpenError), clock=clock).call(flaky)
    assert flaky.calls == 1


async def test_a_predicate_decides_about_rejected_errors_itself(clock: FakeClock) -> None:
    flaky = Flaky(CircuitOpenError("open", policy="db"))
    assert await Retry(on=lambda exc: True, clock=clock).call(flaky) == "ok"


async def test_cancellation_during_a_call_is_not_retried(clock: FakeClock) -> None:
    retry = Retry(clock=clock)
    calls = 0
    with anyio.CancelScope() as scope:

        async def cancelled_call() -> None:
            nonlocal calls
            calls += 1
            scope.cancel()
            await anyio.lowlevel.checkpoint()

        await retry.call(cancelled_call)
    assert scope.cancelled_caught
    assert calls == 1
    stats = retry.statistics
    assert (stats.calls, stats.attempts, stats.cancelled, stats.failures) == (1, 1, 1, 0)


class CancellingClock(FakeClock):
    """A fake clock that cancels `scope` when a retry starts sleeping."""

    scope: anyio.CancelScope | None = None

    async def sleep(self, seconds: float) -> None:
        assert self.scope is not None
        self.scope.cancel()
        await super().sleep(seconds)


async def test_cancellation_during_backoff_sleep_is_not_retried() -> None:
    clock = CancellingClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)  # one retry in all
    retry = Retry(attempts=3, backoff=Backoff(0.01, jitter="none"), budget=budget, clock=clock)
    flaky = Flaky(ConnectionError(), ConnectionError())
    with anyio.CancelScope() as scope:
        clock.scope = scope
        await retry.call(flaky)
    assert scope.cancelled_caught
    assert flaky.calls == 1
    stats = retry.statistics
    assert (stats.attempts, stats.retries, stats.cancelled, stats.failures) == (1, 0, 1, 0)
    # The retry token it took before sleeping was given back.
    assert budget.try_spend(clock.now())


async def test_a_retry_never_sleeps_past_max_duration(clock: FakeClock) -> None:
    retry = Retry(attempts=10, backoff=NO_JITTER, max_duration=2.5, name="fetch", clock=clock)
    fail = Flaky(*[ConnectionError() for _ in range(10)])
    with pytest.raises(ConnectionError) as caught:
        await retry.call(fail)
    # Attempts at t=0 and t=1; the next one would start at t=3, after max_duration.
    assert fail.calls == 2
    assert clock.now() == 1.0
    (note,) = caught.value.__notes__
    assert note.startswith("resilient: Retry 'fetch' gave up after 2 attempts")
    assert "max_duration (2.5s)" in note
    assert retry.statistics.max_duration_give_ups == 1


async def test_a_retry_never_sleeps_past_the_enclosing_timeout(clock: FakeClock) -> None:
    retry = Retry(attempts=10, backoff=NO_JITTER, name="fetch", clock=clock)
    fail = Flaky(*[ConnectionError() for _ in range(10)])
    with pytest.raises(ConnectionError) as caught:
        await Pipeline(Timeout(2.5, clock=clock), retry).call(fail)
    assert fail.calls == 2
    assert clock.now() == 1.0
    (note,) = caught.value.__notes__
    assert "gave up after 2 attempts" in note
    assert "enclosing deadline (1.5s left)" in note
    assert retry.statistics.deadline_give_ups == 1


async def test_a_budget_refusal_stops_retrying_with_a_note(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)
    retry = Retry(attempts=5, budget=budget, name="fetch", clock=clock)
    fail = Flaky(*[ConnectionError() for _ in range(5)])
    with pytest.raises(ConnectionError) as caught:
        await retry.call(fail)
    assert fail.calls == 2
    (note,) = caught.value.__notes__
    assert note.startswith("resilient: Retry 'fetch' gave up after 2 attempts")
    assert "retry budget is exhausted" in note
    assert retry.statistics.budget_exhausted == 1


async def test_each_retry_has_its_own_budget_by_default() -> None:
    one, two = Retry(), Retry()
    assert isinstance(one.budget, RetryBudget)
    assert one.budget is not two.budget


async def test_budget_none_switches_the_budget_off(clock: FakeClock) -> None:
    retry = Retry(attempts=50, budget=None, backoff=Backoff(0.0), clock=clock)
    fail = Flaky(*[ConnectionError() for _ in range(49)])
    assert await retry.call(fail) == "ok"
    assert retry.budget is None


async def test_one_budget_can_be_shared_by_several_policies(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)
    first = Retry(budget=budget, clock=clock)
    second = Retry(budget=budget, clock=clock)
    assert await first.call(Flaky(ConnectionError())) == "ok"
    with pytest.raises(ConnectionError):
        await second.call(Flaky(ConnectionError()))


async def test_a_thousand_concurrent_calls_keep_statistics_exact(clock: FakeClock) -> None:
    retry = Retry(attempts=3, budget=None, clock=clock)

    async def one(i: int) -> None:
        errors = [ConnectionError()] * (i % 3 if i % 3 < 2 else 3)
        try:
            await retry.call(Flaky(*errors))
        except ConnectionError:
            pass

    async with anyio.create_task_group() as tg:
        for i in range(1_000):
            tg.start_soon(one, i)
    # i % 3 == 0: 1 attempt; == 1: 2 attempts; == 2: 3 attempts, then gives up.
    assert retry.statistics == RetryStatistics(
        calls=1_000,
        attempts=334 + 333 * 2 + 333 * 3,
        retries=333 + 333 * 2,
        successes=667,
        failures=333,
        cancelled=0,
        exhausted=333,
        budget_exhausted=0,
        deadline_give_ups=0,
        max_duration_give_ups=0,
    )


async def test_a_thousand_concurrent_failing_calls_respect_the_shared_budget(
    clock: FakeClock,
) -> None:
    retry = Retry(attempts=3, backoff=Backoff(0.001), clock=clock)
    async with anyio.create_task_group() as tg:
        for _ in range(1_000):
            tg.start_soon(_swallow, retry.call(always(ConnectionError)))
    stats = retry.statistics
    assert stats.calls == 1_000
    assert stats.calls == stats.successes + stats.failures + stats.cancelled
    assert stats.failures == stats.exhausted + stats.budget_exhausted == 1_000
    # 20 % of 1,000 calls plus the floor of 10/s over 10 s.
    assert stats.retries == 200 + 100
    assert stats.attempts == stats.calls + stats.retries


async def _swallow(call: Awaitable[object]) -> None:
    try:
        await call
    except ConnectionError:
        pass


async def test_decorating_keeps_the_signature_name_and_wrapped_function() -> None:
    async def get_user(user_id: int, *, fresh: bool = False) -> dict[str, int]:
        """Fetch a user."""
        return {"id": user_id}

    decorated = Retry()(get_user)
    assert decorated.__name__ == "get_user"
    assert decorated.__doc__ == "Fetch a user."
    assert decorated.__wrapped__ is get_user  # type: ignore[attr-defined]
    assert inspect.signature(decorated) == inspect.signature(get_user)
    assert inspect.iscoroutinefunction(decorated)
    assert await decorated(7) == {"id": 7}


def test_decorating_a_plain_function_raises_type_error() -> None:
    def sync() -> None: ...

    with pytest.raises(TypeError, match="async def"):
        Retry()(sync)  # type: ignore[arg-type]


def test_decorating_an_async_generator_raises_type_error() -> None:
    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="async generator"):
        Retry()(agen)


def test_statistics_are_a_frozen_snapshot() -> None:
    stats = Retry().statistics
    with pytest.raises(AttributeError):
        stats.calls = 5  # type: ignore[misc]


def test_repr_names_the_configuration() -> None:
    text = repr(Retry(attempts=4, name="users"))
    assert "attempts=4" in text
    assert "name='users'" in text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"backoff": 0.5}, "backoff"),
        ({"on": "ConnectionError"}, "on"),
        ({"on": ()}, "on"),
        ({"on": int}, "on"),
        ({"on": KeyboardInterrupt}, "on"),
        ({"on": (ValueError, 3)}, "on"),
        ({"on_result": "done"}, "on_result"),
        ({"budget": 0.2}, "budget"),
        ({"max_duration": 0}, "max_duration"),
        ({"max_duration": -1.0}, "max_duration"),
        ({"max_duration": float("inf")}, "max_duration"),
        ({"max_duration": 10**400}, "max_duration"),
        ({"name": ""}, "name"),
        ({"clock": "monotonic"}, "clock"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Retry(**kwargs)  # type: ignore[arg-type]
