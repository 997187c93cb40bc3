"""Time as every policy reads it: a monotonic `now()` and an awaitable `sleep()`."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, runtime_checkable

import anyio

__all__ = ("Clock", "MonotonicClock", "TimedScope", "TimerHandle", "is_native", "monotonic_clock")


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


def is_native(clock: Clock) -> bool:
    """True for the monotonic clock (any `MonotonicClock`): its time is the event loop's
    own, so waits on it can use the running backend's native timers."""
    return clock is monotonic_clock or type(clock) is MonotonicClock


class TimedScope:
    """An anyio cancel scope that is cancelled `seconds` after it is built, on `clock`'s
    time line: the one way every timed wait and `Timeout` meets a clock.

    With the monotonic clock, or a clock that cannot schedule timers, the event loop's own
    deadline cancels it; with a clock that schedules timers (`FakeClock`) the clock does, and
    the timer is called off when the scope is left, however it is left, so a finished or
    cancelled wait leaves no timer behind. Use it as `with TimedScope(clock, s) as scope:`,
    then read `scope.cancelled_caught`.
    """

    __slots__ = ("scope", "timer")

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.scope = anyio.CancelScope()
        self.timer: TimerHandle | None = None
        if not is_native(clock):
            self.timer = schedule(clock, clock.now() + seconds, self.scope.cancel)
        if self.timer is None:
            self.scope.deadline = anyio.current_time() + seconds

    @property
    def cancelled_caught(self) -> bool:
        """True when the deadline cancelled the code inside."""
        return self.scope.cancelled_caught

    def __enter__(self) -> TimedScope:
        self.scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            return bool(self.scope.__exit__(exc_type, exc, tb))
        finally:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
