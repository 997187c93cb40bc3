"""MemoryStore: rate limiter state in this process, bounded in memory."""

from __future__ import annotations

from itertools import islice
from typing import Final

from resilient._clock import Clock
from resilient._gcra import EPSILON, Decision, admit, decide, refund, remaining
from resilient._validate import check_clock, check_positive_int

__all__ = ("MemoryStore",)

#: Most keys one shard holds before it splits in two on one more bit of the keys' hashes.
#: Every piece of bookkeeping a call may do (a sweep, a split, CPython growing a dict) costs
#: time in proportion to one shard, never to the whole table: about 0.5 ms at worst for
#: 1,024 keys that are cold in the CPU caches. Bigger shards would mean fewer dicts to
#: keep warm, but slower worst calls.
_SHARD_KEYS: Final = 1024

#: Fewest new keys between two sweeps, so that a small table is not swept on every insertion.
_MIN_SWEEP: Final = 64


class MemoryStore:
    """Rate limiter state kept in this process: one float per key.

    Args:
        max_keys: the most keys kept at once (a whole number >= 1, default 1,000,000). At
            it, the oldest-inserted keys of one shard of the table are evicted: their
            state is forgotten, so they start again with a full bucket.
        clock: the time source decisions are made on (default: the monotonic clock).

    The keys are spread by hash over shards of at most 1,024 keys (a small table is one
    shard), and every piece of bookkeeping works on one shard at a time: no call copies,
    scans or rehashes the whole table, so the slowest call does not grow with the table:
    it does at most two shards' worth of work, well under a millisecond.

    A key whose bucket has filled up again holds no information (it behaves exactly like a
    key never seen), so such keys are swept away as new keys arrive. A sweep visits the
    next shard in turn, and the one after it waits for as many new keys as that shard kept
    (at least 64): sweeping costs constant time per insertion, amortised, and a round of
    sweeps over every shard takes about as many new keys as there are live ones. An expired
    key is gone within one round, so the table holds about twice the live keys at most
    (plus up to 64 per shard): memory follows the keys that are active now, not every key
    ever seen. `len()` counts the expired keys that no sweep has reached yet.

    `max_keys` only bites when that many keys are active at once, for example under a flood
    of distinct client addresses. Then the sweep evicts: the shard it visits forgets its
    oldest-inserted live keys, a sixteenth of that shard (at most 64 keys) at a time, and
    the next eviction takes the next shard's. Each shard keeps its keys in insertion order
    and receives its share of new keys, so the keys evicted are among the oldest in the
    table, as when the whole table is kept in one insertion order.

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

    __slots__ = (
        "_clock",
        "_countdown",
        "_depths",
        "_hand",
        "_mask",
        "_now",
        "_shards",
        "_size",
        "_tats",
        "max_keys",
    )

    def __init__(self, *, max_keys: int = 1_000_000, clock: Clock | None = None) -> None:
        self.max_keys = check_positive_int("max_keys", max_keys)
        self._clock = check_clock(clock)
        self._now = self._clock.now
        self._start()

    def _start(self) -> None:
        # An extendible hash table. The shard of a key is `_shards[hash(key) & _mask]`; a
        # shard that tells its keys apart from the others' by the low `depth` bits of their
        # hash (its depth, in `_depths`) sits at every `2**depth`-th slot. Splitting a shard
        # adds a bit to its depth; only when the slots do not use that many bits yet does
        # `_shards` double first. Shards are plain dicts: insertion order is eviction order,
        # and lookups are the cheapest.
        shard: dict[str, float] = {}
        # The only shard while there is one: calls on a small table skip hashing the key.
        self._tats: dict[str, float] | None = shard
        self._shards = [shard]
        self._depths = [0]
        self._mask = 0
        self._size = 0
        self._hand = 0  # the slot of the shard the next sweep visits
        self._countdown = _MIN_SWEEP  # new keys until that sweep

    def __repr__(self) -> str:
        return f"MemoryStore(max_keys={self.max_keys!r}, keys={self._size})"

    def __len__(self) -> int:
        """How many keys hold state right now (expired ones linger until a sweep reaches
        their shard: within about as many new keys as there are live ones)."""
        return self._size

    def clear(self) -> None:
        """Forget every key: every bucket is full again."""
        self._start()

    # -- the table --------------------------------------------------------------------------

    def _shard(self, key: str) -> dict[str, float]:
        tats = self._tats
        return self._shards[hash(key) & self._mask] if tats is None else tats

    def _insert(self, shard: dict[str, float], key: str, tat: float, now: float) -> None:
        self._countdown -= 1
        if self._countdown <= 0 or self._size >= self.max_keys:
            self._sweep(now)
            while self._size >= self.max_keys:
                # The swept shard was too small to free a place: a full table always has
                # a shard to take one from, at most one round of the sweep away.
                self._sweep(now)
            shard = self._shard(key)  # the sweep may have rebuilt it
        shard[key] = tat
        self._size += 1
        if len(shard) > _SHARD_KEYS:
            self._split(key)

    def _sweep(self, now: float) -> None:
        # Visit the next shard once: a shard sits at several slots, its own is the first.
        depths = self._depths
        slot = self._hand
        while slot >> depths[slot]:
            slot = (slot + 1) & self._mask
        shard = self._shards[slot]
        others = self._size - len(shard)
        # Reading the values is cheap; going through the keys and copying the shard is not.
        expired = bool(shard) and min(shard.values()) <= now
        if expired or others + len(shard) >= self.max_keys:
            if expired:
                # Drop the keys whose bucket is full again: they decide exactly like
                # unknown keys.
                for key in [key for key, tat in shard.items() if tat <= now]:
                    del shard[key]
            excess = others + len(shard) + 1 - self.max_keys
            if excess > 0:
                # Still full of live keys: forget this shard's oldest-inserted ones, a
                # sixteenth of it at a time, so that the copy below is amortised over
                # the insertions that fill the table again.
                for key in list(islice(shard, max(excess, -(-len(shard) // 16)))):
                    del shard[key]
            self._size = others + len(shard)
            # A copy made in one go is sized for what it holds: deleted keys leave holes.
            self._place(slot, dict(shard))
        self._hand = (slot + 1) & self._mask
        # The next sweep waits for as many new keys as this one kept, so sweeping costs
        # O(1) per insertion, amortised, and a round of sweeps takes about as many new
        # keys as there are live ones.
        self._countdown = max(_MIN_SWEEP, len(shard))

    def _split(self, key: str) -> None:
        shards = self._shards
        depths = self._depths
        slot = hash(key) & self._mask
        depth = depths[slot]
        if depth == self._mask.bit_length():
            if len(shards) * _SHARD_KEYS >= 8 * self.max_keys:
                # Eight times the slots a full table needs: only a shard of keys whose
                # hashes agree on that many low bits gets here. It grows instead.
                return
            shards.extend(shards)
            depths.extend(depths)
            self._mask = 2 * self._mask + 1
        shard = shards[slot]
        bit = 1 << depth
        high = {k: shard.pop(k) for k in [k for k in shard if hash(k) & bit]}
        low = dict(shard)  # sized in one go for the keys that stay
        for i in range(slot & (bit - 1), len(shards), bit):
            shards[i] = high if i & bit else low
            depths[i] = depth + 1
        self._tats = None

    def _place(self, slot: int, shard: dict[str, float]) -> None:
        # Put `shard` at every slot of the one at `slot`.
        shards = self._shards
        step = 1 << self._depths[slot]
        for i in range(slot & (step - 1), len(shards), step):
            shards[i] = shard
        if self._tats is not None:
            self._tats = shard

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
        if tats is None:
            tats = self._shards[hash(key) & self._mask]
        tat = tats.get(key)
        new_tat, wait = admit(tat, now, increment, capacity)
        if wait > EPSILON:
            return wait
        if tat is None:
            self._insert(tats, key, new_tat, now)
        else:
            tats[key] = new_tat
        return 0.0

    def refund_nowait(self, key: str, tat: float, emission_interval: float, cost: int) -> bool:
        """`refund` without awaiting."""
        now = self._now()
        tats = self._shard(key)
        refunded, restored = refund(
            tats.get(key), tat, now, emission_interval=emission_interval, cost=cost
        )
        if refunded:
            if restored is None:
                del tats[key]
                self._size -= 1
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
        tats = self._shard(key)
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
                self._insert(tats, key, decision.tat, now)
            else:
                tats[key] = decision.tat
        return decision

    async def refund(self, key: str, *, tat: float, emission_interval: float, cost: int) -> bool:
        """Give back the key's latest reservation (see `Store.refund`)."""
        return self.refund_nowait(key, tat, emission_interval, cost)

    async def peek(self, key: str, *, emission_interval: float, burst: int) -> int:
        """Whole permits available on `key` now (see `Store.peek`)."""
        return remaining(
            self._shard(key).get(key),
            self._now(),
            emission_interval=emission_interval,
            burst=burst,
        )
