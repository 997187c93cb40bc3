"""AdaptiveThrottle: the SRE formula over a sliding window, on asyncio and trio."""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from resilient import (
    AdaptiveThrottle,
    CircuitOpenError,
    RejectedError,
    ThrottledError,
)
from resilient.testing import FakeClock
from resilient.throttle import ThrottleCore

pytestmark = pytest.mark.anyio


class Upstream:
    """An upstream that can serve a fraction `accepting` of the client's demand: each call
    the client wants to make adds `accepting` of a request to its capacity, and a call that
    arrives with no capacity left is refused (a RejectedError, as a shed request)."""

    def __init__(self, accepting: float) -> None:
        self.accepting = accepting
        self.capacity = 0.0
        self.received = 0

    def demand(self) -> None:
        self.capacity = min(self.capacity + self.accepting, 5.0)

    async def __call__(self) -> str:
        self.received += 1
        if self.capacity >= 1.0:
            self.capacity -= 1.0
            return "ok"
        raise RejectedError("upstream is overloaded", policy="upstream")


async def drive(
    throttle: AdaptiveThrottle, upstream: Upstream, clock: FakeClock, calls: int
) -> tuple[int, int]:
    """Make `calls` calls, 10 a second; (sent, refused locally)."""
    before = upstream.received
    refused = 0
    for _ in range(calls):
        clock.advance(0.1)
        upstream.demand()
        try:
            await throttle.call(upstream)
        except ThrottledError:
            refused += 1
        except RejectedError:
            pass
    return upstream.received - before, refused


# -- the pure core ------------------------------------------------------------------------


def test_core_follows_the_sre_formula() -> None:
    core = ThrottleCore(k=2.0, window=60.0, min_requests=0, max_reject=1.0)
    for _ in range(70):
        core.refuse(0.0)
    for _ in range(30):
        core.accept(0.0)
    assert core.totals(1.0) == (100, 30)
    assert core.reject_probability(1.0) == pytest.approx((100 - 2 * 30) / 101)


def test_core_never_rejects_below_min_requests() -> None:
    core = ThrottleCore(k=2.0, window=60.0, min_requests=20, max_reject=0.9)
    for _ in range(19):
        core.refuse(0.0)
    assert core.reject_probability(0.0) == 0.0
    core.refuse(0.0)
    assert core.reject_probability(0.0) == pytest.approx(0.9)


def test_core_caps_the_probability_at_max_reject() -> None:
    core = ThrottleCore(k=2.0, window=60.0, min_requests=0, max_reject=0.5)
    for _ in range(1000):
        core.refuse(0.0)
    assert core.reject_probability(0.0) == 0.5


def test_core_forgets_outcomes_that_left_the_window() -> None:
    core = ThrottleCore(k=2.0, window=10.0, min_requests=0, max_reject=0.9)
    for _ in range(100):
        core.refuse(0.0)
    assert core.reject_probability(0.0) > 0.8
    assert core.reject_probability(25.0) == 0.0
    assert core.totals(25.0) == (0, 0)


# -- the policy against a simulated upstream ---------------------------------------------


@pytest.mark.parametrize(("k", "accepting"), [(2.0, 0.2), (2.0, 0.3), (1.5, 0.4), (2.0, 0.7)])
async def test_share_sent_settles_near_k_times_the_accepted_fraction(
    k: float, accepting: float
) -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(k=k, window=30.0, clock=clock, rng=random.Random(7))
    upstream = Upstream(accepting)
    await drive(throttle, upstream, clock, 3000)  # settle
    sent, refused = await drive(throttle, upstream, clock, 3000)
    assert sent + refused == 3000
    assert sent / 3000 == pytest.approx(min(1.0, k * accepting), abs=0.05)


async def test_share_sent_recovers_when_the_upstream_does() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(window=10.0, clock=clock, rng=random.Random(1))
    upstream = Upstream(0.1)
    await drive(throttle, upstream, clock, 1000)
    sent, _ = await drive(throttle, upstream, clock, 500)
    assert sent / 500 == pytest.approx(0.2, abs=0.05)
    upstream.accepting = 1.0
    await drive(throttle, upstream, clock, 600)  # six windows to climb back
    sent, refused = await drive(throttle, upstream, clock, 500)
    assert refused == 0
    assert sent == 500
    assert throttle.reject_probability == 0.0


async def test_sends_at_least_the_share_max_reject_leaves() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(window=10.0, clock=clock, rng=random.Random(3))
    upstream = Upstream(0.0)  # refuses everything
    await drive(throttle, upstream, clock, 1000)
    sent, _ = await drive(throttle, upstream, clock, 2000)
    assert sent / 2000 == pytest.approx(0.1, abs=0.03)


async def test_a_healthy_upstream_is_never_throttled() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(clock=clock)
    upstream = Upstream(1.0)
    sent, refused = await drive(throttle, upstream, clock, 2000)
    assert (sent, refused) == (2000, 0)


async def test_other_exceptions_count_as_accepted() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(clock=clock, max_reject=0.0)

    async def not_found() -> None:
        raise LookupError("404")

    for _ in range(100):
        with pytest.raises(LookupError):
            await throttle.call(not_found)
    assert throttle.reject_probability == 0.0
    assert throttle.core.totals(clock.now()) == (100, 100)


async def test_on_names_what_counts_as_refused() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(clock=clock, max_reject=0.0, on=ConnectionRefusedError)

    async def refused() -> None:
        raise ConnectionRefusedError

    async def open_breaker() -> None:
        raise CircuitOpenError("open", policy="b")

    with pytest.raises(ConnectionRefusedError):
        await throttle.call(refused)
    with pytest.raises(CircuitOpenError):
        await throttle.call(open_breaker)
    assert throttle.core.totals(clock.now()) == (2, 1)


async def test_on_result_counts_refusing_results_such_as_a_503() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(clock=clock, max_reject=0.0, on_result=lambda r: r in (429, 503))

    async def status(code: int) -> int:
        return code

    assert await throttle.call(status, 503) == 503
    assert await throttle.call(status, 429) == 429
    assert await throttle.call(status, 404) == 404
    assert throttle.core.totals(clock.now()) == (3, 1)


def test_core_counts_nothing_for_calls_in_flight() -> None:
    core = ThrottleCore(k=2.0, window=60.0, min_requests=0, max_reject=0.9)
    for _ in range(1000):
        core.accept(0.0)
    assert core.reject_probability(0.0) == 0.0
    assert core.totals(0.0) == (1000, 1000)


async def test_a_burst_of_slow_calls_to_a_healthy_upstream_is_never_throttled() -> None:
    import anyio

    clock = FakeClock()
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(0))
    refused = 0

    async def slow() -> None:
        await clock.sleep(1.0)

    async def one() -> None:
        nonlocal refused
        try:
            await throttle.call(slow)
        except ThrottledError:
            refused += 1

    async with anyio.create_task_group() as tasks:
        for _ in range(200):
            tasks.start_soon(one)
    assert refused == 0


async def test_cancellation_is_not_a_refusal() -> None:
    import anyio

    clock = FakeClock()
    throttle = AdaptiveThrottle(clock=clock, max_reject=0.0)

    async def hang() -> None:
        await anyio.sleep_forever()

    with anyio.CancelScope() as scope:
        scope.cancel()
        await throttle.call(hang)
    assert throttle.core.totals(clock.now()) == (0, 0)


async def test_throttled_error_carries_policy_and_retry_after() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(
        window=60.0, min_requests=0, max_reject=1.0, clock=clock, name="quotes"
    )

    async def rejected() -> None:
        raise RejectedError("no", policy="upstream")

    errors: list[ThrottledError] = []
    for _ in range(200):
        try:
            await throttle.call(rejected)
        except ThrottledError as exc:
            errors.append(exc)
        except RejectedError:
            pass
    assert errors
    assert errors[0].policy == "quotes"
    assert errors[0].retry_after == pytest.approx(6.0)
    assert isinstance(errors[0], RejectedError)


async def test_async_with_and_decorator_count_like_call() -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(clock=clock, max_reject=0.0)

    @throttle
    async def ok() -> str:
        return "ok"

    assert await ok() == "ok"
    async with throttle:
        pass
    with pytest.raises(RejectedError):
        async with throttle:
            raise RejectedError("no", policy="upstream")
    assert throttle.core.totals(clock.now()) == (3, 2)


async def test_rejection_is_a_span_with_error_status(telemetry: Any) -> None:
    clock = FakeClock()
    throttle = AdaptiveThrottle(
        min_requests=0, max_reject=1.0, clock=clock, name="throttle-span", rng=random.Random(0)
    )

    async def rejected() -> None:
        raise RejectedError("no", policy="upstream")

    for _ in range(50):
        try:
            await throttle.call(rejected)
        except RejectedError:
            pass
    spans = telemetry.spans("resilient.throttle")
    assert len(spans) == 50
    refused = [s for s in spans if s.attributes.get("error.type") == "ThrottledError"]
    assert refused
    assert all(s.status.status_code is StatusCode.ERROR for s in refused)
    assert telemetry.metric_total("resilient.throttle.rejections", policy="throttle-span") == len(
        refused
    )


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"k": 0.5}, "k"),
        ({"k": float("inf")}, "k"),
        ({"k": "2"}, "k"),
        ({"k": True}, "k"),
        ({"window": 0}, "window"),
        ({"window": -1.0}, "window"),
        ({"min_requests": -1}, "min_requests"),
        ({"min_requests": 2.5}, "min_requests"),
        ({"max_reject": 1.5}, "max_reject"),
        ({"max_reject": -0.1}, "max_reject"),
        ({"on": 42}, "on"),
        ({"on_result": 3}, "on_result"),
        ({"rng": 3}, "rng"),
        ({"clock": object()}, "clock"),
        ({"name": ""}, "name"),
        ({"telemetry": "yes"}, "telemetry"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AdaptiveThrottle(**kwargs)


def test_defaults_follow_the_design() -> None:
    throttle = AdaptiveThrottle()
    assert (throttle.k, throttle.window, throttle.min_requests, throttle.max_reject) == (
        2.0,
        120.0,
        20,
        0.9,
    )
    assert throttle.on is RejectedError
    assert throttle.name == "throttle"
