"""The event-listener seam: what a subscribed callback receives, and when it does not."""

from __future__ import annotations

import logging
import random
from typing import Any

import anyio
import pytest
from test_switches import run_python  # the suite's helper for a fresh interpreter

import resilient.telemetry
from resilient import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    RateLimitedError,
    RateLimiter,
    Retry,
    Timeout,
)
from resilient.telemetry import Event, subscribe
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


class Flaky(Exception):
    pass


async def fails() -> None:
    raise Flaky("down")


async def ok() -> str:
    return "ok"


def names(events: list[Event]) -> list[str]:
    return [event.name for event in events]


async def test_a_global_listener_sees_retries_and_the_end_of_the_call(clock: FakeClock) -> None:
    events: list[Event] = []
    retry = Retry(
        attempts=2,
        backoff=Backoff(initial=0.5, jitter="none", rng=random.Random(1)),
        clock=clock,
        name="listened",
    )
    with subscribe(events.append), pytest.raises(Flaky):
        await retry.call(fails)
    mine = [e for e in events if e.policy == "listened"]
    assert names(mine) == [
        "resilient.retry.attempt",
        "resilient.retry.scheduled",
        "resilient.retry.attempt",
        "resilient.retry.gave_up",
        "resilient.call",
    ]
    scheduled = mine[1]
    assert scheduled.kind == "retry"
    assert scheduled.attributes == {"resilient.retry.attempt": 2, "resilient.retry.delay": 0.5}
    assert mine[3].attributes["resilient.retry.reason"] == "exhausted"
    end = mine[-1]
    assert end.attributes["resilient.outcome"] == "exhausted"
    assert end.attributes["resilient.retry.attempt"] == 2
    assert end.attributes["resilient.call.duration"] >= 0
    assert isinstance(end.error, Flaky)


async def test_a_closed_subscription_hears_nothing_more() -> None:
    events: list[Event] = []
    subscription = subscribe(events.append)
    await Timeout(5, name="t-closed").call(ok)
    subscription.close()
    subscription.close()  # closing twice is harmless
    await Timeout(5, name="t-closed").call(ok)
    assert [e.name for e in events if e.policy == "t-closed"] == ["resilient.call"]


async def test_a_policy_listener_hears_only_its_policy(clock: FakeClock) -> None:
    breaker = CircuitBreaker("payments", minimum_calls=2, clock=clock)
    other = Timeout(5, name="other")
    events: list[Event] = []
    with subscribe(events.append, policy=breaker):
        for _ in range(2):
            with pytest.raises(Flaky):
                await breaker.call(fails)
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)
        await other.call(ok)
    assert {e.policy for e in events} == {"payments"}
    transition = next(e for e in events if e.name == "resilient.circuit_breaker.transition")
    assert transition.attributes == {
        "resilient.circuit_breaker.from": "closed",
        "resilient.circuit_breaker.to": "open",
    }
    outcomes = [e.attributes["resilient.outcome"] for e in events if e.name == "resilient.call"]
    assert outcomes == ["failure", "failure", "rejected"]
    assert isinstance(events[-1].error, CircuitOpenError)


async def test_waits_and_decisions_are_reported(clock: FakeClock) -> None:
    limiter = RateLimiter(1, max_wait=5, clock=clock, name="rl-listened")
    bulkhead = Bulkhead(1, name="bh-listened")
    events: list[Event] = []
    with subscribe(events.append):
        await limiter.acquire()
        await limiter.acquire()  # waits a second of fake time
        strict = RateLimiter(1, clock=clock, name="rl-listened")
        await strict.call(ok)
        with pytest.raises(RateLimitedError):
            await strict.call(ok)
        await bulkhead.call(ok)
    decisions = [
        e.attributes["resilient.rate_limit.decision"]
        for e in events
        if e.name == "resilient.rate_limit.decision"
    ]
    assert decisions == ["allowed", "delayed", "allowed", "rejected"]
    delayed = next(e for e in events if e.name == "resilient.rate_limit.delayed")
    assert delayed.attributes["resilient.wait.duration"] == pytest.approx(1.0)
    bulkhead_events = [e.name for e in events if e.policy == "bh-listened"]
    assert bulkhead_events == [
        "resilient.bulkhead.acquired",
        "resilient.bulkhead.released",
        "resilient.call",
    ]


async def test_a_listener_that_raises_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    with subscribe(broken), caplog.at_level(logging.ERROR, logger="resilient.telemetry"):
        assert await Timeout(5, name="t-broken-listener").call(ok) == "ok"
    assert "listener raised" in caplog.text


async def test_telemetry_false_reports_nothing_even_to_listeners() -> None:
    events: list[Event] = []
    quiet = Timeout(5, name="t-quiet-listener", telemetry=False)
    with subscribe(events.append), subscribe(events.append, policy=quiet):
        await quiet.call(ok)
    assert [e for e in events if e.policy == "t-quiet-listener"] == []


async def test_listeners_and_opentelemetry_see_the_same_call(telemetry: Any) -> None:
    events: list[Event] = []
    with subscribe(events.append):
        await Timeout(5, name="t-both").call(ok)
    assert [e.name for e in events if e.policy == "t-both"] == ["resilient.call"]
    assert len(telemetry.spans("resilient.timeout")) == 1
    assert telemetry.metric_total("resilient.calls", policy="t-both") == 1


async def test_events_reach_listeners_across_tasks() -> None:
    events: list[Event] = []
    timeout = Timeout(5, name="t-tasks")
    with subscribe(events.append, policy=timeout):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(timeout.call, ok)
    assert len(events) == 10


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"listener": "not callable"}, "listener"), ({"policy": object()}, "policy")],
)
def test_bad_subscriptions_are_refused_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {"listener": print, **kwargs}
    with pytest.raises(ValueError, match=f"{field} must be"):
        subscribe(arguments.pop("listener"), **arguments)


def test_listeners_work_without_any_opentelemetry_sdk() -> None:
    out = run_python(
        """
        import asyncio
        import resilient.telemetry
        from resilient import Retry, Timeout

        events = []
        resilient.telemetry.subscribe(events.append)

        async def ok():
            return 1

        asyncio.run(Timeout(1, name="plain").call(ok))
        print([(e.name, e.policy, e.attributes["resilient.outcome"]) for e in events])
        """
    )
    assert out == "[('resilient.call', 'plain', 'success')]"


def test_the_public_names_are_exported() -> None:
    assert Event.__module__ == "resilient.telemetry"
    assert {"Event", "Subscription", "subscribe", "configure"} <= set(resilient.telemetry.__all__)
