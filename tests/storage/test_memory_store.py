"""MemoryStore specifics: bounded memory, eviction, the synchronous fast path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient._gcra import decide
from resilient.storage import MemoryStore
from resilient.testing import FakeClock

T = 0.1
BURST = 10
CAPACITY = BURST * T


def test_a_million_one_shot_keys_do_not_grow_memory_without_bound() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    peak = 0
    for i in range(1_000_000):
        assert store.acquire_nowait(f"client-{i}", T, CAPACITY) == 0.0
        clock.advance(0.001)  # each key's bucket is full again 0.1 s later
        peak = max(peak, len(store))
    # ~100 keys are live at any moment; sweeps keep the table within a small multiple.
    assert peak <= 2100
    assert len(store) <= 2100


def test_sweeping_expired_keys_loses_no_state() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for _ in range(BURST):
        store.acquire_nowait("busy", T, CAPACITY)
    store.acquire_nowait("idle", T, CAPACITY)
    clock.advance(0.5)
    for i in range(5000):  # enough new keys to trigger sweeps
        store.acquire_nowait(f"k{i}", T, 100.0)
    # "idle" was full again and may be gone; "busy" still has 0.5 s of debt and is kept.
    assert "busy" in store._tats
    assert store.acquire_nowait("busy", 6 * T, CAPACITY) > 0  # only 5 permits back
    assert store.acquire_nowait("busy", 5 * T, CAPACITY) == 0.0


def test_past_max_keys_the_oldest_inserted_key_is_forgotten_first() -> None:
    clock = FakeClock()
    store = MemoryStore(max_keys=100, clock=clock)
    for _ in range(BURST):
        store.acquire_nowait("first", T, CAPACITY)
    assert store.acquire_nowait("first", T, CAPACITY) > 0
    for i in range(150):  # all live: none expires while the clock stands still
        store.acquire_nowait(f"k{i}", T, CAPACITY)
        assert len(store) <= 100
    assert "first" not in store._tats
    assert "k149" in store._tats
    assert store.acquire_nowait("first", T, CAPACITY) == 0.0  # forgotten: a full bucket


def test_clear_forgets_every_key() -> None:
    store = MemoryStore(clock=FakeClock())
    store.acquire_nowait("a", T, CAPACITY)
    store.clear()
    assert len(store) == 0


@pytest.mark.parametrize("max_keys", [0, -1, 1.5, "10", None, True])
def test_bad_max_keys_raises_value_error_naming_the_field(max_keys: object) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryStore(max_keys=max_keys)  # type: ignore[arg-type]


def test_repr_shows_the_bound_and_the_size() -> None:
    store = MemoryStore(max_keys=5, clock=FakeClock())
    store.acquire_nowait("a", T, CAPACITY)
    assert repr(store) == "MemoryStore(max_keys=5, keys=1)"


@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=0.5, allow_nan=False),
            st.integers(min_value=1, max_value=BURST),
        ),
        max_size=60,
    )
)
def test_the_fast_path_decides_exactly_like_the_reference(
    steps: list[tuple[float, int]],
) -> None:
    clock = FakeClock(start=50.0)
    store = MemoryStore(clock=clock)
    tat: float | None = None
    for gap, cost in steps:
        clock.advance(gap)
        expected = decide(
            tat, clock.now(), emission_interval=T, burst=BURST, cost=cost, max_wait=0.0
        )
        got = store.acquire_nowait("k", cost * T, CAPACITY)
        if expected.allowed:
            assert got == 0.0
            tat = expected.tat
        else:
            assert got == expected.retry_after
        assert store._tats.get("k", None) in (tat, None)
