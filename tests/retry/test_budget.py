"""RetryBudget: retries stay within a ratio of calls plus a floor, over a sliding window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient.retry import RetryBudget


def test_defaults_are_twenty_percent_plus_ten_per_second_over_ten_seconds() -> None:
    budget = RetryBudget()
    assert (budget.ratio, budget.min_per_second, budget.window) == (0.2, 10.0, 10.0)


def test_the_floor_admits_min_per_second_times_window_retries_without_calls() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=1.0, window=5.0)
    assert [budget.try_spend(now=1.0) for _ in range(6)] == [True] * 5 + [False]


def test_calls_earn_retries_at_the_ratio() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window=10.0)
    for _ in range(50):
        budget.record_call(now=0.5)
    assert [budget.try_spend(now=0.5) for _ in range(11)] == [True] * 10 + [False]


def test_calls_older_than_the_window_no_longer_earn_retries() -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, window=10.0)
    for _ in range(5):
        budget.record_call(now=0.0)
    assert not RetryBudget(ratio=1.0, min_per_second=0.0).try_spend(now=0.0)
    assert budget.try_spend(now=9.0)
    assert not budget.try_spend(now=10.5)


def test_spent_retries_count_until_they_leave_the_window() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)
    assert budget.try_spend(now=0.0)
    assert not budget.try_spend(now=9.9)
    # The spend slid out of the window and out of the edge bucket.
    assert budget.try_spend(now=11.0)


def test_a_refund_in_the_same_bucket_gives_the_retry_back() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)
    assert budget.try_spend(now=3.0)
    budget.refund(spent_at=3.0, now=3.5)
    assert budget.try_spend(now=3.5)


def test_a_late_refund_keeps_the_retry_counted_so_the_budget_never_overspends() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)
    assert budget.try_spend(now=3.0)
    budget.refund(spent_at=3.0, now=4.5)
    assert not budget.try_spend(now=4.5)


def test_reset_forgets_calls_and_retries() -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0.0)
    budget.record_call(now=1.0)
    budget.reset()
    assert not budget.try_spend(now=1.0)


# Times are multiples of 1/16 s and windows are such that bucket edges are exact binary
# fractions: the guarantee is then checked exactly, with no rounding at the boundaries.
# Small floors and bursts of zero-length steps make the edges of the window matter.
operations = st.lists(
    st.tuples(
        st.one_of(st.just(0), st.integers(0, 48), st.integers(0, 200)),
        st.sampled_from(["call", "call", "spend", "spend", "refund"]),
    ),
    max_size=200,
)


@settings(max_examples=1_000, deadline=None)
@given(
    ratio=st.one_of(st.sampled_from([0.0, 0.1, 0.2, 0.5]), st.floats(0.0, 3.0)),
    min_per_second=st.one_of(st.sampled_from([0.0, 0.1, 0.2, 0.5]), st.floats(0.0, 2.0)),
    window=st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0]),
    ops=operations,
)
def test_admitted_retries_never_exceed_the_ratio_of_calls_plus_the_floor(
    ratio: float, min_per_second: float, window: float, ops: list[tuple[int, str]]
) -> None:
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, window=window)
    calls: list[float] = []
    retries: list[float] = []  # admitted and not refunded
    now = 0.0
    for step, op in ops:
        now += step / 16
        if op == "call":
            budget.record_call(now)
            calls.append(now)
        elif op == "refund":
            if retries:
                budget.refund(spent_at=retries.pop(), now=now)
        elif budget.try_spend(now):
            retries.append(now)
            in_window = sum(1 for t in retries if now - window < t <= now)
            earned = sum(1 for t in calls if now - window < t <= now)
            assert in_window <= ratio * earned + min_per_second * window


@settings(max_examples=100, deadline=None)
@given(calls=st.integers(0, 200), window=st.sampled_from([1.0, 10.0]))
def test_a_steady_stream_of_calls_earns_at_least_the_ratio_of_the_strict_window(
    calls: int, window: float
) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=window)
    for _ in range(calls):
        budget.record_call(now=window)
    admitted = 0
    while budget.try_spend(now=window):
        admitted += 1
    assert admitted == calls // 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": float("nan")}, "ratio"),
        ({"ratio": "0.2"}, "ratio"),
        ({"ratio": 10**400}, "ratio"),
        ({"min_per_second": -1}, "min_per_second"),
        ({"min_per_second": float("inf")}, "min_per_second"),
        ({"min_per_second": 10**400}, "min_per_second"),
        ({"window": 0}, "window"),
        ({"window": -10}, "window"),
        ({"window": None}, "window"),
        ({"window": 1e-308}, "window"),
        ({"window": 0.000999}, "window"),
        ({"window": 10**400}, "window"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


def test_a_millisecond_window_is_the_shortest_and_works() -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, window=0.001)
    budget.record_call(now=1e6)
    assert budget.try_spend(now=1e6)
    assert not budget.try_spend(now=1e6)
