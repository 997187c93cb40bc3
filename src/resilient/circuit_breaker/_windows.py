"""The two windows a circuit breaker counts outcomes in. Pure: no awaits, time is passed in.

Both keep three running totals (calls, failures, slow calls) so reading them is O(1):

- `TimeWindow` counts the outcomes of the last `window` seconds. It is a thin adapter over the
  shared `RollingCounts` (one bucketed sliding window for the whole library).
- `CountWindow` counts the last `size` outcomes, whenever they happened: a ring of two-bit
  outcome codes, packed four to a byte, with running sums.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from resilient._validate import short_repr
from resilient._window import RollingCounts

__all__ = ("CALLS", "FAILURES", "MAX_SIZE", "SLOW", "CountWindow", "TimeWindow", "Window")

#: Field indexes in `RollingCounts`.
CALLS = 0
FAILURES = 1
SLOW = 2

#: The most outcomes a `CountWindow` keeps: it allocates two bits for each up front.
MAX_SIZE = 1_000_000

# What a failed and/or slow call counts in a time window, by `failed | slow << 1`.
_COUNTED = ((CALLS,), (CALLS, FAILURES), (CALLS, SLOW), (CALLS, FAILURES, SLOW))

# A count window stores two bits per outcome: bit 0 failed, bit 1 slow.
_FAILED_BIT = 1
_SLOW_BIT = 2
_CODE_MASK = _FAILED_BIT | _SLOW_BIT


class Window(Protocol):
    """What the breaker's state machine needs from a window of outcomes."""

    def add_success(self, now: float) -> None:
        """Count one successful call that was not slow (the hot path)."""
        ...

    def add(self, now: float, failed: bool, slow: bool) -> None:
        """Count one call with its classification."""
        ...

    def totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the window at `now`."""
        ...

    def reset(self) -> None:
        """Forget every outcome."""
        ...


class TimeWindow:
    """Outcomes of the last `window` seconds, in `buckets` buckets.

    Args:
        window: the window length in seconds (at least 0.001, i.e. 1 ms).
        buckets: how many buckets it is split into; an outcome leaves the window at the
            granularity of one bucket (`window / buckets` seconds).

    The counting is `RollingCounts`'. Successes, the hot path, are its tallied field: a
    success costs a comparison and an increment.

    Examples:
        >>> w = TimeWindow(10.0)
        >>> w.add(0.0, failed=True, slow=False)
        >>> w.add_success(1.0)
        >>> w.totals(2.0)
        (2, 1, 0)
        >>> w.totals(12.0)
        (0, 0, 0)
    """

    __slots__ = ("_counts", "add_success")

    def __init__(self, window: float, buckets: int = 10) -> None:
        self._counts = RollingCounts(window, 3, buckets, tallied=CALLS)
        #: Count one successful call that was not slow: the window's tally, bound once.
        self.add_success: Callable[[float], None] = self._counts.tally

    def add(self, now: float, failed: bool, slow: bool) -> None:
        self._counts.add_each(now, _COUNTED[failed | slow << 1])

    def totals(self, now: float) -> tuple[int, int, int]:
        calls, failures, slow = self._counts.totals(now)
        return (calls, failures, slow)

    def reset(self) -> None:
        self._counts.reset()


class CountWindow:
    """Outcomes of the last `size` calls, however long ago they were made.

    Args:
        size: how many of the most recent outcomes are kept (>= 1).

    Each outcome is two bits (failed, slow), four to a byte: 100,000 calls take 25 KB.
    The ring runs down the bytes four times, each time through another pair of bits (a
    *lane*), so a call finds its outcome's bits with the byte index and the lane's mask
    it already holds. A success that replaces a success, the common case, reads one byte
    and writes nothing; the count of calls is where the ring stands until it is full.

    Examples:
        >>> w = CountWindow(2)
        >>> w.add(0.0, failed=True, slow=False)
        >>> w.add_success(0.0)
        >>> w.add_success(0.0)  # the failure slides out
        >>> w.totals(0.0)
        (2, 0, 0)
    """

    __slots__ = ("_codes", "_end", "_full", "_mask", "_next", "_shift", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {short_repr(size)}")
        self.size = size
        # Outcome `lane * len(_codes) + byte` is bits `2 * lane` and up of `_codes[byte]`.
        self._codes = bytearray((size + 3) // 4)
        self.failures = 0
        self.slow = 0
        self._full = False
        self._start_lane(0)

    def _start_lane(self, shift: int) -> None:
        """Point the next outcome at the first byte of the lane at bits `shift` and up."""
        rows = len(self._codes)
        lane = shift >> 1
        if lane == 4 or lane * rows >= self.size:
            # Past the last outcome: the ring starts over, on the oldest outcome.
            shift = lane = 0
            self._full = True
        self._shift = shift
        self._mask = _CODE_MASK << shift
        self._next = 0
        # Where the lane ends: the last lane may be short.
        self._end = min(rows, self.size - lane * rows)

    def add_success(self, now: float) -> None:
        # The success takes the place of the oldest outcome (of a zero while the window
        # fills up): only a failed or slow one has bits to clear and counts to take back.
        index = self._next
        if self._codes[index] & self._mask:
            self._replace(index, 0)
        index += 1
        if index == self._end:
            self._start_lane(self._shift + 2)
        else:
            self._next = index

    def add(self, now: float, failed: bool, slow: bool) -> None:
        code = 0
        if failed:
            code = _FAILED_BIT
            self.failures += 1
        if slow:
            code |= _SLOW_BIT
            self.slow += 1
        index = self._next
        self._replace(index, code)
        index += 1
        if index == self._end:
            self._start_lane(self._shift + 2)
        else:
            self._next = index

    def _replace(self, index: int, code: int) -> None:
        """Write `code` over the oldest outcome, at `index` in the current lane, and take
        back what that outcome counted."""
        codes, shift = self._codes, self._shift
        kept = codes[index]
        old = kept >> shift & _CODE_MASK
        if old:
            self.failures -= old & _FAILED_BIT
            self.slow -= old >> 1
        if old != code:
            codes[index] = kept ^ (old ^ code) << shift

    def totals(self, now: float) -> tuple[int, int, int]:
        calls = self.size if self._full else (self._shift >> 1) * len(self._codes) + self._next
        return (calls, self.failures, self.slow)

    def reset(self) -> None:
        self._codes = bytearray(len(self._codes))
        self.failures = self.slow = 0
        self._full = False
        self._start_lane(0)
