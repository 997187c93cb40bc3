"""The availability guard of a shared store: down after failures in a row, one probe at a
time after a cool-down that doubles, up again on the first answer. Pure bookkeeping, on a
fake clock."""

from __future__ import annotations

from resilient.storage._availability import (
    COOL_DOWN,
    FAILURES_TO_OPEN,
    MAX_COOL_DOWN,
    Availability,
)
from resilient.telemetry import Event, subscribe
from resilient.telemetry._core import PolicyTelemetry
from resilient.testing import FakeClock


class Store:
    """What `subscribe(policy=...)` needs: a `_telemetry`."""

    def __init__(self) -> None:
        self._telemetry = PolicyTelemetry("storage", "test-store")


def make() -> tuple[Availability, FakeClock, list[Event]]:
    clock = FakeClock(autojump=False)
    store = Store()
    events: list[Event] = []
    subscribe(events.append, policy=store)
    return Availability(store._telemetry, now=clock.now), clock, events


def fail(guard: Availability, times: int = 1, *, probe: bool = False) -> None:
    for _ in range(times):
        guard.failed(ConnectionError("refused"), probe=probe)


def test_it_goes_down_after_failures_in_a_row_only() -> None:
    guard, _, events = make()
    fail(guard, FAILURES_TO_OPEN - 1)
    guard.succeeded()
    fail(guard, FAILURES_TO_OPEN - 1)
    assert guard.retry_at is None
    fail(guard)
    assert guard.retry_at == COOL_DOWN
    assert [(e.name, dict(e.attributes)) for e in events] == [
        ("resilient.storage.down", {"error.type": "ConnectionError"})
    ]


def test_while_down_one_caller_probes_after_the_cool_down() -> None:
    guard, clock, _ = make()
    fail(guard, FAILURES_TO_OPEN)
    assert not guard.may_probe()
    clock.advance(COOL_DOWN)
    assert guard.may_probe()
    assert not guard.may_probe()  # one probe at a time
    fail(guard)  # a call that was in flight before: nothing changes
    assert guard.probing


def test_each_failed_probe_doubles_the_cool_down_up_to_its_cap() -> None:
    guard, clock, _ = make()
    fail(guard, FAILURES_TO_OPEN)
    waits = []
    for _ in range(6):
        wait = (guard.retry_at or 0.0) - clock.now()
        waits.append(wait)
        clock.advance(wait)
        assert guard.may_probe()
        fail(guard, probe=True)
    assert waits == [COOL_DOWN, 2 * COOL_DOWN, 4 * COOL_DOWN] + [MAX_COOL_DOWN] * 3


def test_an_answer_brings_it_back_up_and_resets_the_cool_down() -> None:
    guard, clock, events = make()
    fail(guard, FAILURES_TO_OPEN)
    clock.advance(COOL_DOWN)
    assert guard.may_probe()
    fail(guard, probe=True)
    clock.advance(2 * COOL_DOWN)
    assert guard.may_probe()
    guard.succeeded()
    assert (guard.retry_at, guard.probing, guard.failures) == (None, False, 0)
    assert [e.name for e in events] == ["resilient.storage.down", "resilient.storage.up"]
    assert events[-1].attributes["resilient.storage.down_duration"] == 3 * COOL_DOWN
    fail(guard, FAILURES_TO_OPEN)
    assert guard.retry_at == clock.now() + COOL_DOWN


def test_a_probe_whose_caller_is_cancelled_frees_the_slot() -> None:
    guard, clock, _ = make()
    fail(guard, FAILURES_TO_OPEN)
    clock.advance(COOL_DOWN)
    assert guard.may_probe()
    guard.abandoned(probe=True)
    assert guard.may_probe()
