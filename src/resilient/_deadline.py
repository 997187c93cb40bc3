"""The nearest enclosing deadline, published by `Timeout` in a context variable.

Everything that may wait (a retry sleep, a bulkhead queue, a rate limiter) asks
`time_left()` how long it still has, instead of being told the same deadline twice.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple

from resilient._clock import Clock

__all__ = ("Deadline", "current_deadline", "time_left")


class Deadline(NamedTuple):
    """An absolute deadline on a clock's time line."""

    at: float
    clock: Clock

    def remaining(self) -> float:
        return self.at - self.clock.now()


current_deadline: ContextVar[Deadline | None] = ContextVar("resilient_deadline", default=None)


def time_left() -> float | None:
    """Seconds until the nearest enclosing `Timeout` expires, or None when there is none.

    The value may be negative when the deadline has already passed.
    """
    deadline = current_deadline.get()
    return None if deadline is None else deadline.remaining()
