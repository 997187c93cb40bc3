"""AIMD and Gradient2: pure cores, checked as properties over random samples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient.load_shedding import AIMD, AdaptiveLimit, Gradient2

samples = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=30.0),  # rtt, seconds
        st.integers(min_value=0, max_value=500),  # in flight
        st.booleans(),  # dropped
    ),
    max_size=200,
)
bounds = st.integers(min_value=1, max_value=50).flatmap(
    lambda low: st.tuples(st.just(low), st.integers(min_value=low, max_value=low + 300))
)


def feed(limit: AdaptiveLimit, stream: list[tuple[float, int, bool]]) -> list[int]:
    return [limit.update(i * 0.01, rtt, n, d) for i, (rtt, n, d) in enumerate(stream)]


@given(bounds, samples, st.booleans())
def test_aimd_never_leaves_its_bounds(
    bound: tuple[int, int],
    stream: list,  # type: ignore[type-arg]
    per_round_trip: bool,
) -> None:
    low, high = bound
    aimd = AIMD(initial_limit=low, min_limit=low, max_limit=high, per_round_trip=per_round_trip)
    assert all(low <= limit <= high for limit in feed(aimd, stream))


@given(bounds, samples)
def test_gradient2_never_leaves_its_bounds(bound: tuple[int, int], stream: list) -> None:  # type: ignore[type-arg]
    low, high = bound
    gradient = Gradient2(initial_limit=high, min_limit=low, max_limit=high)
    assert all(low <= limit <= high for limit in feed(gradient, stream))


@given(st.integers(min_value=2, max_value=1000), st.floats(0.0, 4.9))
def test_aimd_backs_off_on_a_drop(start: int, rtt: float) -> None:
    aimd = AIMD(initial_limit=start, min_limit=1, max_limit=1000)
    assert aimd.update(0.0, rtt, start, True) == max(1, int(start * 0.9))
    assert aimd.limit < start


@given(st.integers(min_value=1, max_value=999), st.floats(5.01, 100.0))
def test_aimd_counts_a_call_slower_than_timeout_as_a_drop(start: int, rtt: float) -> None:
    aimd = AIMD(initial_limit=start, min_limit=1, max_limit=1000)
    assert aimd.update(0.0, rtt, start, False) == max(1, int(start * 0.9))


@given(st.integers(min_value=1, max_value=999), st.floats(0.0, 5.0), st.data())
def test_aimd_grows_by_one_when_healthy_and_stretched(
    start: int, rtt: float, data: st.DataObject
) -> None:
    in_flight = data.draw(st.integers(min_value=(start + 1) // 2, max_value=2000))
    aimd = AIMD(initial_limit=start, min_limit=1, max_limit=1000)
    assert aimd.update(0.0, rtt, in_flight, False) == start + 1


@given(st.integers(min_value=3, max_value=1000))
def test_aimd_holds_when_less_than_half_the_limit_is_used(start: int) -> None:
    aimd = AIMD(initial_limit=start, min_limit=1, max_limit=1000)
    assert aimd.update(0.0, 0.01, (start - 1) // 2, False) == start


@settings(max_examples=200)
@given(
    st.floats(min_value=0.001, max_value=1.0),  # the baseline round trip
    st.floats(min_value=1.6, max_value=100.0),  # how much slower it gets
    st.integers(min_value=20, max_value=400),
)
def test_gradient2_falls_when_latency_rises_over_its_baseline(
    baseline: float, factor: float, start: int
) -> None:
    gradient = Gradient2(initial_limit=start, min_limit=1, max_limit=400, queue_size=4)
    for i in range(10):
        gradient.update(i * 0.01, baseline, start, False)
    before = gradient.limit
    # The limit shrinks when rtt exceeds rtt_tolerance (1.5) times the baseline, by more
    # than the queue allowance of 4 can add back: at 1.6x or slower, from 20 up, it does.
    after = gradient.update(1.0, baseline * factor * 1.5, start, False)
    assert after < before or after == 1


@given(st.floats(min_value=0.001, max_value=1.0), st.integers(min_value=20, max_value=300))
def test_gradient2_grows_by_the_queue_allowance_while_latency_holds(
    baseline: float, start: int
) -> None:
    gradient = Gradient2(initial_limit=start, min_limit=1, max_limit=1000)
    limits = [gradient.update(i * 0.01, baseline, start * 2, False) for i in range(50)]
    assert limits[-1] > start
    assert limits == sorted(limits)


def test_gradient2_ignores_an_app_limited_sample_and_drops() -> None:
    gradient = Gradient2()
    assert gradient.update(0.0, 0.01, 5, True) == 20
    assert gradient.long_rtt == pytest.approx(0.01)


def test_defaults_are_netflix_concurrency_limits() -> None:
    aimd = AIMD()
    assert (aimd.limit, aimd.min_limit, aimd.max_limit) == (20, 20, 200)
    assert (aimd.backoff_ratio, aimd.timeout, aimd.per_round_trip) == (0.9, 5.0, False)
    gradient = Gradient2()
    assert (gradient.limit, gradient.min_limit, gradient.max_limit) == (20, 20, 200)
    assert (gradient.smoothing, gradient.queue_size, gradient.long_window) == (0.2, 4, 600)
    assert gradient.rtt_tolerance == 1.5


@pytest.mark.parametrize(
    ("factory", "kwargs", "field"),
    [
        (AIMD, {"min_limit": 0}, "min_limit"),
        (AIMD, {"min_limit": 10, "max_limit": 5}, "max_limit"),
        (AIMD, {"initial_limit": 5}, "initial_limit"),
        (AIMD, {"initial_limit": 500}, "initial_limit"),
        (AIMD, {"backoff_ratio": 0.4}, "backoff_ratio"),
        (AIMD, {"backoff_ratio": 1.0}, "backoff_ratio"),
        (AIMD, {"timeout": 0}, "timeout"),
        (AIMD, {"per_round_trip": 1}, "per_round_trip"),
        (Gradient2, {"smoothing": 0}, "smoothing"),
        (Gradient2, {"queue_size": -1}, "queue_size"),
        (Gradient2, {"long_window": 0}, "long_window"),
        (Gradient2, {"rtt_tolerance": 0.9}, "rtt_tolerance"),
    ],
)
def test_constructors_reject_bad_arguments(
    factory: type, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        factory(**kwargs)


def test_queue_size_may_be_a_function_of_the_limit() -> None:
    gradient = Gradient2(initial_limit=20, min_limit=1, queue_size=lambda limit: limit / 10)
    assert gradient.update(0.0, 0.01, 20, False) == 20  # 20*0.8 + (20 + 2)*0.2 = 20.4


# -- settling under sustained overload ---------------------------------------------------------

#: A service that runs 8 calls at once, 20 ms each (400 calls/s), offered more than that:
#: the limit is always full, and by Little's law a call's round trip is the limit over the
#: throughput once the limit passes 8 (the calls past 8 queue inside the service).
CAPACITY, SERVICE_TIME = 8, 0.020


def overloaded(limit: AdaptiveLimit, samples: int = 4000) -> list[int]:
    """The limits a saturated service's calls lead to, one call per 1/400 s."""
    seen = []
    for i in range(samples):
        current = limit.limit
        rtt = max(SERVICE_TIME, current * SERVICE_TIME / CAPACITY)
        seen.append(limit.update(i / 400, rtt, current, False))
    return seen


def unloaded(limit: Gradient2) -> Gradient2:
    """`limit` after a light start, as a service has: its long-term round trip is 20 ms."""
    for i in range(50):
        limit.update(i * 0.1, SERVICE_TIME, 2, False)
    return limit


def test_gradient2_settles_under_sustained_overload_instead_of_drifting() -> None:
    gradient = unloaded(Gradient2(min_limit=1, rtt_tolerance=1.0, queue_size=1))
    late = overloaded(gradient)[2000:]
    # limit = queue_size + rtt_tolerance * capacity = 9, and it stays there.
    assert set(late) <= {8, 9, 10}
    assert gradient.long_rtt == pytest.approx(SERVICE_TIME, rel=0.01)  # not taught the queue


def test_gradient2_with_the_defaults_settles_at_its_tolerance_and_queue() -> None:
    gradient = unloaded(Gradient2(min_limit=1))
    late = overloaded(gradient)[2000:]
    assert 13 <= min(late) <= max(late) <= 19  # 4 + 1.5 * 8 = 16


def test_gradient2_learns_a_slower_normal_while_the_service_is_not_stretched() -> None:
    gradient = Gradient2(min_limit=1)
    for i in range(20):
        gradient.update(i * 0.1, 0.010, 2, False)
    for i in range(2000):  # the service got slower for good, at light load
        gradient.update(2 + i * 0.1, 0.050, 2, False)
    assert gradient.long_rtt == pytest.approx(0.050, rel=0.05)


def test_gradient2_at_the_limit_learns_only_faster_round_trips() -> None:
    gradient = Gradient2(initial_limit=20, min_limit=1)
    for i in range(20):
        gradient.update(i * 0.1, 0.010, 2, False)
    baseline = gradient.long_rtt
    gradient.update(3.0, 0.040, gradient.limit, False)  # slower, at the limit: not learned
    assert gradient.long_rtt == baseline
    gradient.update(3.1, 0.005, gradient.limit, False)  # faster: learned
    assert gradient.long_rtt < baseline


def test_aimd_per_round_trip_grows_by_one_per_limit_of_healthy_calls() -> None:
    aimd = AIMD(initial_limit=10, min_limit=1, per_round_trip=True)
    limits = [aimd.update(i * 0.01, 0.005, 10, False) for i in range(30)]
    # 1/10 of a call per call at 10, 1/11 at 11: about ten calls per step.
    assert limits.index(11) in (9, 10)
    assert limits.index(12) in (20, 21)
    assert limits == sorted(limits)


def test_aimd_per_round_trip_backs_off_once_per_round_trip() -> None:
    aimd = AIMD(initial_limit=20, min_limit=1, per_round_trip=True)
    assert aimd.update(1.00, 0.10, 20, True) == 18
    # Calls admitted before that backoff (they began at 0.95 and 0.99) were already counted.
    assert aimd.update(1.01, 0.06, 20, True) == 18
    assert aimd.update(1.02, 0.03, 20, True) == 18
    # One admitted after it dropped too: the smaller limit is too large as well.
    assert aimd.update(1.20, 0.10, 18, True) == 16


def test_aimd_netflix_rule_backs_off_on_every_drop() -> None:
    aimd = AIMD(initial_limit=20, min_limit=1)
    assert [aimd.update(1.0 + i * 0.01, 0.1, 20, True) for i in range(3)] == [18, 16, 14]


def test_aimd_per_round_trip_settles_near_the_capacity_under_overload() -> None:
    # A drop is a round trip over 25 ms: with 20 ms calls, a limit past 10 (Little's law).
    aimd = AIMD(min_limit=1, timeout=0.025, per_round_trip=True)
    late = overloaded(aimd)[2000:]
    assert 8 <= min(late) <= max(late) <= 11
