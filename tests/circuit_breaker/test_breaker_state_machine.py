"""The pure state machine and the windows, without an event loop: time is a number passed in."""

from __future__ import annotations

import pytest

from resilient.circuit_breaker._state import REJECTED, BreakerCore, CircuitState
from resilient.circuit_breaker._windows import CountWindow, TimeWindow

Transition = tuple[CircuitState, CircuitState, float]


def make_core(
    transitions: list[Transition] | None = None, *, window_calls: int = 10, **options: float
) -> BreakerCore:
    settings: dict[str, float] = {"minimum_calls": 4, "failure_ratio": 0.5, **options}
    return BreakerCore(
        CountWindow(window_calls),
        minimum_calls=int(settings.pop("minimum_calls")),
        half_open_calls=int(settings.pop("half_open_calls", 1)),
        on_transition=None if transitions is None else lambda *t: transitions.append(t),
        **settings,
    )


def fail(core: BreakerCore, now: float = 0.0) -> None:
    core.record(core.admit(now), now, failed=True, slow=False)


def succeed(core: BreakerCore, now: float = 0.0) -> None:
    core.record_success(core.admit(now), now)


def trip(core: BreakerCore, now: float = 0.0) -> None:
    while core.state is CircuitState.CLOSED:
        fail(core, now)


# -- windows ---------------------------------------------------------------------------


def test_count_window_keeps_only_the_last_n_outcomes() -> None:
    window = CountWindow(3)
    window.add(0.0, failed=True, slow=True)
    window.add(0.0, failed=True, slow=False)
    window.add_success(0.0)
    assert window.totals(0.0) == (3, 2, 1)
    window.add_success(0.0)  # evicts the failed, slow one
    assert window.totals(0.0) == (3, 1, 0)
    window.add_success(0.0)
    window.add_success(0.0)
    assert window.totals(0.0) == (3, 0, 0)


def test_count_window_ignores_time() -> None:
    window = CountWindow(2)
    window.add(0.0, failed=True, slow=False)
    assert window.totals(1e9) == (1, 1, 0)


def test_count_window_reset_forgets_everything() -> None:
    window = CountWindow(2)
    window.add(0.0, failed=True, slow=True)
    window.reset()
    assert window.totals(0.0) == (0, 0, 0)
    window.add_success(0.0)
    window.add_success(0.0)
    window.add_success(0.0)
    assert window.totals(0.0) == (2, 0, 0)


def test_time_window_counts_successes_failures_and_slow_calls() -> None:
    window = TimeWindow(10.0)
    window.add_success(0.1)
    window.add_success(0.2)
    window.add(0.3, failed=True, slow=True)
    window.add(0.4, failed=False, slow=True)
    window.add_success(0.5)
    assert window.totals(0.6) == (5, 1, 2)


def test_time_window_old_buckets_slide_out() -> None:
    window = TimeWindow(10.0)  # ten buckets of one second
    window.add(0.5, failed=True, slow=False)
    window.add_success(0.6)
    window.add_success(5.5)
    window.add(5.6, failed=True, slow=False)
    assert window.totals(9.0) == (4, 2, 0)
    assert window.totals(12.0) == (2, 1, 0)  # the first second has left the window
    assert window.totals(17.0) == (0, 0, 0)


def test_time_window_successes_across_buckets_land_in_their_own_buckets() -> None:
    window = TimeWindow(10.0)
    for t in (0.1, 0.2, 1.1, 1.2, 1.3, 2.5):
        window.add_success(t)
    assert window.totals(2.6) == (6, 0, 0)
    assert window.totals(10.5) == (4, 0, 0)  # bucket [0, 1) is gone
    assert window.totals(11.5) == (1, 0, 0)  # so is [1, 2)


def test_time_window_reset_drops_pending_successes() -> None:
    window = TimeWindow(10.0)
    window.add_success(0.1)
    window.reset()
    window.add_success(0.2)
    assert window.totals(0.3) == (1, 0, 0)


# -- closed -> open ---------------------------------------------------------------------


def test_opens_when_the_failure_ratio_is_reached() -> None:
    transitions: list[Transition] = []
    core = make_core(transitions)
    succeed(core)
    succeed(core)
    fail(core)
    assert core.state is CircuitState.CLOSED
    fail(core, now=1.0)  # 2 of 4 failed: 0.5 >= 0.5
    assert core.state is CircuitState.OPEN
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN, 1.0)]


def test_does_not_open_before_minimum_calls() -> None:
    core = make_core(minimum_calls=5)
    for _ in range(4):
        fail(core)
    assert core.state is CircuitState.CLOSED
    fail(core)
    assert core.state is CircuitState.OPEN


def test_does_not_open_below_the_failure_ratio() -> None:
    core = make_core(failure_ratio=0.6)
    for _ in range(3):
        succeed(core)
        fail(core)
    assert core.state is CircuitState.CLOSED


def test_opens_on_the_slow_call_ratio_even_when_every_call_succeeds() -> None:
    core = make_core(slow_call_ratio=0.75)
    core.record(core.admit(0.0), 0.0, failed=False, slow=False)
    for _ in range(2):
        core.record(core.admit(0.0), 0.0, failed=False, slow=True)
    assert core.state is CircuitState.CLOSED
    core.record(core.admit(0.0), 0.0, failed=False, slow=True)  # 3 of 4 slow
    assert core.state is CircuitState.OPEN


def test_a_success_never_opens_the_breaker() -> None:
    core = make_core(minimum_calls=2, failure_ratio=0.5)
    fail(core, now=0.0)
    assert core.state is CircuitState.CLOSED  # 1 call < minimum
    succeed(core)  # 1 of 2 failed, but a success does not trip
    assert core.state is CircuitState.CLOSED


# -- open -> half-open -> closed / open --------------------------------------------------


def test_open_rejects_with_the_time_left_in_the_break() -> None:
    core = make_core(break_duration=5.0)
    trip(core, now=10.0)
    assert core.admit(12.0) == REJECTED
    assert core.retry_after(12.0) == pytest.approx(3.0)


def test_first_caller_after_the_break_moves_to_half_open_and_is_the_probe() -> None:
    transitions: list[Transition] = []
    core = make_core(transitions, break_duration=5.0)
    trip(core)
    assert core.admit(5.0) != REJECTED
    assert core.state is CircuitState.HALF_OPEN
    assert transitions[-1] == (CircuitState.OPEN, CircuitState.HALF_OPEN, 5.0)
    assert core.admit(5.0) == REJECTED
    assert core.retry_after(5.0) is None


def test_half_open_closes_after_all_probes_succeed_and_clears_the_window() -> None:
    core = make_core(half_open_calls=3)
    trip(core)
    probes = [core.admit(5.0) for _ in range(3)]
    assert REJECTED not in probes
    assert core.admit(5.0) == REJECTED
    core.record_success(probes[0], 5.1)
    core.record_success(probes[1], 5.2)
    assert core.state is CircuitState.HALF_OPEN
    core.record(probes[2], 5.3, failed=False, slow=False)
    assert core.state is CircuitState.CLOSED
    assert core.totals(5.3) == (0, 0, 0)


def test_failed_probe_reopens_with_the_break_doubled_up_to_the_max() -> None:
    core = make_core(break_duration=5.0, max_break_duration=18.0)
    trip(core, now=0.0)
    now = 0.0
    breaks = []
    for _ in range(4):
        now = core.open_until
        fail(core, now)  # the probe fails
        breaks.append(core.open_until - now)
    assert breaks == [10.0, 18.0, 18.0, 18.0]


def test_slow_probe_reopens() -> None:
    core = make_core()
    trip(core)
    core.record(core.admit(5.0), 5.0, failed=False, slow=True)
    assert core.state is CircuitState.OPEN


def test_closing_resets_the_break_duration() -> None:
    core = make_core(break_duration=5.0)
    trip(core, now=0.0)
    fail(core, 5.0)  # break 10 s
    succeed(core, 15.0)  # closes
    assert core.state is CircuitState.CLOSED
    trip(core, now=20.0)
    assert core.open_until == 25.0


def test_released_probe_frees_its_slot() -> None:
    core = make_core()
    trip(core)
    probe = core.admit(5.0)
    assert core.admit(5.0) == REJECTED
    core.release(probe)
    assert core.state is CircuitState.HALF_OPEN
    assert core.admit(5.0) != REJECTED


def test_late_outcome_from_an_earlier_state_is_ignored() -> None:
    core = make_core()
    early = core.admit(0.0)  # admitted while closed
    trip(core)
    probe = core.admit(5.0)
    core.record_success(early, 5.1)  # a closed-state call finishing late is not a probe
    assert core.state is CircuitState.HALF_OPEN
    core.release(early)  # nor does releasing it free a probe slot
    assert core.admit(5.1) == REJECTED
    core.record_success(probe, 5.2)
    assert core.state is CircuitState.CLOSED


# -- manual control ---------------------------------------------------------------------


def test_forced_open_rejects_until_reset() -> None:
    transitions: list[Transition] = []
    core = make_core(transitions)
    core.force_open(1.0)
    assert core.admit(1e9) == REJECTED
    assert core.retry_after(1.0) is None
    core.reset(2.0)
    assert core.admit(2.0) != REJECTED
    assert transitions == [
        (CircuitState.CLOSED, CircuitState.FORCED_OPEN, 1.0),
        (CircuitState.FORCED_OPEN, CircuitState.CLOSED, 2.0),
    ]


def test_disabled_admits_everything_and_counts_nothing() -> None:
    core = make_core()
    core.disable(0.0)
    for _ in range(50):
        fail(core)
    assert core.state is CircuitState.DISABLED
    assert core.totals(0.0) == (0, 0, 0)


def test_reset_closes_and_clears_the_window() -> None:
    transitions: list[Transition] = []
    core = make_core(transitions)
    fail(core)
    core.reset(0.0)
    assert core.totals(0.0) == (0, 0, 0)
    assert transitions == []  # closed -> closed is not a transition
    trip(core)
    core.reset(1.0)
    assert core.state is CircuitState.CLOSED
    assert transitions[-1] == (CircuitState.OPEN, CircuitState.CLOSED, 1.0)


def test_transition_listener_may_change_the_state_again() -> None:
    core: BreakerCore

    def force_open_on_half_open(old: CircuitState, new: CircuitState, now: float) -> None:
        if new is CircuitState.HALF_OPEN:
            core.force_open(now)

    core = BreakerCore(CountWindow(4), minimum_calls=1, on_transition=force_open_on_half_open)
    fail(core)
    assert core.admit(5.0) == REJECTED
    assert core.state is CircuitState.FORCED_OPEN


def test_state_compares_equal_to_its_string() -> None:
    assert CircuitState.HALF_OPEN == "half_open"
    assert {s.value for s in CircuitState} == {
        "closed",
        "open",
        "half_open",
        "forced_open",
        "disabled",
    }


def test_a_transition_is_reported_once_the_decision_that_made_it_is_complete() -> None:
    # The listener of the move to half-open runs after the probe slot was handed out: what
    # it sees (and what it asks of the core) is the state the decision left behind.
    core: BreakerCore
    seen: list[tuple[CircuitState, int]] = []

    def look(old: CircuitState, new: CircuitState, now: float) -> None:
        if new is CircuitState.HALF_OPEN:
            seen.append((core.state, core.admit(now)))

    core = BreakerCore(CountWindow(4), minimum_calls=1, break_duration=5.0, on_transition=look)
    fail(core)
    probe = core.admit(5.0)
    assert probe != REJECTED
    assert seen == [(CircuitState.HALF_OPEN, REJECTED)]  # the one probe slot was taken


def test_a_probe_whose_state_a_listener_left_is_refused() -> None:
    core: BreakerCore

    def reset_on_half_open(old: CircuitState, new: CircuitState, now: float) -> None:
        if new is CircuitState.HALF_OPEN:
            core.reset(now)

    core = BreakerCore(CountWindow(4), minimum_calls=1, on_transition=reset_on_half_open)
    fail(core)
    assert core.admit(5.0) == REJECTED
    assert core.state is CircuitState.CLOSED
    assert core.admit(5.0) == core.epoch
