"""Helpers for testing code that uses resilient.

`FakeClock` replaces the monotonic clock: sleeps return at once after moving time forward,
so a test of backoff, budgets, breakers or limiters runs in microseconds and gives the same
answer every time::

    from resilient import Retry
    from resilient.testing import FakeClock

    clock = FakeClock()
    retry = Retry(attempts=5, clock=clock)
    ...
    assert clock.now() == pytest.approx(0.7)
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import anyio.lowlevel

__all__ = ("FakeClock",)


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that only moves when told to.

    Args:
        start: the reading of `now()` before any time passes, in seconds.

    `await clock.sleep(s)` advances the clock by `s` at once and then yields to the event
    loop once (it stays a cancellation point, like a real sleep). `clock.advance(s)` moves
    time from outside, for example from the test body while a task waits. A `Timeout` built
    with this clock expires when the clock passes its deadline, whichever of the two moved it.

    Examples:
        >>> clock = FakeClock()
        >>> clock.advance(1.5)
        >>> clock.now()
        1.5
    """

    def __init__(self, start: float = 0.0) -> None:
        if start != start or start in (float("inf"), float("-inf")):
            raise ValueError(f"start must be a finite number of seconds, got {start!r}")
        self._now = float(start)
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """Return the current fake time, in seconds."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by `seconds` (if positive), then yield once to the event loop."""
        if seconds > 0:
            self.advance(seconds)
        await anyio.lowlevel.checkpoint()

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` and fire every timer that falls due."""
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.callback()
        self._now = target

    def call_at(self, when: float, callback: Callable[[], object]) -> _FakeTimer:
        """Run `callback` when the clock reaches `when` (used by `Timeout`)."""
        timer = _FakeTimer(when, callback)
        if when <= self._now:
            callback()
        else:
            heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
