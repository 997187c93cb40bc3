"""The nearest enclosing deadline, published by `Timeout` in a context variable.

Everything that may wait (a retry sleep, a bulkhead queue, a rate limiter) asks
`time_left()` how long it still has, instead of being told the same deadline twice.
"""

from __future__ import annotations

from contextvars import ContextVar

from resilient._clock import Clock

__all__ = ("Deadline", "current_deadline", "remaining", "time_left")

#: An absolute deadline on a clock's time line: (at, clock). A plain tuple, since one is
#: built on every call through a Timeout.
Deadline = tuple[float, Clock]

current_deadline: ContextVar[Deadline | None] = ContextVar("resilient_deadline", default=None)


def remaining(deadline: Deadline) -> float:
    """Seconds left until `deadline` on its own clock."""
    return deadline[0] - deadline[1].now()


def time_left() -> float | None:
    """Seconds until the nearest enclosing `Timeout` expires, or None when there is none.

    The value may be negative when the deadline has already passed.
    """
    deadline = current_deadline.get()
    return None if deadline is None else deadline[0] - deadline[1].now()
