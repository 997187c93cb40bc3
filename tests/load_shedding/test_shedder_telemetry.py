"""What a LoadShedder reports: a span event per shed call with its reason, and metrics."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from opentelemetry.trace import StatusCode

from gates import Gate, settle
from resilient import LoadShedError
from resilient.load_shedding import AIMD, LoadShedder, priority
from resilient.telemetry import Event, subscribe
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


def shed_events(telemetry: Any) -> list[str]:
    return [
        str(event.attributes["resilient.load_shed.reason"])
        for span in telemetry.spans("resilient.load_shed")
        for event in span.events
        if event.name == "resilient.load_shed.shed"
    ]


async def test_shed_call_is_an_error_span_with_its_reason(telemetry: Any) -> None:
    shedder = LoadShedder(1, name="ls-limit")
    async with shedder:
        with pytest.raises(LoadShedError):
            await shedder.call(Gate())
    (span,) = [
        s
        for s in telemetry.spans("resilient.load_shed")
        if s.attributes.get("resilient.outcome") == "rejected"
    ]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "LoadShedError"
    assert shed_events(telemetry) == ["limit"]
    assert (
        telemetry.metric_total(
            "resilient.load_shed.requests", "ls-limit", **{"resilient.load_shed.reason": "limit"}
        )
        == 1
    )
    assert telemetry.metric_total("resilient.load_shed.admitted", "ls-limit") == 1
    assert telemetry.metric_total("resilient.load_shed.in_flight", "ls-limit") == 0
    assert telemetry.metric_total("resilient.load_shed.limit", "ls-limit") == 1


async def test_every_reason_is_reported(telemetry: Any, clock: FakeClock) -> None:
    shedder = LoadShedder(
        1, max_waiting=1, max_wait=0.5, priority_levels=2, name="ls-reasons", clock=clock
    )
    gate = Gate()

    async def call(level: int) -> None:
        with priority(level):
            try:
                await shedder.call(gate)
            except LoadShedError:
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        tg.start_soon(call, 1)  # queued, then pushed out by the next
        await settle()
        tg.start_soon(call, 0)  # queued, then waits too long
        await settle()
        tg.start_soon(call, 0)  # the queue is full of its equals
        await settle()
        clock.advance(0.5)
        await settle()
        gate.opened.set()
    assert sorted(shed_events(telemetry)) == ["priority", "queue_full", "waited_too_long"]
    for reason in ("priority", "queue_full", "waited_too_long"):
        assert (
            telemetry.metric_total(
                "resilient.load_shed.requests",
                "ls-reasons",
                **{"resilient.load_shed.reason": reason},
            )
            == 1
        )
    assert telemetry.metric_total("resilient.load_shed.queued", "ls-reasons") == 2


async def test_queue_time_is_recorded(telemetry: Any, clock: FakeClock) -> None:
    shedder = LoadShedder(1, max_waiting=1, name="ls-queue", clock=clock)
    gate = Gate()

    async def quick() -> None: ...

    async with anyio.create_task_group() as tg:
        tg.start_soon(shedder.call, gate)
        await settle()
        tg.start_soon(shedder.call, quick)
        await settle()
        clock.advance(0.25)
        gate.opened.set()
    (dequeued,) = [
        event
        for span in telemetry.spans("resilient.load_shed")
        for event in span.events
        if event.name == "resilient.load_shed.dequeued"
    ]
    assert dequeued.attributes["resilient.wait.duration"] == pytest.approx(0.25)
    assert telemetry.metric_total("resilient.wait.duration", "ls-queue") == 1
    assert telemetry.metric_total("resilient.load_shed.admitted", "ls-queue") == 2


async def test_the_limit_gauge_follows_an_adaptive_limit(telemetry: Any, clock: FakeClock) -> None:
    shedder = LoadShedder(AIMD(initial_limit=10, min_limit=1), name="ls-adaptive", clock=clock)
    assert telemetry.metric_total("resilient.load_shed.limit", "ls-adaptive") == 10

    async def timed_out() -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await shedder.call(timed_out)
    assert shedder.limit == 9
    assert telemetry.metric_total("resilient.load_shed.limit", "ls-adaptive") == 9


async def test_listeners_see_shed_events_without_an_sdk() -> None:
    shedder = LoadShedder(1, name="ls-listen")
    events: list[Event] = []
    with subscribe(events.append):
        async with shedder:
            with pytest.raises(LoadShedError):
                await shedder.call(Gate())
    (shed,) = [e for e in events if e.name == "resilient.load_shed.shed"]
    assert (shed.kind, shed.policy) == ("load_shed", "ls-listen")
    assert shed.attributes == {"resilient.load_shed.reason": "limit"}
