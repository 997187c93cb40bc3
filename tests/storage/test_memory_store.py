"""MemoryStore specifics: bounded memory, eviction, the synchronous fast path."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient._gcra import decide, refund, remaining
from resilient.storage import MemoryStore, memory
from resilient.testing import FakeClock

T = 0.1
BURST = 10
CAPACITY = BURST * T
SHARD_KEYS = memory._SHARD_KEYS

R = TypeVar("R")


def run(coroutine: Coroutine[Any, Any, R]) -> R:
    """The result of a store coroutine, which decides without ever suspending."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # StopIteration.value is Any
    raise AssertionError("the store suspended")


def stored(store: MemoryStore, key: str) -> float | None:
    """The state the store holds for `key`, if any."""
    return store._shard(key).get(key)


def shards(store: MemoryStore) -> list[dict[str, float]]:
    """Each shard of the table once, in slot order."""
    return list({id(shard): shard for shard in store._shards}.values())


@contextmanager
def shards_of(size: int) -> Iterator[None]:
    """Tiny shards, so that a few keys exercise splits and sweeps over several shards."""
    with (
        mock.patch.object(memory, "_SHARD_KEYS", size),
        mock.patch.object(memory, "_MIN_SWEEP", 2),
    ):
        yield


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
    assert stored(store, "busy") is not None
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
    assert stored(store, "first") is None
    assert stored(store, "k149") is not None
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
        assert stored(store, "k") in (tat, None)


# -- bounded work per call ------------------------------------------------------------------


def test_a_large_table_is_split_into_shards_of_bounded_size() -> None:
    store = MemoryStore(clock=FakeClock())
    for i in range(20 * SHARD_KEYS):
        store.acquire_nowait(f"client-{i}", T, CAPACITY)  # all live: the clock stands still
    assert len(store) == 20 * SHARD_KEYS
    assert sum(len(shard) for shard in shards(store)) == len(store)
    assert len(shards(store)) >= 20
    assert max(len(shard) for shard in shards(store)) <= SHARD_KEYS
    assert all(stored(store, f"client-{i}") is not None for i in range(20 * SHARD_KEYS))


def test_no_call_rebuilds_more_than_two_shards_whatever_the_table_size() -> None:
    # Live keys past max_keys, then keys that expire: every call that evicts, sweeps or
    # splits replaces at most the shard it sweeps and the one it splits, each of bounded
    # size; the rest of the table is not touched (the same dict objects stay in place).
    clock = FakeClock()
    store = MemoryStore(max_keys=10 * SHARD_KEYS, clock=clock)
    directory = store._shards
    rebuilt_calls = 0
    for i in range(40 * SHARD_KEYS):
        if i >= 20 * SHARD_KEYS:
            clock.advance(0.001)  # from here on, each key's bucket is full again 0.1 s later
        before = {id(shard): len(shard) for shard in shards(store)}
        store.acquire_nowait(f"client-{i}", T, CAPACITY)
        replaced = before.keys() - {id(shard) for shard in shards(store)}
        assert len(replaced) <= 2
        assert all(before[shard] <= SHARD_KEYS + 1 for shard in replaced)
        assert len(store) <= store.max_keys
        rebuilt_calls += bool(replaced)
    assert store._shards is directory  # the table itself is never rebuilt
    assert rebuilt_calls > 100  # the work was there, spread over many calls


def test_a_full_table_evicts_the_oldest_keys_of_one_shard_on_insert() -> None:
    store = MemoryStore(max_keys=8 * SHARD_KEYS, clock=FakeClock())
    order = [f"client-{i}" for i in range(8 * SHARD_KEYS)]
    for key in order:
        store.acquire_nowait(key, T, CAPACITY)
    assert len(store) == store.max_keys
    kept_before = {id(shard): list(shard) for shard in shards(store)}
    store.acquire_nowait("newcomer", T, CAPACITY)
    assert len(store) < store.max_keys
    assert stored(store, "newcomer") is not None
    evicted = [key for key in order if stored(store, key) is None]
    # A few keys, not a whole shard and not the table, and exactly the oldest-inserted of
    # the shard they came from.
    assert 1 <= len(evicted) <= SHARD_KEYS // 16 + 1
    (source,) = [keys for keys in kept_before.values() if evicted[0] in keys]
    assert source[: len(evicted)] == evicted


def test_expired_keys_are_reclaimed_over_later_insertions() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    old = [f"old-{i}" for i in range(10 * SHARD_KEYS)]
    for key in old:
        store.acquire_nowait(key, T, CAPACITY)
    clock.advance(1.0)  # every old bucket is full again: they are as good as unknown
    assert len(store) == len(old)  # nothing is reclaimed before new keys arrive
    for i in range(3 * len(old)):
        store.acquire_nowait(f"new-{i}", T, CAPACITY)
        clock.advance(0.001)  # new keys expire too, ~100 live at a time
    assert all(stored(store, key) is None for key in old)


def test_a_table_of_several_shards_holds_about_twice_its_live_keys_at_most() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    peak = 0
    for i in range(100_000):
        store.acquire_nowait(f"client-{i}", T, CAPACITY)
        clock.advance(0.0001)  # each bucket is full again 0.1 s later: ~1,000 live keys
        peak = max(peak, len(store))
    assert len(shards(store)) > 1
    assert peak <= 2.5 * 1_000


@settings(max_examples=200, deadline=None)
@given(
    max_keys=st.integers(min_value=1, max_value=40),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=80), st.sampled_from([0.0, 0.01, 0.3])),
        max_size=300,
    ),
)
def test_max_keys_is_never_exceeded(max_keys: int, steps: list[tuple[int, float]]) -> None:
    with shards_of(4):
        clock = FakeClock()
        store = MemoryStore(max_keys=max_keys, clock=clock)
        for key, gap in steps:
            clock.advance(gap)
            store.acquire_nowait(f"k{key}", T, CAPACITY)
            assert len(store) <= max_keys
            assert sum(len(shard) for shard in shards(store)) == len(store)


# One step of the reference comparison: (operation, key, cost or 0, seconds to move on).
_steps = st.lists(
    st.tuples(
        st.sampled_from(["take", "wait", "refund", "peek"]),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=1, max_value=BURST),
        st.sampled_from([0.0, 0.0, 0.05, 0.3, 2.0]),
    ),
    max_size=250,
)


@settings(max_examples=200, deadline=None)
@given(steps=_steps)
def test_decisions_equal_an_unbounded_reference_while_under_max_keys(
    steps: list[tuple[str, int, int, float]],
) -> None:
    # A plain dict that never forgets anything is the reference; the store splits into
    # shards and sweeps expired keys as it goes, and must decide exactly the same.
    with shards_of(4):
        clock = FakeClock(start=10.0)
        store = MemoryStore(max_keys=1_000, clock=clock)
        reference: dict[str, float] = {}
        latest: dict[str, tuple[float, int]] = {}
        for op, index, cost, gap in steps:
            key = f"k{index}"
            now = clock.now()
            tat = reference.get(key)
            if op == "peek":
                expected_left = remaining(tat, now, emission_interval=T, burst=BURST)
                assert run(store.peek(key, emission_interval=T, burst=BURST)) == expected_left
            elif op == "refund":
                receipt, held = latest.get(key, (-1.0, 1))
                refunded, restored = refund(tat, receipt, now, emission_interval=T, cost=held)
                got_refunded = store.refund_nowait(key, receipt, T, held)
                if receipt > now:  # a reservation in the past may already have been swept
                    assert got_refunded == refunded
                if restored is None:
                    reference.pop(key, None)
                else:
                    reference[key] = restored
            else:
                max_wait = 0.0 if op == "take" else 0.5
                expected = decide(
                    tat, now, emission_interval=T, burst=BURST, cost=cost, max_wait=max_wait
                )
                if op == "take":
                    got = store.acquire_nowait(key, cost * T, CAPACITY)
                    assert got == (0.0 if expected.allowed else expected.retry_after)
                else:
                    decision = store.acquire(
                        key, emission_interval=T, burst=BURST, cost=cost, max_wait=max_wait
                    )
                    assert run(decision) == expected
                if expected.allowed:
                    reference[key] = expected.tat
                    latest[key] = (expected.tat, cost)
            clock.advance(gap)
