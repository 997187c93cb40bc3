"""Retry's least delay: a delay the callee asked for (an HTTP Retry-After) is a floor."""

from __future__ import annotations

import pytest

from resilient import Backoff, Retry, Timeout
from resilient.telemetry._core import QUIET
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

NO_JITTER = Backoff(initial=1.0, jitter="none")


def test_a_least_delay_longer_than_the_backoff_wins() -> None:
    retry = Retry(backoff=NO_JITTER, clock=FakeClock())
    call = retry._start_call(QUIET)
    assert retry._plan(call, None, 5.0) == 5.0


def test_a_least_delay_shorter_than_the_backoff_changes_nothing() -> None:
    retry = Retry(backoff=NO_JITTER, clock=FakeClock())
    call = retry._start_call(QUIET)
    assert retry._plan(call, None, 0.5) == 1.0


def test_a_least_delay_past_max_duration_gives_up_at_once() -> None:
    retry = Retry(backoff=NO_JITTER, max_duration=3.0, clock=FakeClock())
    call = retry._start_call(QUIET)
    error = ConnectionError("down")
    assert retry._plan(call, error, 5.0) is None
    assert retry.statistics.max_duration_give_ups == 1
    assert "max_duration" in error.__notes__[-1]


async def test_a_least_delay_past_the_deadline_gives_up_at_once() -> None:
    clock = FakeClock()
    retry = Retry(backoff=NO_JITTER, clock=clock)
    async with Timeout(4.0, clock=clock):
        call = retry._start_call(QUIET)
        assert retry._plan(call, None, 5.0) is None
    assert retry.statistics.deadline_give_ups == 1
    assert retry.budget is not None
