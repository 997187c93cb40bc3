from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient._window import RollingCounts, check_window


def test_events_slide_out_after_the_window() -> None:
    window = RollingCounts(10.0, fields=2, buckets=10)
    window.add(0.5, 0)
    window.add(9.5, 1, 3)
    assert window.recent(9.9, 0) == 1
    assert window.recent(9.9, 1) == 3
    # At t=10 the first bucket [0, 1) left the window but is still the edge bucket.
    assert window.recent(10.0, 0) == 0
    assert window.with_edge(10.0, 0) == 1
    assert window.with_edge(11.0, 0) == 0
    assert window.recent(30.0, 1) == 0


def test_a_long_gap_clears_everything() -> None:
    window = RollingCounts(1.0, fields=1, buckets=4)
    window.add(0.0, 0, 5)
    assert window.with_edge(100.0, 0) == 0
    window.add(100.0, 0)
    assert window.recent(100.0, 0) == 1


def test_reset_forgets_every_event() -> None:
    window = RollingCounts(1.0, fields=1)
    window.add(0.1, 0)
    window.reset()
    assert window.with_edge(0.1, 0) == 0


@pytest.mark.parametrize(("window", "buckets"), [(0, 10), (-1, 10), (1, 0)])
def test_bad_configuration_is_rejected(window: float, buckets: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        RollingCounts(window, fields=1, buckets=buckets)


@pytest.mark.parametrize("window", [1e-308, 0.000999])
def test_a_window_shorter_than_a_millisecond_is_rejected(window: float) -> None:
    with pytest.raises(ValueError, match=r"^window must be at least 0.001 seconds \(1 ms\), got"):
        RollingCounts(window, fields=1)


def test_a_millisecond_window_counts_at_any_time() -> None:
    window = RollingCounts(0.001, fields=1)
    window.add(1e6, 0)
    assert window.recent(1e6, 0) == 1
    assert window.recent(1e6 + 0.002, 0) == 0


def test_check_window_names_the_field_it_is_given() -> None:
    assert check_window("window", 0.001) == 0.001
    with pytest.raises(ValueError, match=r"^budget_window must be at least"):
        check_window("budget_window", 1e-308)


@given(
    times=st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=200),
    window=st.sampled_from([1.0, 2.5, 10.0]),
    buckets=st.integers(min_value=1, max_value=12),
)
def test_recent_never_overcounts_and_with_edge_never_undercounts(
    times: list[float], window: float, buckets: int
) -> None:
    counts = RollingCounts(window, fields=1, buckets=buckets)
    seen: list[float] = []
    for now in sorted(times):
        counts.add(now, 0)
        seen.append(now)
        exact = sum(1 for t in seen if now - window < t <= now)
        assert counts.recent(now, 0) <= exact <= counts.with_edge(now, 0)


@given(
    events=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=100, allow_nan=False),
            st.sets(st.integers(min_value=0, max_value=2), min_size=1).map(sorted),
        ),
        max_size=100,
    ),
    buckets=st.integers(min_value=1, max_value=12),
)
def test_add_each_and_totals_agree_with_one_add_and_one_recent_per_field(
    events: list[tuple[float, list[int]]], buckets: int
) -> None:
    together = RollingCounts(10.0, fields=3, buckets=buckets)
    apart = RollingCounts(10.0, fields=3, buckets=buckets)
    for now, fields in sorted(events):
        together.add_each(now, tuple(fields))
        for field in fields:
            apart.add(now, field)
        assert together.totals(now) == tuple(apart.recent(now, f) for f in range(3))
        assert [together.with_edge(now, f) for f in range(3)] == [
            apart.with_edge(now, f) for f in range(3)
        ]


def test_every_field_slides_out_in_its_own_bucket() -> None:
    window = RollingCounts(3.0, fields=3, buckets=3, tallied=2)
    window.add(0.5, 0)
    window.add(1.5, 1, 2)
    window.tally(2.5)
    window.tally(2.6)
    assert window.totals(2.9) == (1, 2, 2)
    assert window.totals(3.0) == (0, 2, 2)
    assert window.with_edge(3.0, 0) == 1
    assert window.totals(4.0) == (0, 0, 2)
    assert window.totals(5.0) == (0, 0, 0)
    assert window.with_edge(5.0, 2) == 2
