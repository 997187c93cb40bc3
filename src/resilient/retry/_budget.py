"""RetryBudget: a pure ledger that keeps retries a bounded fraction of calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from resilient._validate import check_non_negative, short_repr
from resilient._window import RollingCounts, check_window

__all__ = ("OWN_BUDGET", "OwnBudget", "RetryBudget", "check_budget")

_CALLS: Final = 0
_RETRIES: Final = 1
_BUCKETS: Final = 10


class RetryBudget:
    """Retries may add at most `ratio` of the calls over `window` seconds, plus a floor.

    Args:
        ratio: retries allowed per call made, over the window (>= 0; default 0.2, i.e. 20 %).
        min_per_second: retries per second always allowed, so that a quiet service can
            still retry (>= 0; default 10.0 retries/s).
        window: the length of the sliding window, in seconds (at least 0.001, i.e. 1 ms;
            default 10.0).

    The guarantee, which holds exactly: whenever the budget admits a retry at time `t`,
    the retries it admitted in `(t - window, t]` (that one included, refunded ones
    excluded) number at most `ratio * calls + min_per_second * window`, counting the calls
    recorded in that same interval. It holds because calls are counted strictly (only
    those certainly inside the window) and retries generously (every one that may be).

    It is a pure ledger: every method takes `now`, a reading of the caller's monotonic
    clock, and nothing here awaits. Each `Retry` builds its own budget by default; pass
    one instance to several `Retry` policies to make them share it.

    Examples:
        >>> budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=10.0)
        >>> for _ in range(4):
        ...     budget.record_call(now=1.0)
        >>> [budget.try_spend(now=2.0) for _ in range(3)]
        [True, True, False]
    """

    __slots__ = (
        "_counted_by_retry",
        "_counts",
        "_floor",
        "_inv_width",
        "min_per_second",
        "ratio",
        "window",
    )

    def __init__(
        self, ratio: float = 0.2, min_per_second: float = 10.0, window: float = 10.0
    ) -> None:
        self.ratio = check_non_negative("ratio", ratio)
        self.min_per_second = check_non_negative("min_per_second", min_per_second)
        self.window = check_window("window", window)
        self._floor = self.min_per_second * self.window
        # Calls, counted on every call's happy path, are the window's tallied field.
        self._counts = RollingCounts(self.window, 2, _BUCKETS, tallied=_CALLS)
        self._inv_width = _BUCKETS / self.window
        # Set by a Retry that draws on this budget: it counts the calls, and a Hedge
        # sharing the budget does not count them a second time.
        self._counted_by_retry = False

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"window={self.window!r})"
        )

    def record_call(self, now: float) -> None:
        """Count one call (a first attempt) made at `now`; calls earn retries.

        Examples:
            >>> RetryBudget().record_call(now=0.0)
        """
        self._counts.tally(now)

    def call_counter(self) -> Callable[[float], None]:
        """`record_call`, bound once: what `Retry` calls on every call's happy path."""
        return self._counts.tally

    def try_spend(self, now: float) -> bool:
        """Take one retry from the budget at `now`; False when that would overspend it.

        Examples:
            >>> RetryBudget(min_per_second=0.0).try_spend(now=0.0)
            False
        """
        counts = self._counts
        spent = counts.with_edge(now, _RETRIES)
        earned = counts.recent(now, _CALLS)
        if spent + 1 > self.ratio * earned + self._floor:
            return False
        counts.add(now, _RETRIES)
        return True

    def refund(self, spent_at: float, now: float) -> None:
        """Give back the retry taken at `spent_at` (by `try_spend`) when it never ran.

        The retry is uncounted when the refund comes within the same window bucket (a
        tenth of the window) as the spend, which is where it was counted. Later, it stays
        counted until it slides out of the window: that errs on the side of retrying less,
        never more.

        Examples:
            >>> budget = RetryBudget(min_per_second=0.1, window=10.0)
            >>> budget.try_spend(now=0.0), budget.try_spend(now=0.0)
            (True, False)
            >>> budget.refund(spent_at=0.0, now=0.5)
            >>> budget.try_spend(now=0.5)
            True
        """
        inv_width = self._inv_width
        if (spent_at * inv_width) // 1 == (now * inv_width) // 1:
            self._counts.add(now, _RETRIES, -1)

    def reset(self) -> None:
        """Forget every call and retry recorded so far.

        Examples:
            >>> RetryBudget().reset()
        """
        self._counts.reset()


class OwnBudget:
    """The default of `budget=` (`Retry`, `Hedge`): a fresh `RetryBudget()` for each policy."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RetryBudget()"


OWN_BUDGET: Final = OwnBudget()


def check_budget(budget: Any) -> RetryBudget | None:
    """The budget a policy pays from: a fresh one for `OWN_BUDGET`, `budget` itself, or
    None (no budget)."""
    if isinstance(budget, OwnBudget):
        return RetryBudget()
    if budget is not None and not isinstance(budget, RetryBudget):
        raise ValueError(f"budget must be a RetryBudget or None, got {short_repr(budget)}")
    return budget
