"""The enclosing deadlines, published by `Timeout` in a context variable.

Everything that may wait (a retry sleep, a bulkhead queue, a rate limiter) asks
`time_left()` how long it still has, instead of being told the same deadline twice.

A context variable is copied into every task spawned under it, and such a task may outlive
the `Timeout` that spawned it (a background task started with `asyncio.create_task`). A
deadline therefore lives in a small mutable record that the `Timeout` marks as ended when it
ends: code still inside it (a task group the `Timeout` bounds) keeps seeing it, and a task
that outlives it stops obeying it and sees the deadlines further out, if any are still open.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from resilient._clock import Clock

__all__ = ("Deadline", "close_deadline", "current_deadline", "open_deadline", "time_left")

#: One published deadline: [at, clock, the deadline around it, open]. A list rather than an
#: object, since one is built on every call through a Timeout; it is read through the
#: functions below only.
Deadline = list[Any]
_AT, _CLOCK, _OUTER, _OPEN = range(4)

current_deadline: ContextVar[Deadline | None] = ContextVar("resilient_deadline", default=None)


def open_deadline(at: float, clock: Clock) -> tuple[Deadline, Token[Deadline | None]]:
    """Publish a deadline at `at` on `clock`'s time line for the code that follows."""
    outer = current_deadline.get()
    # Link to the nearest deadline that is still open, so that a chain never grows with
    # ended ones (a task spawned inside a Timeout that itself runs Timeouts).
    while outer is not None and not outer[_OPEN]:
        outer = outer[_OUTER]
    deadline = [at, clock, outer, True]
    return deadline, current_deadline.set(deadline)


def close_deadline(deadline: Deadline, token: Token[Deadline | None]) -> None:
    """End a deadline: nothing sees it any more, in this task or in any task spawned
    under it."""
    deadline[_OPEN] = False
    current_deadline.reset(token)


def time_left() -> float | None:
    """Seconds until the nearest enclosing `Timeout` expires, or None when there is none.

    The value may be negative when the deadline has already passed. Deadlines of `Timeout`s
    that have ended do not count, even in a task that was spawned inside one and outlived it.

    Examples:
        ```python
        async with Timeout(2.0):
            left = time_left()  # about 2.0
        assert time_left() is None
        ```
    """
    deadline = current_deadline.get()
    left: float | None = None
    while deadline is not None:
        if deadline[_OPEN]:
            seconds = deadline[_AT] - deadline[_CLOCK].now()
            if left is None or seconds < left:
                left = seconds
        deadline = deadline[_OUTER]
    return left
