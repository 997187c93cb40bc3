"""A call's priority, published in a context variable: it flows down like a deadline."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from resilient._validate import check_positive_int

__all__ = ("current_priority", "priority", "priority_var")

#: The priority of the code running now: 0 (the most important) unless a `priority()`
#: block says otherwise.
priority_var: ContextVar[int] = ContextVar("resilient_priority", default=0)


@contextmanager
def priority(level: int) -> Iterator[int]:
    """Give everything inside the block the priority `level`.

    Args:
        level: 0 is the most important and the default (SRE's "critical"); higher numbers
            are more sheddable. A `LoadShedder` built with `priority_levels=n` reads levels
            0 to n - 1 and treats any higher level as n - 1.

    The level is a context variable: it applies to every `LoadShedder` the block reaches,
    however deep, and to tasks spawned inside the block. `LoadSheddingMiddleware` opens
    such a block around each request from its `priority(scope)`.

    Raises:
        ValueError: `level` is not a whole number >= 0.

    Examples:
        ```python
        with priority(2):                 # a batch job: shed it first
            await shedder.call(rebuild_index)
        ```
    """
    token = priority_var.set(check_positive_int("level", level, minimum=0))
    try:
        yield level
    finally:
        priority_var.reset(token)


def current_priority() -> int:
    """The priority of the code running now (0 outside any `priority()` block).

    Examples:
        ```python
        with priority(1):
            assert current_priority() == 1
        ```
    """
    return priority_var.get()
