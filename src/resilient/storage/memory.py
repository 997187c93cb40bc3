"""MemoryStore: rate limiter state in this process, bounded in memory."""

from __future__ import annotations

from itertools import islice
from typing import Final

from resilient._clock import Clock
from resilient._gcra import EPSILON, Decision, admit, decide, refund, remaining
from resilient._validate import check_clock, check_positive_int

__all__ = ("MemoryStore",)

#: Fewest new keys between two sweeps for expired keys, so small stores do not sweep often.
_MIN_SWEEP: Final = 1024


class MemoryStore:
    """Rate limiter state kept in this process: one float per key.

    Args:
        max_keys: the most keys kept at once (a whole number >= 1, default 1,000,000). Past
            it, the oldest-inserted key is evicted: its state is forgotten, so it starts
            again with a full bucket.
        clock: the time source decisions are made on (default: the monotonic clock).

    A key whose bucket has filled up again holds no information (it behaves exactly like a
    key never seen), so such keys are swept away as new keys arrive, in sweeps whose cost is
    spread over the insertions (amortised constant time). Memory therefore follows the keys
    that are active now, not every key ever seen; `max_keys` only bites when more than that
    many keys are active at once, for example under a flood of distinct client addresses.

    Every `RateLimiter` built without `store=` has its own `MemoryStore`. Pass one store to
    several limiters to keep all their state in one bounded table; limiters with different
    `name=` never share buckets.

    Besides the `Store` coroutines it has the `SyncStore` capability: `acquire_nowait` and
    `refund_nowait` decide without awaiting, and `RateLimiter` uses them so that a granted
    permit costs no trip through the event loop.

    Examples:
        ```python
        from resilient.storage import MemoryStore

        store = MemoryStore(max_keys=100_000)
        assert store.acquire_nowait("client-1", 0.1, 1.0) == 0.0  # admitted
        assert len(store) == 1
        ```
    """

    __slots__ = ("_clock", "_now", "_sweep_countdown", "_tats", "max_keys")

    def __init__(self, *, max_keys: int = 1_000_000, clock: Clock | None = None) -> None:
        self.max_keys = check_positive_int("max_keys", max_keys)
        self._clock = check_clock(clock)
        self._now = self._clock.now
        # A plain dict: insertion order is eviction order, and lookups are the cheapest.
        self._tats: dict[str, float] = {}
        self._sweep_countdown = _MIN_SWEEP

    def __repr__(self) -> str:
        return f"MemoryStore(max_keys={self.max_keys!r}, keys={len(self._tats)})"

    def __len__(self) -> int:
        """How many keys hold state right now (expired ones may linger until a sweep)."""
        return len(self._tats)

    def clear(self) -> None:
        """Forget every key: every bucket is full again."""
        self._tats = {}
        self._sweep_countdown = _MIN_SWEEP

    # -- the table --------------------------------------------------------------------------

    def _insert(self, key: str, tat: float, now: float) -> None:
        self._sweep_countdown -= 1
        if self._sweep_countdown <= 0 or len(self._tats) >= self.max_keys:
            self._make_room(now)
        self._tats[key] = tat

    def _make_room(self, now: float) -> None:
        # Drop keys whose bucket is full again: they decide exactly like unknown keys. The
        # next sweep waits for as many new keys as survive this one, so a sweep costs O(1)
        # per insertion, amortised, and the table holds about twice the live keys at most.
        tats = {key: tat for key, tat in self._tats.items() if tat > now}
        if len(tats) >= self.max_keys:
            # Still full of live keys: forget the oldest-inserted ones, a sixteenth of the
            # table at a time so that this copy too is amortised over many insertions.
            drop = len(tats) - self.max_keys + max(1, self.max_keys // 16)
            tats = dict(islice(tats.items(), drop, None))
        self._tats = tats
        self._sweep_countdown = max(_MIN_SWEEP, len(tats))

    # -- synchronous fast path --------------------------------------------------------------

    def acquire_nowait(self, key: str, increment: float, capacity: float) -> float:
        """Take permits now if they are there, without awaiting: the limiter's fast path.

        Args:
            key: the bucket.
            increment: the permits to take, in seconds: `cost * emission_interval`.
            capacity: the bucket size, in seconds: `burst * emission_interval`.

        Returns `0.0` when the permits were taken; otherwise the seconds until they would be
        (the exact `retry_after`), and nothing changed. Same decision as `acquire` with
        `max_wait=0`, in units the caller computes once instead of on every call.

        Examples:
            >>> store = MemoryStore()
            >>> store.acquire_nowait("k", 0.5, 1.0)  # half a second of a one-second bucket
            0.0
            >>> store.acquire_nowait("k", 0.5, 1.0)
            0.0
            >>> store.acquire_nowait("k", 0.5, 1.0) > 0
            True
        """
        now = self._now()
        tats = self._tats
        tat = tats.get(key)
        new_tat, wait = admit(tat, now, increment, capacity)
        if wait > EPSILON:
            return wait
        if tat is None:
            self._insert(key, new_tat, now)
        else:
            tats[key] = new_tat
        return 0.0

    def refund_nowait(self, key: str, tat: float, emission_interval: float, cost: int) -> bool:
        """`refund` without awaiting."""
        now = self._now()
        tats = self._tats
        refunded, restored = refund(
            tats.get(key), tat, now, emission_interval=emission_interval, cost=cost
        )
        if refunded:
            if restored is None:
                del tats[key]
            else:
                tats[key] = restored
        return refunded

    # -- the Store protocol -----------------------------------------------------------------

    async def acquire(
        self,
        key: str,
        *,
        emission_interval: float,
        burst: int,
        cost: int,
        max_wait: float,
    ) -> Decision:
        """Admit, delay or reject a request for `cost` permits (see `Store.acquire`)."""
        now = self._now()
        tats = self._tats
        tat = tats.get(key)
        decision = decide(
            tat,
            now,
            emission_interval=emission_interval,
            burst=burst,
            cost=cost,
            max_wait=max_wait,
        )
        if decision.allowed:
            if tat is None:
                self._insert(key, decision.tat, now)
            else:
                tats[key] = decision.tat
        return decision

    async def refund(self, key: str, *, tat: float, emission_interval: float, cost: int) -> bool:
        """Give back the key's latest reservation (see `Store.refund`)."""
        return self.refund_nowait(key, tat, emission_interval, cost)

    async def peek(self, key: str, *, emission_interval: float, burst: int) -> int:
        """Whole permits available on `key` now (see `Store.peek`)."""
        return remaining(
            self._tats.get(key), self._now(), emission_interval=emission_interval, burst=burst
        )
