from __future__ import annotations

import math

import pytest

from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


def test_starts_at_the_given_time_and_advances() -> None:
    clock = FakeClock(start=100.0)
    clock.advance(2.5)
    assert clock.now() == 102.5


async def test_sleep_moves_time_at_once() -> None:
    clock = FakeClock()
    await clock.sleep(3)
    await clock.sleep(0)
    assert clock.now() == 3


def test_timers_fire_in_order_and_at_their_time() -> None:
    clock = FakeClock()
    fired: list[tuple[str, float]] = []
    clock.call_at(2, lambda: fired.append(("b", clock.now())))
    clock.call_at(1, lambda: fired.append(("a", clock.now())))
    clock.advance(1.5)
    assert fired == [("a", 1.0)]
    clock.advance(1)
    assert fired == [("a", 1.0), ("b", 2.0)]
    assert clock.now() == 2.5


def test_a_cancelled_timer_does_not_fire() -> None:
    clock = FakeClock()
    fired: list[int] = []
    clock.call_at(1, lambda: fired.append(1)).cancel()
    clock.advance(5)
    assert fired == []


def test_a_timer_already_due_fires_immediately() -> None:
    clock = FakeClock(start=5)
    fired: list[int] = []
    clock.call_at(4, lambda: fired.append(1))
    assert fired == [1]


@pytest.mark.parametrize("seconds", [-1, math.nan])
def test_time_never_goes_backwards(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        FakeClock().advance(seconds)


@pytest.mark.parametrize("start", [math.inf, math.nan])
def test_start_must_be_finite(start: float) -> None:
    with pytest.raises(ValueError, match="start must be a finite number"):
        FakeClock(start)
