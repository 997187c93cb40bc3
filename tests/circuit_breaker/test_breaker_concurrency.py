"""One breaker shared by many tasks: half-open admits exactly the configured probes."""

from __future__ import annotations

from typing import NoReturn

import anyio
import pytest

from resilient import CircuitBreaker, CircuitOpenError
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

CALLERS = 1_000


async def boom() -> NoReturn:
    raise RuntimeError("down")


async def open_breaker(clock: FakeClock, half_open_calls: int) -> CircuitBreaker:
    breaker = CircuitBreaker(
        minimum_calls=1, break_duration=5.0, half_open_calls=half_open_calls, clock=clock
    )
    with pytest.raises(RuntimeError):
        await breaker.call(boom)
    assert breaker.state == "open"
    clock.advance(5.0)
    return breaker


async def storm(
    breaker: CircuitBreaker, release: anyio.Event, *, use_async_with: bool = False
) -> tuple[int, int, int]:
    """Start CALLERS callers at once; return (peak probes running, admitted, rejected)."""
    running = peak = admitted = rejected = 0

    async def probe() -> None:
        nonlocal running, peak, admitted
        admitted += 1
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    async def caller() -> None:
        nonlocal rejected
        try:
            if use_async_with:
                async with breaker:
                    await probe()
            else:
                await breaker.call(probe)
        except CircuitOpenError:
            rejected += 1

    async with anyio.create_task_group() as tg:
        for _ in range(CALLERS):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        assert breaker.state == "half_open"
        assert rejected == CALLERS - admitted  # everyone else was turned away at once
        release.set()
    return peak, admitted, rejected


async def test_half_open_admits_exactly_one_probe_among_a_thousand_callers(
    clock: FakeClock,
) -> None:
    breaker = await open_breaker(clock, half_open_calls=1)
    peak, admitted, rejected = await storm(breaker, anyio.Event())
    assert (peak, admitted, rejected) == (1, 1, CALLERS - 1)
    assert breaker.state == "closed"


@pytest.mark.parametrize("half_open_calls", [3, 10])
async def test_half_open_admits_exactly_n_probes_among_a_thousand_callers(
    clock: FakeClock, half_open_calls: int
) -> None:
    breaker = await open_breaker(clock, half_open_calls=half_open_calls)
    peak, admitted, rejected = await storm(breaker, anyio.Event())
    assert (peak, admitted, rejected) == (
        half_open_calls,
        half_open_calls,
        CALLERS - half_open_calls,
    )
    assert breaker.state == "closed"


async def test_half_open_admits_exactly_n_probes_through_async_with(clock: FakeClock) -> None:
    breaker = await open_breaker(clock, half_open_calls=2)
    peak, admitted, _ = await storm(breaker, anyio.Event(), use_async_with=True)
    assert (peak, admitted) == (2, 2)
    assert breaker.state == "closed"


async def test_closed_breaker_counts_every_concurrent_call_exactly_once(
    clock: FakeClock,
) -> None:
    breaker = CircuitBreaker(window_calls=CALLERS * 2, minimum_calls=CALLERS * 2, clock=clock)
    release = anyio.Event()

    async def wait_then_fail(index: int) -> None:
        await release.wait()
        if index % 2:
            raise RuntimeError("odd")

    async def caller(index: int) -> None:
        try:
            await breaker.call(wait_then_fail, index)
        except RuntimeError:
            pass

    async with anyio.create_task_group() as tg:
        for index in range(CALLERS):
            tg.start_soon(caller, index)
        await anyio.wait_all_tasks_blocked()
        release.set()
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures) == (CALLERS, CALLERS // 2)


async def test_probes_cancelled_in_a_storm_free_every_slot(clock: FakeClock) -> None:
    breaker = await open_breaker(clock, half_open_calls=5)
    async with anyio.create_task_group() as tg:
        for _ in range(CALLERS):
            tg.start_soon(_swallow_rejection, breaker)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert breaker.state == "half_open"
    # Every slot is free again, and there are still exactly five.
    peak, admitted, _ = await storm(breaker, anyio.Event())
    assert (peak, admitted) == (5, 5)
    assert breaker.state == "closed"


async def _swallow_rejection(breaker: CircuitBreaker) -> None:
    try:
        await breaker.call(anyio.sleep_forever)
    except CircuitOpenError:
        pass
