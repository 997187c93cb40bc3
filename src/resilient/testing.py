"""Helpers for testing code that uses resilient.

`FakeClock` replaces the monotonic clock: sleeps return at once after moving time forward,
and when every task is blocked waiting on fake time, time jumps to the next timer, so a test
of backoff, budgets, breakers, limiters, bulkhead queues or timeouts runs in microseconds
and gives the same answer every time::

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
import math
from collections.abc import Callable
from typing import Any, Final

import anyio.lowlevel

from resilient._backend import asyncio_loop, trio_module
from resilient._validate import short_repr

__all__ = ("FakeClock",)

#: The largest reading a FakeClock may have, in seconds (about 136 years). Up to it a float
#: still tells apart two instants one microsecond apart (its step there is under 1 µs), far
#: finer than the shortest duration the library works with; past it, `now + 0.001` would
#: start to round, and a short Timeout could fire at once or never.
MAX_TIME: Final = 2.0**32

_PENDING, _CANCELLED, _FIRED = range(3)


class _FakeTimer:
    """A callback due at `when` on a FakeClock; `cancel()` calls it off."""

    __slots__ = ("callback", "clock", "state", "when")

    def __init__(self, clock: FakeClock, when: float, callback: Callable[[], object]) -> None:
        self.clock = clock
        self.when = when
        self.callback = callback
        self.state = _PENDING

    def cancel(self) -> None:
        if self.state == _PENDING:
            self.state = _CANCELLED
            self.clock._forget(self)


def _check_time(field: str, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            pass
        else:
            if math.isfinite(seconds) and -MAX_TIME <= seconds <= MAX_TIME:
                return seconds
    raise ValueError(
        f"{field} must be a finite number of seconds within ±2**32, got {short_repr(value)}"
    )


class FakeClock:
    """A clock whose time moves only when something waits on it or a test moves it.

    Args:
        start: the reading of `now()` before any time passes, in seconds (a finite number
            within ±2**32, about 136 years, where a float still resolves a microsecond).
        autojump: when every task is blocked and some are waiting on this clock's timers
            (a `Timeout`, a bulkhead or rate limiter wait), jump time to the next timer
            (default `True`). `False` leaves time to `sleep()` and `advance()` alone.

    `await clock.sleep(s)` advances the clock by `s` at once and then yields to the event
    loop once (it stays a cancellation point, like a real sleep). `clock.advance(s)` moves
    time from outside, for example from the test body while a task waits.

    Timed waits (a `Timeout`, a `Bulkhead` queue with `max_wait`, a `RateLimiter` with
    `max_wait`) put a timer on the clock. With `autojump`, as soon as no task can run, the
    clock jumps to the earliest timer and fires it, so such a wait makes progress without
    the test moving time by hand, and a test still reads exact fake times. A wait that ends
    early, or is cancelled, calls its timer off: none is left behind (`pending_timers`).

    Time jumps whenever the loop has nothing else to run, including while a task waits for
    real I/O: for a test that talks to a real server while fake-timed waits are pending,
    pass `autojump=False` and move time with `advance()`. On asyncio the jump is decided
    from asyncio's own event loop; on trio, from `trio.testing.wait_all_tasks_blocked`
    (a test's own `wait_all_tasks_blocked()` wakes before the clock jumps).

    Examples:
        >>> clock = FakeClock()
        >>> clock.advance(1.5)
        >>> clock.now()
        1.5
    """

    __slots__ = ("_autojump", "_jumper", "_live", "_now", "_seq", "_timers")

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = _check_time("start", start)
        if not isinstance(autojump, bool):
            raise ValueError(f"autojump must be True or False, got {short_repr(autojump)}")
        self._autojump = autojump
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._live = 0
        self._seq = itertools.count()
        self._jumper: _AsyncioJumper | _TrioJumper | None = None

    def now(self) -> float:
        """Return the current fake time, in seconds."""
        return self._now

    @property
    def pending_timers(self) -> int:
        """How many timers are waiting to fire (cancelled and fired ones are not counted).

        Examples:
            >>> clock = FakeClock()
            >>> timer = clock.call_at(1.0, lambda: None)
            >>> clock.pending_timers
            1
            >>> timer.cancel()
            >>> clock.pending_timers
            0
        """
        return self._live

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by `seconds` (if positive), then yield once to the event loop."""
        if seconds > 0:
            self.advance(seconds)
        await anyio.lowlevel.checkpoint()

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` and fire every timer that falls due, in order.

        Raises:
            ValueError: `seconds` is negative or not a number, or would move the clock
                past 2**32 seconds.
        """
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        target = self._now + seconds
        if not target <= MAX_TIME:
            raise ValueError(
                f"seconds must keep the clock within 2**32 s, got {seconds!r} at {self._now!r}"
            )
        timers = self._timers
        while timers and timers[0][0] <= target:
            when, _, timer = heapq.heappop(timers)
            if timer.state != _PENDING:
                continue
            timer.state = _FIRED
            self._live -= 1
            self._now = max(self._now, when)
            timer.callback()
        self._now = target

    def call_at(self, when: float, callback: Callable[[], object]) -> _FakeTimer:
        """Run `callback` when the clock reaches `when` (the timers of timed waits).

        A time already reached runs `callback` at once. Returns a handle whose `cancel()`
        calls the timer off.
        """
        timer = _FakeTimer(self, when, callback)
        if when <= self._now:
            timer.state = _FIRED
            callback()
            return timer
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        self._live += 1
        if self._autojump:
            self._start_jumping()
        return timer

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, pending_timers={self._live})"

    # -- autojump ---------------------------------------------------------------------------

    def _forget(self, timer: _FakeTimer) -> None:
        self._live -= 1
        timers = self._timers
        # Cancelled timers are dropped from the top at once and from the rest of the heap
        # when they outnumber the live ones, so a long test does not grow the heap.
        while timers and timers[0][2].state != _PENDING:
            heapq.heappop(timers)
        if len(timers) > 2 * self._live + 64:
            self._timers = [entry for entry in timers if entry[2].state == _PENDING]
            heapq.heapify(self._timers)

    def _jump(self) -> None:
        """Move time to the earliest pending timer and fire what is due then."""
        timers = self._timers
        while timers and timers[0][2].state != _PENDING:
            heapq.heappop(timers)
        if timers:
            self.advance(max(0.0, timers[0][0] - self._now))

    def _start_jumping(self) -> None:
        jumper = self._jumper
        loop = asyncio_loop()
        if loop is not None:
            if jumper is None or jumper.loop is not loop:
                self._jumper = _AsyncioJumper(self, loop)
            return
        if jumper is None and _in_trio():
            self._jumper = _TrioJumper(self)


def _in_trio() -> bool:
    try:
        trio_module().lowlevel.current_task()
    except (ImportError, RuntimeError):
        return False
    return True


#: On asyncio, a real timer due within this many seconds counts as a task about to run: the
#: clock does not jump before it fires (anyio's `wait_all_tasks_blocked()` polls on short
#: real sleeps, and a test's own short real waits should finish first).
_REAL_TIMER_HORIZON: Final = 0.25


class _AsyncioJumper:
    """Jumps a FakeClock when asyncio's event loop has nothing to run.

    A callback that puts itself back on the loop's ready queue runs once per loop
    iteration while the clock has pending timers. When it finds the ready queue empty
    twice in a row (the poll for I/O between the two, which it keeps from blocking,
    brought nothing either), every task is blocked; unless a real timer is about to fire
    (then it waits for that one first), the clock jumps.
    """

    __slots__ = ("clock", "idle", "loop", "ready", "scheduled")

    def __init__(self, clock: FakeClock, loop: Any) -> None:
        self.clock = clock
        self.loop = loop
        # asyncio's own loops keep their ready queue and timer heap here; on a loop that
        # does not (uvloop), a jump waits for two quiet iterations of this callback alone.
        self.ready = getattr(loop, "_ready", None)
        self.scheduled = getattr(loop, "_scheduled", None)
        self.idle = 0
        loop.call_soon(self._tick)

    def _tick(self) -> None:
        clock, loop = self.clock, self.loop
        if not clock._live or loop.is_closed():
            if clock._jumper is self:
                clock._jumper = None
            return
        if self.ready:
            self.idle = 0
        else:
            self.idle += 1
            if self.idle >= 2:
                self.idle = 0
                soon = self._next_real_timer()
                if soon is not None:
                    loop.call_at(soon, self._tick)
                    return
                clock._jump()
        loop.call_soon(self._tick)

    def _next_real_timer(self) -> float | None:
        """When the loop's next timer fires, if within the horizon (jumpers' own aside)."""
        if not self.scheduled:
            return None
        horizon = self.loop.time() + _REAL_TIMER_HORIZON
        soonest: float | None = None
        for handle in self.scheduled:
            when = handle.when()
            if when > horizon or handle.cancelled() or (soonest is not None and when >= soonest):
                continue
            callback = getattr(handle, "_callback", None)
            if isinstance(getattr(callback, "__self__", None), _AsyncioJumper):
                continue
            soonest = when
        return soonest


#: Real seconds every task must stay blocked before the clock jumps, on trio.
_TRIO_CUSHION: Final = 0.0001


class _TrioJumper:
    """Jumps a FakeClock from a trio system task whenever every task is blocked."""

    __slots__ = ("clock", "loop")

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.loop = None
        trio = trio_module()
        trio.lowlevel.spawn_system_task(self._run, name="resilient FakeClock autojump")

    async def _run(self) -> None:
        import trio.testing

        clock = self.clock
        try:
            while clock._live:
                # A cushion above the default: a test's own wait_all_tasks_blocked()
                # wakes first, and sees the blocked state before time moves.
                await trio.testing.wait_all_tasks_blocked(_TRIO_CUSHION)
                clock._jump()
        finally:
            if clock._jumper is self:
                clock._jumper = None
