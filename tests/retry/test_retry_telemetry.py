"""Retry's spans, events and metrics, read back from the OpenTelemetry SDK."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from resilient import Backoff, Pipeline, Retry, RetryBudget, Timeout
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

NO_JITTER = Backoff(initial=1.0, multiplier=2.0, max_delay=100.0, jitter="none")


def failing_then(value: Any, failures: int) -> Any:
    state = {"left": failures}

    async def call() -> Any:
        await anyio.lowlevel.checkpoint()
        if state["left"]:
            state["left"] -= 1
            raise ConnectionError("refused")
        return value

    return call


def attempts_of(telemetry: Any) -> list[ReadableSpan]:
    spans: list[ReadableSpan] = telemetry.spans("resilient.retry.attempt")
    return sorted(spans, key=lambda s: s.attributes["resilient.retry.attempt"])


async def test_a_first_try_success_records_one_span_with_one_attempt(
    telemetry: Any, clock: FakeClock
) -> None:
    retry = Retry(name="r-ok", clock=clock)
    assert await retry.call(failing_then("ok", 0)) == "ok"
    (span,) = telemetry.spans("resilient.retry")
    assert span.attributes["resilient.policy.name"] == "r-ok"
    assert "resilient.outcome" not in span.attributes  # a success leaves it unset
    assert "resilient.retry.attempt" not in span.attributes  # one attempt is implied
    (attempt,) = attempts_of(telemetry)
    assert attempt.attributes["resilient.retry.attempt"] == 1
    assert attempt.parent is not None
    assert attempt.parent.span_id == span.context.span_id
    assert telemetry.metric_total("resilient.retry.attempts", policy="r-ok") == 1
    assert (
        telemetry.metric_total("resilient.calls", policy="r-ok", **{"resilient.outcome": "success"})
        == 1
    )


async def test_each_attempt_gets_a_child_span_and_each_retry_an_event(
    telemetry: Any, clock: FakeClock
) -> None:
    retry = Retry(attempts=3, backoff=NO_JITTER, name="r-retries", clock=clock)
    assert await retry.call(failing_then("ok", 2)) == "ok"
    (span,) = telemetry.spans("resilient.retry")
    attempts = attempts_of(telemetry)
    assert [a.attributes["resilient.retry.attempt"] for a in attempts] == [1, 2, 3]
    assert all(a.parent is not None and a.parent.span_id == span.context.span_id for a in attempts)
    assert [a.status.status_code for a in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert attempts[0].attributes["error.type"] == "ConnectionError"
    scheduled = [e for e in span.events if e.name == "resilient.retry.scheduled"]
    assert [
        (e.attributes["resilient.retry.attempt"], e.attributes["resilient.retry.delay"])
        for e in scheduled
    ] == [(2, 1.0), (3, 2.0)]
    assert "resilient.outcome" not in span.attributes  # a success leaves it unset
    assert span.attributes["resilient.retry.attempt"] == 3
    assert telemetry.metric_total("resilient.retry.attempts", policy="r-retries") == 3


async def test_spans_of_the_call_nest_under_the_attempt_span(
    telemetry: Any, clock: FakeClock
) -> None:
    tracer = trace.get_tracer("test")
    retry = Retry(attempts=2, name="r-nest", clock=clock)
    failures = {"left": 1}

    async def call() -> None:
        with tracer.start_as_current_span("user.work"):
            await anyio.lowlevel.checkpoint()
            if failures["left"]:
                failures["left"] -= 1
                raise ConnectionError

    await retry.call(call)
    user = sorted(telemetry.spans("user.work"), key=lambda s: s.start_time)
    attempts = attempts_of(telemetry)
    assert [u.parent.span_id for u in user if u.parent] == [a.context.span_id for a in attempts]


async def test_giving_up_ends_the_span_with_error_and_the_reason(
    telemetry: Any, clock: FakeClock
) -> None:
    retry = Retry(attempts=2, name="r-exhausted", clock=clock)
    with pytest.raises(ConnectionError):
        await retry.call(failing_then("ok", 5))
    (span,) = telemetry.spans("resilient.retry")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "ConnectionError"
    assert span.attributes["resilient.outcome"] == "exhausted"
    (gave_up,) = [e for e in span.events if e.name == "resilient.retry.gave_up"]
    assert gave_up.attributes["resilient.retry.reason"] == "exhausted"


async def test_a_budget_refusal_is_a_span_event(telemetry: Any, clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.0)
    retry = Retry(budget=budget, name="r-budget", clock=clock)
    with pytest.raises(ConnectionError):
        await retry.call(failing_then("ok", 5))
    (span,) = telemetry.spans("resilient.retry")
    assert [e.name for e in span.events] == ["resilient.retry.budget_exhausted"]
    assert span.attributes["resilient.outcome"] == "budget_exhausted"
    assert (
        telemetry.metric_total(
            "resilient.calls", policy="r-budget", **{"resilient.outcome": "budget_exhausted"}
        )
        == 1
    )


async def test_giving_up_before_the_deadline_is_a_span_event(
    telemetry: Any, clock: FakeClock
) -> None:
    retry = Retry(attempts=5, backoff=NO_JITTER, name="r-deadline", clock=clock)
    with pytest.raises(ConnectionError):
        await Pipeline(Timeout(0.5, clock=clock), retry).call(failing_then("ok", 5))
    (span,) = telemetry.spans("resilient.retry")
    (gave_up,) = [e for e in span.events if e.name == "resilient.retry.gave_up"]
    assert gave_up.attributes["resilient.retry.reason"] == "deadline"
    assert span.attributes["resilient.outcome"] == "deadline"


async def test_cancellation_is_recorded_as_cancelled_without_error_status(
    telemetry: Any, clock: FakeClock
) -> None:
    retry = Retry(name="r-cancel", clock=clock)
    with anyio.CancelScope() as scope:

        async def call() -> None:
            scope.cancel()
            await anyio.lowlevel.checkpoint()

        await retry.call(call)
    (span,) = telemetry.spans("resilient.retry")
    assert span.attributes["resilient.outcome"] == "cancelled"
    assert span.status.status_code == StatusCode.UNSET
    (attempt,) = attempts_of(telemetry)
    assert attempt.status.status_code == StatusCode.UNSET


async def test_the_block_form_records_the_same_spans(telemetry: Any, clock: FakeClock) -> None:
    retry = Retry(attempts=3, backoff=NO_JITTER, name="r-block", clock=clock)
    async for attempt in retry.attempts():
        with attempt:
            if attempt.number < 2:
                raise ConnectionError
    (span,) = telemetry.spans("resilient.retry")
    assert "resilient.outcome" not in span.attributes  # a success leaves it unset
    attempts = attempts_of(telemetry)
    assert [a.attributes["resilient.retry.attempt"] for a in attempts] == [1, 2]
    assert all(a.parent is not None and a.parent.span_id == span.context.span_id for a in attempts)
    assert [e.name for e in span.events] == ["resilient.retry.scheduled"]
    assert telemetry.metric_total("resilient.retry.attempts", policy="r-block") == 2


async def test_telemetry_false_emits_nothing(telemetry: Any, clock: FakeClock) -> None:
    retry = Retry(attempts=3, name="r-quiet", clock=clock, telemetry=False)
    assert await retry.call(failing_then("ok", 2)) == "ok"
    async for attempt in retry.attempts():
        with attempt:
            pass
    assert telemetry.spans() == []
    assert telemetry.metric_total("resilient.retry.attempts", policy="r-quiet") == 0
    assert telemetry.metric_total("resilient.calls", policy="r-quiet") == 0
    assert retry.statistics.attempts == 4


async def test_breaking_out_of_the_block_form_leaves_no_span_current(
    telemetry: Any, clock: FakeClock
) -> None:
    before = trace.get_current_span()
    async for attempt in Retry(attempts=3, name="r-break", clock=clock).attempts():
        with attempt:
            assert trace.get_current_span().is_recording()  # the attempt's span
            raise ConnectionError("down")
        break  # abandon the loop after a failed attempt
    assert trace.get_current_span() is before
    # A span made after the loop is not a child of the abandoned call.
    with trace.get_tracer("test").start_as_current_span("after") as after:
        pass
    assert after.parent is None  # type: ignore[attr-defined]
