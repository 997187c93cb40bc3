"""The pure GCRA arithmetic: decisions, remaining permits, refunds, and the rate bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient._gcra import decide, refund, remaining


def test_a_fresh_key_admits_a_full_burst_then_rejects() -> None:
    tat = None
    for left in (2, 1, 0):
        d = decide(tat, 0.0, emission_interval=0.5, burst=3, cost=1, max_wait=0.0)
        assert (d.allowed, d.wait, d.remaining) == (True, 0.0, left)
        tat = d.tat
    d = decide(tat, 0.0, emission_interval=0.5, burst=3, cost=1, max_wait=0.0)
    assert not d.allowed
    assert d.retry_after == 0.5
    assert d.tat == tat


def test_retry_after_is_exact_time_until_admission() -> None:
    d = decide(2.0, 0.2, emission_interval=0.5, burst=3, cost=2, max_wait=0.0)
    # max(2.0, 0.2) + 2 * 0.5 - 3 * 0.5 = 1.5: admitted from t = 1.5, i.e. in 1.3 s
    assert not d.allowed
    assert d.retry_after == pytest.approx(1.3)
    later = decide(2.0, 1.5, emission_interval=0.5, burst=3, cost=2, max_wait=0.0)
    assert later.allowed


def test_a_past_tat_is_the_same_as_no_state() -> None:
    fresh = decide(None, 10.0, emission_interval=1.0, burst=2, cost=1, max_wait=0.0)
    stale = decide(3.0, 10.0, emission_interval=1.0, burst=2, cost=1, max_wait=0.0)
    assert fresh == stale


def test_a_request_within_max_wait_is_admitted_with_a_wait_and_reserves() -> None:
    d = decide(1.0, 0.0, emission_interval=0.25, burst=4, cost=1, max_wait=0.3)
    assert (d.allowed, d.wait, d.tat) == (True, 0.25, 1.25)
    beyond = decide(d.tat, 0.0, emission_interval=0.25, burst=4, cost=1, max_wait=0.3)
    assert not beyond.allowed
    assert beyond.retry_after == 0.5


def test_float_rounding_never_rejects_a_request_that_is_due() -> None:
    tat = None
    for _ in range(10):  # ten times 0.1 is not exactly 1.0 in floats
        d = decide(tat, 0.0, emission_interval=0.1, burst=10, cost=1, max_wait=0.0)
        assert d.allowed
        tat = d.tat


def test_remaining_counts_whole_permits_and_never_goes_negative() -> None:
    assert remaining(None, 5.0, emission_interval=1.0, burst=3) == 3
    assert remaining(5.5, 5.0, emission_interval=1.0, burst=3) == 2
    assert remaining(6.0, 5.0, emission_interval=1.0, burst=3) == 2
    assert remaining(20.0, 5.0, emission_interval=1.0, burst=3) == 0


def test_refund_rolls_back_only_the_latest_reservation() -> None:
    assert refund(3.0, 3.0, 0.0, emission_interval=1.0, cost=2) == (True, 1.0)
    assert refund(3.0, 2.0, 0.0, emission_interval=1.0, cost=1) == (False, 3.0)
    assert refund(None, 2.0, 0.0, emission_interval=1.0, cost=1) == (False, None)


def test_refund_back_to_a_full_bucket_forgets_the_key() -> None:
    assert refund(1.0, 1.0, 0.5, emission_interval=1.0, cost=1) == (True, None)


# -- the rate bound -----------------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3.0, allow_nan=False),  # gap before, x T
        st.integers(min_value=1, max_value=20),  # cost (capped at burst)
        st.sampled_from([0.0, 0.5, 2.0, 10.0]),  # max_wait, x T
        st.one_of(st.none(), st.integers(min_value=0, max_value=50)),  # cancel one waiter
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=200.0),
    per=st.floats(min_value=0.1, max_value=10.0),
    burst=st.integers(min_value=1, max_value=20),
    script=events,
)
def test_never_admits_more_than_burst_plus_rate_times_t_in_any_interval(
    rate: float,
    per: float,
    burst: int,
    script: list[tuple[float, int, float, int | None]],
) -> None:
    interval = per / rate
    now = 0.0
    tat: float | None = None
    # Each granted request: [admission time, cost, receipt, cancelled]
    granted: list[list[float | bool]] = []
    for gap, cost, max_wait, cancel in script:
        now += gap * interval
        waiting = [g for g in granted if g[0] > now and not g[3]]
        if cancel is not None and waiting:
            victim = waiting[cancel % len(waiting)]
            receipt, victim_cost = float(victim[2]), int(victim[1])
            before = tat
            refunded, tat = refund(tat, receipt, now, emission_interval=interval, cost=victim_cost)
            # Only the latest reservation comes back; an older one is kept and expires.
            assert refunded == (receipt == before)
            victim[3] = True
        cost = min(cost, burst)
        d = decide(
            tat,
            now,
            emission_interval=interval,
            burst=burst,
            cost=cost,
            max_wait=max_wait * interval,
        )
        if d.allowed:
            tat = d.tat
            granted.append([now + d.wait, cost, d.tat, False])
    admitted = sorted((float(g[0]), int(g[1])) for g in granted if not g[3])
    for i, (start, _) in enumerate(admitted):
        total = 0
        for end, cost in admitted[i:]:
            total += cost
            assert total <= burst + (end - start) / interval + 1e-6
