"""The breaker's windows: what they count, and what they hold in memory."""

from __future__ import annotations

import gc
import tracemalloc
from collections import deque
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from resilient import CircuitBreaker
from resilient.circuit_breaker._windows import CountWindow, TimeWindow

# One step fed to a count window: a success, a call (failed, slow), or a reset.
Step = tuple[str, bool, bool]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("success"), st.just(False), st.just(False)),
        st.tuples(st.just("add"), st.booleans(), st.booleans()),
        st.tuples(st.just("reset"), st.just(False), st.just(False)),
    ),
    max_size=300,
)


def allocated_by(build: Callable[[], object]) -> int:
    """Bytes still allocated by `build()` while its result is alive."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


@given(size=st.integers(min_value=1, max_value=13) | st.just(100), steps=steps)
def test_a_count_window_counts_exactly_what_a_deque_of_the_last_calls_holds(
    size: int, steps: list[Step]
) -> None:
    window = CountWindow(size)
    model: deque[tuple[bool, bool]] = deque(maxlen=size)
    for kind, failed, slow in steps:
        if kind == "success":
            window.add_success(0.0)
            model.append((False, False))
        elif kind == "add":
            window.add(0.0, failed, slow)
            model.append((failed, slow))
        else:
            window.reset()
            model.clear()
        expected = (len(model), sum(f for f, _ in model), sum(s for _, s in model))
        assert window.totals(0.0) == expected


def test_a_count_window_of_100k_calls_takes_a_few_bits_per_call() -> None:
    CountWindow(4)  # anything built once per process is built before measuring
    assert allocated_by(lambda: CountWindow(100_000)) <= 26 * 1024  # 2 bits a call: 25,000 B


def test_a_breaker_counting_100k_calls_stays_under_64_kib() -> None:
    CircuitBreaker(window_calls=4)
    assert allocated_by(lambda: CircuitBreaker(window_calls=100_000)) <= 64 * 1024


def test_a_busy_time_window_holds_no_more_memory_than_an_idle_one() -> None:
    def run(window: TimeWindow, start: float, per_bucket: int) -> None:
        # 40 buckets of 3 s; with 300 a bucket, counts go far past the small ints Python
        # caches, in every bucket and in the totals.
        for step in range(40):
            now = start + step * 3.0
            for _ in range(per_bucket):
                window.add_success(now)
                window.add(now, failed=True, slow=True)

    gc.collect()
    tracemalloc.start()
    try:
        window = TimeWindow(30.0)
        run(window, 0.0, per_bucket=1)
        idle = tracemalloc.get_traced_memory()[0]
        run(window, 120.0, per_bucket=300)
        busy = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Every count lives in one fixed array; only a scalar or two (the pending tally of
    # successes) may now be an int object rather than a cached small one.
    assert busy - idle <= 64
    assert window.totals(237.0) == (6000, 3000, 3000)
