"""resilient in a user's own test suite run by pytest-asyncio (not anyio's plugin), with the
fake clock: what docs/testing.md shows."""

from __future__ import annotations

import pytest

from resilient import CircuitBreaker, CircuitOpenError, Pipeline, Retry, Timeout
from resilient.testing import FakeClock


class Unavailable(Exception):
    pass


@pytest.mark.asyncio
async def test_a_flaky_call_is_retried_without_real_waiting() -> None:
    clock = FakeClock()
    policy = Pipeline(Timeout(30, clock=clock), Retry(attempts=4, clock=clock))
    attempts: list[float] = []

    async def fetch_once() -> str:
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise Unavailable
        return "ok"

    assert await policy.call(fetch_once) == "ok"
    assert len(attempts) == 2
    assert 0 <= attempts[1] - attempts[0] <= 0.1  # one full-jitter backoff of at most 0.1 s


@pytest.mark.asyncio
async def test_a_dependency_that_keeps_failing_opens_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        minimum_calls=2, failure_ratio=1.0, window_calls=2, break_duration=5, clock=clock
    )

    async def down() -> None:
        raise Unavailable

    for _ in range(2):
        with pytest.raises(Unavailable):
            await breaker.call(down)
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(down)
    assert caught.value.retry_after == 5
    clock.advance(5)
    assert breaker.state == "open"  # until the next caller becomes the probe
