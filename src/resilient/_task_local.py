"""Per-task state for `async with policy:` on a policy object that many tasks share."""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

__all__ = ("TaskLocalStack",)

S = TypeVar("S")


class TaskLocalStack(Generic[S]):
    """What `__aenter__` hands to `__aexit__` in the same task.

    One policy object serves every task, so per-entry state (a timer, a breaker ticket, a
    telemetry record) cannot live on it. Each task sees its own stack through a context
    variable; nested `async with` blocks on the same policy push and pop in order.

    Args:
        owner: the policy class name, used in the error for an unmatched `__aexit__`.
    """

    __slots__ = ("_owner", "_var")

    def __init__(self, owner: str) -> None:
        self._owner = owner
        # The innermost open block's cell: [state, the token that restores the cell below].
        # Made by the first push: most policies never see an `async with`, and a context
        # variable per policy object would be its biggest part.
        self._var: ContextVar[list[Any] | None] | None = None

    def push(self, state: S) -> None:
        """Remember `state` until the matching `pop()` in this task."""
        var = self._var
        if var is None:
            var = self._var = ContextVar(
                sys.intern(f"resilient_{self._owner}_entries"), default=None
            )
        # The cell carries its own reset token, so that pop() restores the block below
        # with `reset`, the cheapest way back (no second tuple, no second `set`).
        cell: list[Any] = [state, None]
        cell[1] = var.set(cell)

    def pop(self) -> S:
        """Take back the state of the innermost open block of this task.

        Raises:
            RuntimeError: no block is open in this task (an `__aexit__` without its
                `__aenter__`, or in another task than its `__aenter__`).
        """
        var = self._var
        cell = None if var is None else var.get()
        if var is None or cell is None:
            raise self._unmatched()
        try:
            var.reset(cell[1])
        except (ValueError, RuntimeError):
            # Entered in another context, or this block was already left.
            raise self._unmatched() from None
        state: S = cell[0]
        return state

    def empty(self) -> bool:
        """True when no block of this policy is open in this task."""
        var = self._var
        return var is None or var.get() is None

    def _unmatched(self) -> RuntimeError:
        return RuntimeError(f"{self._owner}.__aexit__ without a matching __aenter__ in this task")
