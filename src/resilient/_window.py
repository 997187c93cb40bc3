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

Every count lives in one flat `array('q')` (8 bytes a count, no object per bucket): a breaker's
ten-bucket window of three fields is 36 counts, about 350 bytes, and thousands of breakers or
budgets stay small.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Final

from resilient._validate import check_positive, short_repr

__all__ = ("MIN_WINDOW", "RollingCounts", "check_window")

#: The shortest window, in seconds (1 ms). Time is bucketed as `now * buckets / window`:
#: far shorter windows overflow that product (to inf, then NaN), and buckets much thinner
#: than a clock's resolution would count nothing useful anyway.
MIN_WINDOW: Final = 0.001

# No pending tally: every `now` is past it. One float for every window.
_NEVER: Final = -math.inf


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


def _zeros(length: int) -> array[int]:
    """`length` zero counts, allocated to the exact size."""
    return array("q", (0,)) * length


class RollingCounts:
    """Counts of several kinds of event over a sliding time window.

    Args:
        window: the window length in seconds (at least 0.001, i.e. 1 ms).
        fields: how many kinds of event are counted (indexes 0 .. fields-1).
        buckets: how many buckets the window is split into (>= 1).
        tallied: the field `tally()` counts (default 0).
    """

    __slots__ = (
        "_counts",
        "_current",
        "_fields",
        "_head",
        "_inv_width",
        "_n",
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
        self._fields = fields
        self._inv_width = buckets / window
        # Counts by position: the window's running totals first (`fields` of them), then
        # the `buckets + 1` buckets (the edge among them), `fields` counts each.
        self._counts = _zeros(fields * (buckets + 2))
        # Where the newest bucket starts in `_counts`.
        self._head = fields
        self._tallied = tallied
        self._tally = 0
        self._tally_at = 0.0
        # The end of the bucket the pending tally belongs to. Bucketed with the same
        # `now * inv_width` as _advance; should rounding put it a hair past the real edge,
        # an event just after the edge is counted in the earlier bucket and so leaves the
        # window a bucket early: counts of earned calls then err low, never high.
        self._tally_until = _NEVER
        self._current: int | None = None

    def _advance(self, now: float) -> int:
        """Slide the window to `now`; where the newest bucket starts in `_counts`."""
        index = int((now * self._inv_width) // 1)
        current = self._current
        if current is None or index - current > self._n:
            self._counts = _zeros(len(self._counts))
            self._current = index
        elif index > current:
            counts, fields = self._counts, self._fields
            # The buckets occupy [fields, end): `head` wraps within them.
            end = fields * (self._n + 2)
            span = end - fields
            head = self._head
            for _ in range(index - current):
                # The oldest bucket of the window becomes the edge bucket...
                leaving = head - (self._n - 1) * fields
                if leaving < fields:
                    leaving += span
                for field in range(fields):
                    counts[field] -= counts[leaving + field]
                # ...and the old edge bucket is dropped and reused as the newest.
                head += fields
                if head == end:
                    head = fields
                for at in range(head, head + fields):
                    counts[at] = 0
            self._head = head
            self._current = index
        return self._head

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
            field = self._tallied
            head = self._advance(self._tally_at)  # first: it may replace `_counts`
            counts = self._counts
            counts[head + field] += count
            counts[field] += count

    def add(self, now: float, field: int, count: int = 1) -> None:
        """Count `count` events of kind `field` at time `now`."""
        self._flush()
        head = self._advance(now)  # first: it may replace `_counts`
        counts = self._counts
        counts[head + field] += count
        counts[field] += count

    def add_each(self, now: float, fields: tuple[int, ...]) -> None:
        """Count one event of each kind in `fields` at time `now` (a breaker's failed or slow
        call: a call, a failure, a slow call), sliding the window once."""
        self._flush()
        head = self._advance(now)
        counts = self._counts
        for field in fields:
            counts[head + field] += 1
            counts[field] += 1

    def totals(self, now: float) -> tuple[int, ...]:
        """`recent(now, field)` of every field, in field order."""
        self._flush()
        self._advance(now)
        return tuple(self._counts[: self._fields])

    def recent(self, now: float, field: int) -> int:
        """Events of kind `field` in the window's buckets (all within the last `window`)."""
        self._flush()
        self._advance(now)
        return self._counts[field]

    def with_edge(self, now: float, field: int) -> int:
        """Events of kind `field` in the window plus the edge bucket (at least every event
        of the last `window` seconds)."""
        self._flush()
        fields = self._fields
        edge = self._advance(now) + fields
        if edge == fields * (self._n + 2):
            edge = fields
        counts = self._counts
        return counts[field] + counts[edge + field]

    def reset(self) -> None:
        """Forget every event."""
        self._tally = 0
        self._tally_until = _NEVER
        self._current = None
