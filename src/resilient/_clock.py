"""Time as every policy reads it: a monotonic `now()` and an awaitable `sleep()`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import anyio

__all__ = ("Clock", "MonotonicClock", "TimerHandle", "monotonic_clock")


@runtime_checkable
class Clock(Protocol):
    """The time source a policy reads.

    `now()` is a monotonic reading in seconds; only differences between readings mean
    anything. `sleep(seconds)` waits that long on the running event loop.
    `resilient.testing.FakeClock` implements it for instant tests.
    """

    def now(self) -> float:
        """Return the current monotonic time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` seconds."""
        ...


class TimerHandle(Protocol):
    """A scheduled callback that can be called off."""

    def cancel(self) -> None: ...


class MonotonicClock:
    """The default clock: `time.monotonic` and the event loop's own sleep."""

    __slots__ = ()

    now = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "MonotonicClock()"


#: The process-wide default clock; policies built without `clock=` share it.
monotonic_clock = MonotonicClock()


def schedule(clock: Clock, when: float, callback: Callable[[], object]) -> TimerHandle | None:
    """Ask a non-default clock to run `callback` at `when`, if it can schedule timers.

    `FakeClock` can; a custom clock that cannot returns None and the caller falls back on
    the event loop's own timers.
    """
    call_at = getattr(clock, "call_at", None)
    if call_at is None:
        return None
    handle: TimerHandle = call_at(when, callback)
    return handle


def cancel_scope_after(clock: Clock, seconds: float) -> anyio.CancelScope:
    """An anyio cancel scope that is cancelled `seconds` from now on `clock`'s time line.

    For waiting paths (a queued bulkhead call, a rate limiter wait): with the default clock
    it uses the event loop's deadline; with a clock that schedules timers (FakeClock) the
    clock cancels it. Check `scope.cancelled_caught` after the `with` block.
    """
    if clock is monotonic_clock or isinstance(clock, MonotonicClock):
        return anyio.CancelScope(deadline=anyio.current_time() + seconds)
    scope = anyio.CancelScope()
    if schedule(clock, clock.now() + seconds, scope.cancel) is None:
        scope.deadline = anyio.current_time() + seconds
    return scope
