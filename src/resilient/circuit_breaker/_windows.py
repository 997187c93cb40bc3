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
    Recording one reads and writes one byte; a success that replaces a success, the
    common case, writes nothing.

    Examples:
        >>> w = CountWindow(2)
        >>> w.add(0.0, failed=True, slow=False)
        >>> w.add_success(0.0)
        >>> w.add_success(0.0)  # the failure slides out
        >>> w.totals(0.0)
        (2, 0, 0)
    """

    __slots__ = ("_codes", "_next", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {short_repr(size)}")
        self.size = size
        # Outcome `i` is bits `2 * (i % 4)` and up of byte `i // 4`.
        self._codes = bytearray((size + 3) // 4)
        self._next = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add_success(self, now: float) -> None:
        index = self._next
        if self.calls == self.size:
            # The success replaces the oldest outcome. Only a failed or slow one (and there
            # is none while both totals are zero) has bits to clear and counts to take back.
            if self.failures or self.slow:
                codes = self._codes
                byte = index >> 2
                shift = (index & 3) << 1
                old = codes[byte] >> shift & _CODE_MASK
                if old:
                    codes[byte] ^= old << shift
                    self.failures -= old & _FAILED_BIT
                    self.slow -= old >> 1
        else:
            self.calls += 1
        index += 1
        self._next = 0 if index == self.size else index

    def add(self, now: float, failed: bool, slow: bool) -> None:
        code = 0
        if failed:
            code = _FAILED_BIT
            self.failures += 1
        if slow:
            code |= _SLOW_BIT
            self.slow += 1
        index = self._next
        codes = self._codes
        byte = index >> 2
        shift = (index & 3) << 1
        if self.calls == self.size:
            kept = codes[byte]
            old = kept >> shift & _CODE_MASK
            if old:
                # The oldest outcome leaves the window: take back what it counted.
                self.failures -= old & _FAILED_BIT
                self.slow -= old >> 1
            if old != code:
                codes[byte] = kept ^ (old ^ code) << shift
        else:
            # Not full yet: every slot from `_next` on is still zero.
            self.calls += 1
            codes[byte] |= code << shift
        index += 1
        self._next = 0 if index == self.size else index

    def totals(self, now: float) -> tuple[int, int, int]:
        return (self.calls, self.failures, self.slow)

    def reset(self) -> None:
        self._codes = bytearray(len(self._codes))
        self._next = 0
        self.calls = self.failures = self.slow = 0
