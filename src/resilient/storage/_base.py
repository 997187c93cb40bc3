"""The `Store` protocol: where a rate limiter keeps its per-key state."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from resilient.rate_limit._gcra import Decision

__all__ = ("Decision", "Store")


@runtime_checkable
class Store(Protocol):
    """Per-key GCRA state for `RateLimiter`, behind one interface for every backend.

    Each method is one atomic step against the store, made with the store's own clock (a
    store shared between processes, coming with Redis, will read the server's time, so that
    processes whose clocks disagree still share one limit). A decision is one round trip;
    nothing is read, computed and written back in separate steps. The arithmetic is
    `resilient.rate_limit`'s GCRA (see its module docs).

    Keys arrive already namespaced by the limiter; any non-empty string is a valid key, and a
    store must keep hostile ones (huge, unicode, control characters) apart and harmless.

    `MemoryStore` keeps state in the process; a `RedisStore` that shares it between processes
    is coming. A custom store implements these three coroutines.

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
