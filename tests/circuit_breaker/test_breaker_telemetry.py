"""Spans, span events and metrics of CircuitBreaker, read back from the OpenTelemetry SDK."""

from __future__ import annotations

import itertools
from typing import Any, NoReturn

import pytest
from opentelemetry.trace import StatusCode

from resilient import CircuitBreaker, CircuitOpenError
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

SPAN = "resilient.circuit_breaker"
EVENT = "resilient.circuit_breaker.transition"
TRANSITIONS = "resilient.circuit_breaker.transitions"
STATE = "resilient.circuit_breaker.state"
FROM = "resilient.circuit_breaker.from"
TO = "resilient.circuit_breaker.to"
OUTCOME = "resilient.outcome"

_names = itertools.count()


def fresh_name() -> str:
    return f"cb-telemetry-{next(_names)}"


async def ok() -> int:
    return 1


async def boom() -> NoReturn:
    raise RuntimeError("down")


def small(clock: FakeClock, name: str, **options: Any) -> CircuitBreaker:
    return CircuitBreaker(name, minimum_calls=2, break_duration=5.0, clock=clock, **options)


async def trip(breaker: CircuitBreaker) -> None:
    while breaker.state == "closed":
        with pytest.raises(RuntimeError):
            await breaker.call(boom)


def events(span: Any) -> list[tuple[str, str]]:
    return [(e.attributes[FROM], e.attributes[TO]) for e in span.events if e.name == EVENT]


async def test_each_call_has_a_span_with_the_policy_name_and_outcome(
    telemetry: Any, clock: FakeClock
) -> None:
    name = fresh_name()
    breaker = small(clock, name)
    await breaker.call(ok)
    async with breaker:
        pass
    spans = telemetry.spans(SPAN)
    assert len(spans) == 2
    for span in spans:
        assert span.attributes["resilient.policy.name"] == name
        assert "resilient.outcome" not in span.attributes  # a success leaves it unset
        assert span.status.status_code is StatusCode.UNSET


async def test_rejection_ends_the_span_with_error_status_and_type(
    telemetry: Any, clock: FakeClock
) -> None:
    breaker = small(clock, fresh_name())
    await trip(breaker)
    telemetry.exporter.clear()
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    (span,) = telemetry.spans(SPAN)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "CircuitOpenError"
    assert span.attributes["resilient.outcome"] == "rejected"


async def test_transitions_are_events_on_the_span_of_the_call_that_caused_them(
    telemetry: Any, clock: FakeClock
) -> None:
    breaker = small(clock, fresh_name())
    await trip(breaker)
    first, second = telemetry.spans(SPAN)
    assert events(first) == []
    assert events(second) == [("closed", "open")]
    assert second.status.status_code is StatusCode.ERROR
    telemetry.exporter.clear()
    clock.advance(5.0)
    await breaker.call(ok)
    (probe,) = telemetry.spans(SPAN)
    assert events(probe) == [("open", "half_open"), ("half_open", "closed")]


async def test_transition_and_state_metrics(telemetry: Any, clock: FakeClock) -> None:
    name = fresh_name()
    breaker = small(clock, name)
    assert telemetry.metric_total(STATE, policy=name, **{STATE: "closed"}) == 1
    await trip(breaker)
    clock.advance(5.0)
    with pytest.raises(RuntimeError):
        await breaker.call(boom)  # the probe fails

    def transitions(old: str, new: str) -> float:
        attrs = {FROM: old, TO: new}
        return float(telemetry.metric_total(TRANSITIONS, policy=name, **attrs))

    assert transitions("closed", "open") == 1
    assert transitions("open", "half_open") == 1
    assert transitions("half_open", "open") == 1
    assert telemetry.metric_total(TRANSITIONS, policy=name) == 3
    state = {
        s: telemetry.metric_total(STATE, policy=name, **{STATE: s})
        for s in ("closed", "open", "half_open")
    }
    assert state == {"closed": 0, "open": 1, "half_open": 0}


async def test_call_outcomes_are_counted(telemetry: Any, clock: FakeClock) -> None:
    name = fresh_name()
    breaker = small(clock, name)
    await breaker.call(ok)
    await trip(breaker)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    totals = {
        outcome: telemetry.metric_total("resilient.calls", policy=name, **{OUTCOME: outcome})
        for outcome in ("success", "failure", "rejected")
    }
    assert totals == {"success": 1, "failure": 1, "rejected": 1}  # 1 of 2 failed: open


async def test_manual_transitions_are_counted(telemetry: Any, clock: FakeClock) -> None:
    name = fresh_name()
    breaker = small(clock, name)
    breaker.force_open()
    breaker.reset()
    breaker.disable()
    assert telemetry.metric_total(TRANSITIONS, policy=name) == 3
    assert telemetry.metric_total(STATE, policy=name, **{STATE: "disabled"}) == 1
    assert telemetry.metric_total(STATE, policy=name) == 1  # in exactly one state


async def test_telemetry_false_records_nothing(telemetry: Any, clock: FakeClock) -> None:
    name = fresh_name()
    breaker = small(clock, name, telemetry=False)
    await breaker.call(ok)
    await trip(breaker)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    assert telemetry.spans(SPAN) == []
    assert telemetry.metric_total(TRANSITIONS, policy=name) == 0
    assert telemetry.metric_total(STATE, policy=name) == 0
    assert telemetry.metric_total("resilient.calls", policy=name) == 0
