"""A bucketed sliding time window of event counts, shared by the retry budget and the
circuit breaker. Pure: every method takes `now`.

The window is split into `buckets` equal buckets and keeps one more, the *edge* bucket, that
has just slid out of the window. `recent(field)` sums the `buckets` newest buckets: every
event it counts happened less than `window` ago (it may miss events of the oldest partial
bucket). `with_edge(field)` adds the edge bucket: it counts at least every event of the last
`window` seconds (and may count some a little older). A budget that compares a generous count
of what it spends with a strict count of what it earns can therefore never overspend in any
trailing window.

One field may be *tallied*: `tally(now)` counts an event of it for the price of a comparison
and an increment, the hot path of both owners (a call the retry budget earns from, a
breaker's success). Tallied events of one bucket are summed and added in one step when the
bucket ends, or before anything else reads or writes the window.
"""

from __future__ import annotations

import math
from typing import Any, Final

from resilient._validate import check_positive, short_repr

__all__ = ("MIN_WINDOW", "RollingCounts", "check_window")

#: The shortest window, in seconds (1 ms). Time is bucketed as `now * buckets / window`:
#: far shorter windows overflow that product (to inf, then NaN), and buckets much thinner
#: than a clock's resolution would count nothing useful anyway.
MIN_WINDOW: Final = 0.001


def check_window(field: str, value: Any) -> float:
    """A window length: a finite number of seconds, at least `MIN_WINDOW` (1 ms).

    Every owner of a `RollingCounts` checks its window here, under its own field name.
    """
    seconds = check_positive(field, value)
    if seconds < MIN_WINDOW:
        raise ValueError(
            f"{field} must be at least {MIN_WINDOW} seconds (1 ms), got {short_repr(value)}"
        )
    return seconds


class RollingCounts:
    """Counts of several kinds of event over a sliding time window.

    Args:
        window: the window length in seconds (at least 0.001, i.e. 1 ms).
        fields: how many kinds of event are counted (indexes 0 .. fields-1).
        buckets: how many buckets the window is split into (>= 1).
        tallied: the field `tally()` counts (default 0).
    """

    __slots__ = (
        "_current",
        "_head",
        "_inv_width",
        "_n",
        "_recent",
        "_slots",
        "_tallied",
        "_tally",
        "_tally_at",
        "_tally_until",
        "window",
    )

    def __init__(self, window: float, fields: int, buckets: int = 10, *, tallied: int = 0) -> None:
        window = check_window("window", window)
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {short_repr(buckets)}")
        self.window = window
        self._n = buckets
        self._inv_width = buckets / window
        self._slots = [[0] * fields for _ in range(buckets + 1)]
        self._recent = [0] * fields
        self._head = 0
        self._tallied = tallied
        self._tally = 0
        self._tally_at = 0.0
        # The end of the bucket the pending tally belongs to. Bucketed with the same
        # `now * inv_width` as _advance; should rounding put it a hair past the real edge,
        # an event just after the edge is counted in the earlier bucket and so leaves the
        # window a bucket early: counts of earned calls then err low, never high.
        self._tally_until = -math.inf
        self._current: int | None = None

    def _advance(self, now: float) -> list[int]:
        index = int((now * self._inv_width) // 1)
        current = self._current
        if current is None or index - current > self._n:
            for slot in self._slots:
                slot[:] = [0] * len(slot)
            self._recent[:] = [0] * len(self._recent)
            self._current = index
        elif index > current:
            slots, recent, size = self._slots, self._recent, self._n + 1
            head = self._head
            for _ in range(index - current):
                # The oldest bucket of the window becomes the edge bucket...
                leaving = slots[(head - self._n + 1) % size]
                for field, count in enumerate(leaving):
                    recent[field] -= count
                # ...and the old edge bucket is dropped and reused as the newest.
                head = (head + 1) % size
                slot = slots[head]
                slot[:] = [0] * len(slot)
            self._head = head
            self._current = index
        return self._slots[self._head]

    def tally(self, now: float) -> None:
        """Count one event of the tallied field at time `now` (the hot path)."""
        if now < self._tally_until:
            self._tally += 1
            return
        self._flush()
        self._tally = 1
        self._tally_at = now
        self._tally_until = ((now * self._inv_width) // 1 + 1) / self._inv_width

    def _flush(self) -> None:
        count = self._tally
        if count:
            self._tally = 0
            self._advance(self._tally_at)[self._tallied] += count
            self._recent[self._tallied] += count

    def add(self, now: float, field: int, count: int = 1) -> None:
        """Count `count` events of kind `field` at time `now`."""
        self._flush()
        self._advance(now)[field] += count
        self._recent[field] += count

    def recent(self, now: float, field: int) -> int:
        """Events of kind `field` in the window's buckets (all within the last `window`)."""
        self._flush()
        self._advance(now)
        return self._recent[field]

    def with_edge(self, now: float, field: int) -> int:
        """Events of kind `field` in the window plus the edge bucket (at least every event
        of the last `window` seconds)."""
        self._flush()
        self._advance(now)
        edge = self._slots[(self._head + 1) % (self._n + 1)]
        return self._recent[field] + edge[field]

    def reset(self) -> None:
        """Forget every event."""
        self._tally = 0
        self._tally_until = -math.inf
        self._current = None
