"""What `on=` and `on_result=` decide, the same way in Retry, CircuitBreaker and Fallback:
a predicate that raises ends the call with a recorded outcome, and exception groups are
looked into by one rule."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from opentelemetry import trace

from resilient import (
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Fallback,
    RejectedError,
    Retry,
)
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


class Broken(Exception):
    """What a faulty predicate raises."""


def broken_predicate(_: object) -> bool:
    raise Broken("the predicate failed")


async def fails() -> None:
    raise ConnectionError("down")


async def returns_none() -> None:
    return None


def assert_books_balance(retry: Retry) -> None:
    stats = retry.statistics
    assert stats.calls == stats.successes + stats.failures + stats.cancelled


def assert_no_span_left_current() -> None:
    assert not trace.get_current_span().is_recording()


# -- a predicate that raises -----------------------------------------------------------------


@pytest.mark.parametrize("recorded", [False, True], ids=["no telemetry", "telemetry"])
@pytest.mark.parametrize("which", ["on", "on_result"])
async def test_a_raising_retry_predicate_ends_the_call_with_an_outcome(
    telemetry: Any, clock: FakeClock, recorded: bool, which: str
) -> None:
    name = f"retry-raising-{which}-{recorded}"
    if which == "on":
        retry = Retry(on=broken_predicate, clock=clock, name=name, telemetry=recorded)
        target = fails
    else:
        retry = Retry(on_result=broken_predicate, clock=clock, name=name, telemetry=recorded)
        target = returns_none
    with pytest.raises(Broken):
        await retry.call(target)
    assert_books_balance(retry)
    assert retry.statistics.failures == 1
    assert_no_span_left_current()
    if recorded:
        (span,) = telemetry.spans("resilient.retry")
        assert span.end_time is not None
        assert span.attributes["error.type"] == "Broken"
        assert (
            telemetry.metric_total(
                "resilient.calls", policy=name, **{"resilient.outcome": "failure"}
            )
            == 1
        )


@pytest.mark.parametrize("which", ["on", "on_result"])
async def test_a_raising_predicate_after_a_retry_ends_the_call(
    clock: FakeClock, which: str
) -> None:
    # The predicate raises on the second judgement, once the call is on its slow path.
    judged = 0

    def second_time_broken(_: object) -> bool:
        nonlocal judged
        judged += 1
        if judged == 2:
            raise Broken("the predicate failed")
        return True

    if which == "on":
        retry = Retry(attempts=3, on=second_time_broken, clock=clock)
        target = fails
    else:
        retry = Retry(attempts=3, on_result=second_time_broken, clock=clock)
        target = returns_none
    with pytest.raises(Broken):
        await retry.call(target)
    assert retry.statistics.attempts == 2
    assert_books_balance(retry)


@pytest.mark.parametrize("which", ["on", "on_result"])
async def test_a_raising_predicate_in_the_block_form_ends_the_loop(
    telemetry: Any, clock: FakeClock, which: str
) -> None:
    if which == "on":
        retry = Retry(on=broken_predicate, clock=clock, name="block-raising")
    else:
        retry = Retry(on_result=broken_predicate, clock=clock, name="block-raising")
    attempts = 0

    async def block() -> None:
        nonlocal attempts
        async for attempt in retry.attempts():
            with attempt:
                attempts += 1
                if which == "on":
                    raise ConnectionError("down")
                attempt.result = None

    with pytest.raises(Broken):
        await block()
    assert attempts == 1
    assert_books_balance(retry)
    assert retry.statistics.failures == 1
    (span,) = telemetry.spans("resilient.retry")
    assert span.end_time is not None
    assert_no_span_left_current()


async def test_a_raising_fallback_predicate_propagates_and_ends_the_span(telemetry: Any) -> None:
    fallback = Fallback(value=0, on=broken_predicate, name="fallback-raising")
    with pytest.raises(Broken) as caught:
        await fallback.call(fails)
    assert isinstance(caught.value.__context__, ConnectionError)
    (span,) = telemetry.spans("resilient.fallback")
    assert span.end_time is not None
    assert span.attributes["error.type"] == "Broken"
    assert_no_span_left_current()


async def test_a_raising_breaker_predicate_propagates_and_counts_nothing(
    telemetry: Any, clock: FakeClock
) -> None:
    breaker = CircuitBreaker("breaker-raising", on=broken_predicate, clock=clock)
    with pytest.raises(Broken):
        await breaker.call(fails)
    assert breaker.metrics().calls == 0
    (span,) = telemetry.spans("resilient.circuit_breaker")
    assert span.end_time is not None
    assert_no_span_left_current()


# -- exception groups --------------------------------------------------------------------------


async def fan_out(*errors: Exception) -> None:
    """Fail the way a call that fans out with a task group fails."""

    async def fail(error: Exception) -> None:
        raise error

    async with anyio.create_task_group() as tg:
        for error in errors:
            tg.start_soon(fail, error)


def grouped(*errors: Exception) -> Any:
    async def call() -> None:
        await fan_out(*errors)

    return call


async def test_retry_retries_a_group_whose_every_member_it_names(clock: FakeClock) -> None:
    retry = Retry(attempts=3, on=ConnectionError, clock=clock)
    with pytest.raises(ExceptionGroup):
        await retry.call(grouped(ConnectionError("a"), ConnectionError("b")))
    assert retry.statistics.attempts == 3


async def test_retry_does_not_retry_a_group_with_a_member_it_does_not_name(
    clock: FakeClock,
) -> None:
    retry = Retry(attempts=3, on=ConnectionError, clock=clock)
    with pytest.raises(ExceptionGroup):
        await retry.call(grouped(ConnectionError("a"), KeyError("b")))
    assert retry.statistics.attempts == 1


async def test_nested_groups_are_looked_into(clock: FakeClock) -> None:
    retry = Retry(attempts=2, on=ConnectionError, clock=clock)

    async def nested() -> None:
        raise ExceptionGroup("outer", [ExceptionGroup("inner", [ConnectionError()])])

    with pytest.raises(ExceptionGroup):
        await retry.call(nested)
    assert retry.statistics.attempts == 2


async def test_naming_the_group_type_itself_still_matches(clock: FakeClock) -> None:
    retry = Retry(attempts=2, on=ExceptionGroup, clock=clock)
    with pytest.raises(ExceptionGroup):
        await retry.call(grouped(KeyError("a")))
    assert retry.statistics.attempts == 2


@pytest.mark.parametrize(
    "rejection",
    [
        CircuitOpenError("open", policy="b"),
        BulkheadFullError("full", policy="h"),
    ],
    ids=["breaker", "bulkhead"],
)
async def test_the_default_retry_does_not_retry_a_grouped_rejection(
    clock: FakeClock, rejection: RejectedError
) -> None:
    retry = Retry(attempts=3, clock=clock)
    with pytest.raises(ExceptionGroup):
        await retry.call(grouped(rejection, ConnectionError("other")))
    assert retry.statistics.attempts == 1


async def test_a_grouped_rejection_is_retried_when_on_names_it(clock: FakeClock) -> None:
    retry = Retry(attempts=3, on=(CircuitOpenError, ConnectionError), clock=clock)
    with pytest.raises(ExceptionGroup):
        await retry.call(grouped(CircuitOpenError("open", policy="b"), ConnectionError("x")))
    assert retry.statistics.attempts == 3


async def test_a_predicate_sees_the_group_then_its_members(clock: FakeClock) -> None:
    seen: list[str] = []

    def transient(exc: BaseException) -> bool:
        seen.append(type(exc).__name__)
        return isinstance(exc, ConnectionError)

    retry = Retry(attempts=2, on=transient, clock=clock)
    with pytest.raises(ExceptionGroup):
        await retry.call(grouped(ConnectionError("a")))
    assert retry.statistics.attempts == 2
    assert seen[:2] == ["ExceptionGroup", "ConnectionError"]


async def test_the_breaker_counts_a_fanned_out_failure(clock: FakeClock) -> None:
    breaker = CircuitBreaker(minimum_calls=2, on=ConnectionError, clock=clock)
    for _ in range(2):
        with pytest.raises(ExceptionGroup):
            await breaker.call(grouped(ConnectionError("a"), ConnectionError("b")))
    assert breaker.state == "open"
    assert breaker.metrics().failures == 2


async def test_the_breaker_does_not_count_a_group_with_a_member_outside_on(
    clock: FakeClock,
) -> None:
    breaker = CircuitBreaker(minimum_calls=1, on=ConnectionError, clock=clock)
    with pytest.raises(ExceptionGroup):
        await breaker.call(grouped(ConnectionError("a"), KeyError("b")))
    assert breaker.state == "closed"
    assert breaker.metrics().failures == 0


async def test_fallback_replaces_a_group_whose_members_it_names() -> None:
    fallback = Fallback(value="cached", on=ConnectionError)
    assert await fallback.call(grouped(ConnectionError("a"))) == "cached"
    with pytest.raises(ExceptionGroup):
        await fallback.call(grouped(ConnectionError("a"), KeyError("b")))


async def test_a_group_holding_a_cancellation_is_a_cancellation(clock: FakeClock) -> None:
    retry = Retry(attempts=3, clock=clock)
    breaker = CircuitBreaker(minimum_calls=1, clock=clock)
    fallback = Fallback(value="cached")

    async def cancelled_in_a_group() -> None:
        raise BaseExceptionGroup("mixed", [ConnectionError(), KeyboardInterrupt()])

    for policy in (retry, breaker, fallback):
        with pytest.raises(BaseExceptionGroup):
            await policy.call(cancelled_in_a_group)
    assert retry.statistics.attempts == 1
    assert retry.statistics.cancelled == 1
    assert breaker.metrics().calls == 0
