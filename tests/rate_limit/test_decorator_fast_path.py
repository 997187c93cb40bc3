"""The decorator admits on a synchronous fast path; every other path goes through _run.
Either way a call takes exactly one permit."""

from __future__ import annotations

import anyio
import pytest

from resilient import RateLimitedError, RateLimiter
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


async def ok() -> str:
    return "ok"


async def test_decorated_calls_take_one_permit_each_then_are_rejected(clock: FakeClock) -> None:
    limiter = RateLimiter(3, clock=clock, telemetry=False)
    limited = limiter(ok)
    assert [await limited() for _ in range(3)] == ["ok"] * 3
    assert await limiter.remaining() == 0
    with pytest.raises(RateLimitedError) as caught:
        await limited()
    assert caught.value.retry_after == pytest.approx(1 / 3)
    clock.advance(1 / 3)
    assert await limited() == "ok"


async def test_recorded_calls_take_the_slow_path_and_one_permit_each(  # type: ignore[no-untyped-def]
    clock: FakeClock, telemetry
) -> None:
    limiter = RateLimiter(2, clock=clock, name="rl-decorated")
    limited = limiter(ok)
    assert await limited() == "ok"
    assert await limiter.remaining() == 1
    assert len(telemetry.spans("resilient.rate_limit")) == 1


async def test_a_waiting_decorated_call_runs_once_its_permit_is_due(clock: FakeClock) -> None:
    limiter = RateLimiter(1, per=2.0, max_wait=5.0, clock=clock, telemetry=False)
    limited = limiter(ok)
    assert await limited() == "ok"
    results: list[str] = []

    async def second() -> None:
        results.append(await limited())

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert results == []  # waiting in line for the permit due at t=2
        clock.advance(2.0)
    assert results == ["ok"]
