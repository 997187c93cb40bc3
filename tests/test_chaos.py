"""Chaos: fault, latency and result injection, switchable per call, on asyncio and trio."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
from opentelemetry.trace import StatusCode

from resilient import Chaos, Pipeline, Retry, Timeout, TimeoutExceeded
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


class Upstream:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, value: str = "real") -> str:
        self.calls += 1
        return value


async def test_fault_instance_is_raised_and_the_call_never_runs() -> None:
    upstream = Upstream()
    fault = ConnectionResetError("injected")
    chaos = Chaos(fault=fault, rate=1.0)
    with pytest.raises(ConnectionResetError) as caught:
        await chaos.call(upstream)
    assert caught.value is fault
    assert upstream.calls == 0


async def test_fault_class_and_factory_make_a_fresh_exception_each_time() -> None:
    by_class = Chaos(fault=ConnectionError, rate=1.0)
    by_factory = Chaos(fault=lambda: TimeoutError("slow upstream"), rate=1.0)
    seen = []
    for chaos in (by_class, by_class, by_factory, by_factory):
        try:
            await chaos.call(Upstream())
        except (ConnectionError, TimeoutError) as exc:
            seen.append(exc)
    assert [type(e) for e in seen] == [ConnectionError, ConnectionError, TimeoutError, TimeoutError]
    assert seen[0] is not seen[1]
    assert seen[2] is not seen[3]


async def test_a_factory_that_returns_no_exception_is_a_type_error() -> None:
    chaos = Chaos(fault=lambda: "oops", rate=1.0)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="Exception"):
        await chaos.call(Upstream())


async def test_result_is_returned_instead_of_the_call() -> None:
    upstream = Upstream()
    chaos = Chaos(result=None, rate=1.0)
    assert await chaos.call(upstream) is None
    assert upstream.calls == 0


async def test_latency_alone_delays_the_real_call_on_the_clock() -> None:
    clock = FakeClock()
    upstream = Upstream()
    chaos = Chaos(latency=2.5, rate=1.0, clock=clock)
    assert await chaos.call(upstream, "late") == "late"
    assert upstream.calls == 1
    assert clock.now() == 2.5


async def test_latency_then_fault_and_latency_then_result() -> None:
    clock = FakeClock()
    with pytest.raises(ConnectionError):
        await Chaos(latency=1.0, fault=ConnectionError, rate=1.0, clock=clock).call(Upstream())
    assert clock.now() == 1.0
    upstream = Upstream()
    chaos = Chaos(latency=0.5, result="cached", rate=1.0, clock=clock)
    assert await chaos.call(upstream) == "cached"
    assert clock.now() == 1.5
    assert upstream.calls == 0


async def test_fault_and_result_together_inject_each_half_of_the_time() -> None:
    upstream = Upstream()
    chaos = Chaos(fault=ConnectionError, result="fake", rate=1.0, rng=random.Random(9))
    faults = results = 0
    for _ in range(1000):
        try:
            assert await chaos.call(upstream) == "fake"
            results += 1
        except ConnectionError:
            faults += 1
    assert upstream.calls == 0
    assert faults + results == 1000
    assert faults == pytest.approx(500, abs=60)


async def test_the_kind_says_what_this_call_got(telemetry: Any) -> None:
    clock = FakeClock()
    chaos = Chaos(
        latency=0.1, fault=ConnectionError, result=0, rate=1.0, clock=clock, name="chaos-kind"
    )
    for _ in range(20):
        try:
            await chaos.call(Upstream())
        except ConnectionError:
            pass
    kinds = {
        span.events[0].attributes["resilient.chaos.kind"]
        for span in telemetry.spans("resilient.chaos")
    }
    assert kinds == {"latency+fault", "latency+result"}


async def test_rate_zero_never_injects() -> None:
    upstream = Upstream()
    chaos = Chaos(fault=ConnectionError, rate=0.0)
    for _ in range(200):
        assert await chaos.call(upstream) == "real"
    assert upstream.calls == 200


async def test_rate_injects_the_expected_share_and_a_seed_repeats_it() -> None:
    async def pattern(seed: int) -> list[bool]:
        chaos = Chaos(result="fake", rate=0.3, rng=random.Random(seed))
        return [await chaos.call(Upstream()) == "fake" for _ in range(2000)]

    first = await pattern(42)
    assert first == await pattern(42)
    assert sum(first) / 2000 == pytest.approx(0.3, abs=0.04)


async def test_enabled_is_read_on_every_call() -> None:
    switch = {"on": False}
    upstream = Upstream()
    chaos = Chaos(result="fake", rate=1.0, enabled=lambda: switch["on"])
    assert await chaos.call(upstream) == "real"
    switch["on"] = True
    assert await chaos.call(upstream) == "fake"
    chaos.enabled = False
    assert await chaos.call(upstream) == "real"
    chaos.enabled = True
    assert await chaos.call(upstream) == "fake"


async def test_rate_is_read_on_every_call() -> None:
    dial = {"rate": 0.0}
    chaos = Chaos(result="fake", rate=lambda: dial["rate"])
    assert await chaos.call(Upstream()) == "real"
    dial["rate"] = 1.0
    assert await chaos.call(Upstream()) == "fake"
    chaos.rate = 0.0
    assert await chaos.call(Upstream()) == "real"
    dial["rate"] = 2.0
    chaos.rate = lambda: dial["rate"]
    with pytest.raises(ValueError, match="rate"):
        await chaos.call(Upstream())


async def test_decorator_keeps_the_signature_and_runs_through_chaos() -> None:
    chaos = Chaos(result="fake", rate=1.0)

    @chaos
    async def fetch(key: str) -> str:
        return key

    assert await fetch("k") == "fake"
    assert fetch.__name__ == "fetch"


async def test_retry_outside_chaos_survives_injected_faults() -> None:
    clock = FakeClock()
    chaos = Chaos(fault=ConnectionError, rate=0.5, rng=random.Random(5))
    policy = Pipeline(Retry(attempts=10, clock=clock, budget=None), chaos)
    for _ in range(50):
        assert await policy.call(Upstream()) == "real"


async def test_injected_latency_is_bounded_by_an_enclosing_timeout() -> None:
    clock = FakeClock()
    chaos = Chaos(latency=10.0, rate=1.0, clock=clock)
    with pytest.raises(TimeoutExceeded):
        await Pipeline(Timeout(1.0, clock=clock), chaos).call(Upstream())
    assert clock.pending_timers == 0


async def test_cancelling_an_injected_wait_leaves_nothing_behind() -> None:
    clock = FakeClock(autojump=False)
    upstream = Upstream()
    chaos = Chaos(latency=5.0, rate=1.0, clock=clock)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await chaos.call(upstream)
    assert scope.cancelled_caught
    assert upstream.calls == 0
    assert clock.pending_timers == 0


# -- telemetry ----------------------------------------------------------------------------


async def test_injected_calls_are_marked_in_spans_and_metrics(telemetry: Any) -> None:
    chaos = Chaos(fault=ConnectionError, rate=1.0, name="chaos-marked")
    with pytest.raises(ConnectionError):
        await chaos.call(Upstream())
    quiet = Chaos(fault=ConnectionError, rate=0.0, name="chaos-marked")
    await quiet.call(Upstream())
    injected, real = telemetry.spans("resilient.chaos")
    assert injected.attributes["resilient.chaos.injected"] is True
    assert injected.attributes["resilient.outcome"] == "injected"
    assert injected.status.status_code is StatusCode.ERROR
    assert injected.attributes["error.type"] == "ConnectionError"
    [event] = injected.events
    assert event.name == "resilient.chaos.injected"
    assert event.attributes["resilient.chaos.kind"] == "fault"
    assert "resilient.chaos.injected" not in real.attributes
    assert (
        telemetry.metric_total(
            "resilient.chaos.injections", policy="chaos-marked", **{"resilient.chaos.kind": "fault"}
        )
        == 1
    )


async def test_injected_latency_event_carries_the_seconds(telemetry: Any) -> None:
    clock = FakeClock()
    chaos = Chaos(latency=0.25, result=1, rate=1.0, clock=clock, name="chaos-latency")
    assert await chaos.call(Upstream()) == 1
    [span] = telemetry.spans("resilient.chaos")
    [event] = span.events
    assert event.attributes["resilient.chaos.kind"] == "latency+result"
    assert event.attributes["resilient.chaos.latency"] == 0.25


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "at least one"),
        ({"fault": "boom"}, "fault"),
        ({"fault": KeyboardInterrupt}, "fault"),
        ({"fault": KeyboardInterrupt()}, "fault"),
        ({"latency": 0}, "latency"),
        ({"latency": -1.0}, "latency"),
        ({"latency": float("nan")}, "latency"),
        ({"result": 1, "rate": 1.5}, "rate"),
        ({"result": 1, "rate": -0.1}, "rate"),
        ({"result": 1, "rate": "half"}, "rate"),
        ({"result": 1, "enabled": "yes"}, "enabled"),
        ({"result": 1, "enabled": 1}, "enabled"),
        ({"result": 1, "rng": 7}, "rng"),
        ({"result": 1, "name": ""}, "name"),
        ({"result": 1, "clock": 3}, "clock"),
        ({"result": 1, "telemetry": None}, "telemetry"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Chaos(**kwargs)


def test_assigning_a_bad_rate_or_switch_is_rejected() -> None:
    chaos = Chaos(result=1)
    with pytest.raises(ValueError, match="rate"):
        chaos.rate = 3.0
    with pytest.raises(ValueError, match="enabled"):
        chaos.enabled = "on"  # type: ignore[assignment]


def test_defaults_follow_the_design() -> None:
    chaos = Chaos(fault=ConnectionError)
    assert chaos.rate == 0.001
    assert chaos.enabled is True
    assert chaos.latency is None
    assert chaos.name == "chaos"
