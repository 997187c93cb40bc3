"""What a store can do, one protocol per capability.

`Store` is what every rate-limit store does: per-key GCRA buckets, one atomic coroutine per
step. `SyncStore` is the extra capability of a store whose state lives in this process: the
same decisions without awaiting, which `RateLimiter` uses as its fast path. `BreakerStore`
is the capability of a store that keeps a `CircuitBreaker`'s state shared between processes.
A policy asks a store for a capability through these protocols, never by its concrete type.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from resilient._gcra import Decision

__all__ = ("BreakerSettings", "BreakerStore", "BreakerView", "Decision", "Store", "SyncStore")


@runtime_checkable
class Store(Protocol):
    """Per-key GCRA state for `RateLimiter`, behind one interface for every backend.

    Each method is one atomic step against the store, made with the store's own clock (a
    store shared between processes, such as `RedisStore`, reads the server's time, so that
    processes whose clocks disagree still share one limit). A decision is one round trip;
    nothing is read, computed and written back in separate steps. The arithmetic is the
    library's one GCRA (see the `RateLimiter` page).

    Keys arrive already namespaced by the limiter; any non-empty string is a valid key, and a
    store must keep hostile ones (huge, unicode, control characters) apart and harmless.

    `MemoryStore` keeps state in the process; `RedisStore` shares it between processes. A
    custom store implements these three coroutines.

    Examples:
        ```python
        from resilient import RateLimiter
        from resilient.storage import MemoryStore

        store = MemoryStore()
        per_client = RateLimiter(10, store=store, name="per-client")
        ```
    """

    async def acquire(
        self,
        key: str,
        *,
        emission_interval: float,
        burst: int,
        cost: int,
        max_wait: float,
    ) -> Decision:
        """Admit, delay or reject a request for `cost` permits on `key`, atomically.

        Args:
            key: the bucket.
            emission_interval: seconds one permit takes to come back (`per / rate`).
            burst: the bucket size, in permits.
            cost: permits the request takes (1 <= cost <= burst).
            max_wait: seconds the caller accepts to wait (0: admit now or reject). An
                admitted request that must wait has already reserved its permits.

        Returns:
            The decision; `Decision.tat` is the receipt that `refund` needs.
        """
        ...

    async def refund(self, key: str, *, tat: float, emission_interval: float, cost: int) -> bool:
        """Give back a reservation that will not be used (its caller was cancelled).

        Only the key's latest reservation can be given back: the store checks that the
        key's state still equals `tat` (the decision's receipt) and rolls it back by `cost`
        permits. Otherwise it changes nothing.

        Returns:
            `True` when the permits were given back.
        """
        ...

    async def peek(self, key: str, *, emission_interval: float, burst: int) -> int:
        """Whole permits a request on `key` could take now without waiting; changes nothing."""
        ...


@runtime_checkable
class SyncStore(Store, Protocol):
    """A `Store` that can also decide without awaiting, because its state is in this process.

    `RateLimiter` checks for this capability once, when it is built, and then admits a
    permit with one synchronous call. The units are the ones a limiter computes once:
    seconds of permits (`cost * emission_interval`) and seconds of bucket
    (`burst * emission_interval`).

    Examples:
        ```python
        from resilient.storage import MemoryStore, SyncStore

        assert isinstance(MemoryStore(), SyncStore)
        ```
    """

    def acquire_nowait(self, key: str, increment: float, capacity: float) -> float:
        """Take `increment` seconds of permits from a bucket of `capacity` seconds if they
        are there now: `0.0` when taken, otherwise the seconds until they would be (and
        nothing changed)."""
        ...

    def refund_nowait(self, key: str, tat: float, emission_interval: float, cost: int) -> bool:
        """`Store.refund` without awaiting."""
        ...


class BreakerSettings(NamedTuple):
    """The rules of a shared circuit breaker, as `CircuitBreaker` hands them to its store.

    Attributes:
        failure_ratio: open when failures / calls >= this.
        minimum_calls: calls the window must hold before it may open.
        slow_call_ratio: open when slow calls / calls >= this.
        break_duration: the first break, in seconds.
        max_break_duration: the cap on a break doubled by failed probes, in seconds.
        half_open_calls: probes admitted in half-open; all must succeed to close.
        window: the time window, in seconds (used when `window_calls` is 0).
        window_calls: the size of a count window, or 0 for a time window.
    """

    failure_ratio: float
    minimum_calls: int
    slow_call_ratio: float
    break_duration: float
    max_break_duration: float
    half_open_calls: int
    window: float
    window_calls: int


class BreakerView(NamedTuple):
    """What a `BreakerStore` answers: the shared breaker's state after one step.

    Attributes:
        admitted: the call may run (only meaningful for `breaker_admit`).
        state: `"closed"`, `"open"` or `"half_open"`.
        epoch: the breaker's epoch, bumped by every state change; a call's outcome counts
            only in the epoch it was admitted in.
        retry_after: seconds until an open breaker admits its next probe, or None.
        counts: (calls, failures, slow calls) in the window, when the step read them.
    """

    admitted: bool
    state: str
    epoch: int
    retry_after: float | None
    counts: tuple[int, int, int] | None


@runtime_checkable
class BreakerStore(Protocol):
    """A store that keeps circuit breaker state shared by every process that uses it.

    `CircuitBreaker(store=...)` asks for this capability (`isinstance(store, BreakerStore)`)
    and then makes one atomic step per admission and one per outcome. Each step applies the
    breaker's rules (`BreakerSettings`) on the store's own clock. A breaker is named by its
    `name`: breakers with the same name on the same store share one state.

    When the backend cannot be reached, a step follows the store's `on_unavailable`: it
    returns None (the breaker decides with its own state in this process) or, for
    `breaker_admit` with `"deny"`, raises `StorageUnavailableError`. A step never waits
    longer than the store's timeout.

    Examples:
        ```python
        from resilient.storage import BreakerStore, MemoryStore, RedisStore

        assert isinstance(RedisStore("redis://localhost:6379/0"), BreakerStore)
        assert not isinstance(MemoryStore(), BreakerStore)
        ```
    """

    async def breaker_admit(self, name: str, settings: BreakerSettings) -> BreakerView | None:
        """Whether a call may run now; takes a probe slot when half-open."""
        ...

    async def breaker_record(
        self, name: str, settings: BreakerSettings, *, epoch: int, failed: bool, slow: bool
    ) -> BreakerView | None:
        """Count the outcome of a call admitted in `epoch` and apply the transitions."""
        ...

    async def breaker_release(self, name: str, *, epoch: int) -> None:
        """A call admitted in `epoch` ended without an outcome: free its probe slot."""
        ...
