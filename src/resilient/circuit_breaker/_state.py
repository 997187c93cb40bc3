"""The circuit breaker's state machine. Pure and synchronous: every method takes `now` (when
it needs time) and returns a decision; nothing here awaits.

Admission hands out *tickets*. A ticket is the breaker's epoch at admission, a number bumped
by every state change (and by `reset`). An outcome is recorded only if its ticket still
matches the current epoch, so a call admitted while closed that finishes after the breaker
opened, or a half-open probe that finishes after another probe re-opened the breaker, is
ignored rather than counted against a state it never belonged to. In half-open every admitted
ticket is a probe, which is what makes releasing a probe slot exact.

Because one event loop runs one piece of synchronous code at a time, each method here is
atomic with respect to every task sharing the breaker; the async driver calls them between
awaits and never holds a lock across the user's call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final

from resilient.circuit_breaker._windows import Window

__all__ = ("REJECTED", "BreakerCore", "CircuitState", "Transition")


class CircuitState(enum.StrEnum):
    """The states of a `CircuitBreaker`; each compares equal to its string value.

    Examples:
        >>> CircuitState.HALF_OPEN == "half_open"
        True
    """

    CLOSED = "closed"
    """Calls flow; outcomes are counted in the window."""
    OPEN = "open"
    """Calls are rejected until the break is over."""
    HALF_OPEN = "half_open"
    """A limited number of probe calls test whether the dependency recovered."""
    FORCED_OPEN = "forced_open"
    """Every call is rejected until `reset()` (set by `force_open()`)."""
    DISABLED = "disabled"
    """Every call is admitted and nothing is counted until `reset()` (set by `disable()`)."""


CLOSED: Final = CircuitState.CLOSED
OPEN: Final = CircuitState.OPEN
HALF_OPEN: Final = CircuitState.HALF_OPEN
FORCED_OPEN: Final = CircuitState.FORCED_OPEN
DISABLED: Final = CircuitState.DISABLED

#: The ticket `admit` returns for a call that must be rejected.
REJECTED: Final = -1

#: Called after every state change, with (old, new, now), once the new state is complete.
Transition = Callable[[CircuitState, CircuitState, float], None]


class BreakerCore:
    """The decisions of one circuit breaker.

    Args:
        window: where closed-state outcomes are counted.
        failure_ratio: open when failures / calls >= this (in (0, 1]).
        minimum_calls: calls the window must hold before it may open.
        slow_call_ratio: open when slow calls / calls >= this (in (0, 1]).
        break_duration: the first break, in seconds.
        max_break_duration: the cap on a break doubled by failed probes, in seconds.
        half_open_calls: probes admitted in half-open; all must succeed to close.
        on_transition: told of each state change once the decision that made it is
            complete: the core never calls out in the middle of a decision.

    Examples:
        >>> from resilient.circuit_breaker._windows import CountWindow
        >>> core = BreakerCore(CountWindow(4), failure_ratio=0.5, minimum_calls=2)
        >>> ticket = core.admit(now=0.0)
        >>> core.record(ticket, now=0.0, failed=True, slow=False)
        >>> core.record(core.admit(now=0.0), now=0.0, failed=True, slow=False)
        >>> core.state, core.admit(now=1.0), core.retry_after(now=1.0)
        (<CircuitState.OPEN: 'open'>, -1, 4.0)
    """

    __slots__ = (
        "_break",
        "_on_transition",
        "_pending",
        "_probes_ok",
        "_probes_out",
        "break_duration",
        "epoch",
        "failure_ratio",
        "half_open_calls",
        "max_break_duration",
        "minimum_calls",
        "open_until",
        "slow_call_ratio",
        "state",
        "window",
    )

    def __init__(
        self,
        window: Window,
        *,
        failure_ratio: float = 0.5,
        minimum_calls: int = 20,
        slow_call_ratio: float = 1.0,
        break_duration: float = 5.0,
        max_break_duration: float = 60.0,
        half_open_calls: int = 1,
        on_transition: Transition | None = None,
    ) -> None:
        self.window = window
        self.failure_ratio = failure_ratio
        self.minimum_calls = minimum_calls
        self.slow_call_ratio = slow_call_ratio
        self.break_duration = break_duration
        self.max_break_duration = max_break_duration
        self.half_open_calls = half_open_calls
        self._on_transition = on_transition
        # State changes not yet reported to on_transition (None while there are none).
        self._pending: list[tuple[CircuitState, CircuitState, float]] | None = None
        self.state: CircuitState = CLOSED
        self.epoch = 0
        self.open_until = 0.0
        self._break = break_duration
        self._probes_out = 0
        self._probes_ok = 0

    # -- admission ---------------------------------------------------------------------

    def admit(self, now: float) -> int:
        """Decide whether a call may run: its ticket, or `REJECTED`.

        Closed and disabled admit every call; the ticket of a closed call is `epoch`, so a
        driver may skip this method while `state is CLOSED` and use `epoch` directly.
        """
        state = self.state
        if state is CLOSED or state is DISABLED:
            return self.epoch
        if state is OPEN:
            if now < self.open_until:
                return REJECTED
            self._move(HALF_OPEN, now)
            state = HALF_OPEN
        ticket = REJECTED  # forced open, or half-open with every probe slot taken
        if state is HALF_OPEN and self._probes_out + self._probes_ok < self.half_open_calls:
            self._probes_out += 1
            ticket = self.epoch
        if self._pending:
            self._report()
            if ticket != self.epoch:
                # A listener moved the state on (force_open, reset, ...): the probe belonged
                # to a state that is gone, and is refused rather than run uncounted.
                ticket = REJECTED
        return ticket

    def retry_after(self, now: float) -> float | None:
        """Seconds until an open breaker admits its next probe; None when not known
        (half-open with every probe slot taken, forced open)."""
        if self.state is OPEN:
            return max(self.open_until - now, 0.0)
        return None

    # -- outcomes ----------------------------------------------------------------------

    def record_success(self, ticket: int, now: float) -> None:
        """A call admitted with `ticket` succeeded and was not slow (the hot path)."""
        if ticket != self.epoch:
            return
        state = self.state
        if state is CLOSED:
            self.window.add_success(now)
        elif state is HALF_OPEN:
            self._probe_succeeded(now)
            if self._pending:
                self._report()

    def record(self, ticket: int, now: float, failed: bool, slow: bool) -> None:
        """A call admitted with `ticket` finished: failed and/or slow, or neither."""
        if ticket != self.epoch:
            return
        state = self.state
        if state is CLOSED:
            # Only a failure or a slow call can raise a ratio: a success never trips.
            if failed or slow:
                self.window.add(now, failed, slow)
                self._maybe_trip(now)
            else:
                self.window.add_success(now)
        elif state is HALF_OPEN:
            if failed or slow:
                self._probes_out -= 1
                self._open(now, self._next_break())
            else:
                self._probe_succeeded(now)
        if self._pending:
            self._report()

    def release(self, ticket: int) -> None:
        """A call admitted with `ticket` ended without an outcome (cancelled, or its result
        could not be classified): count nothing and free its probe slot, if it held one."""
        if ticket == self.epoch and self.state is HALF_OPEN:
            self._probes_out -= 1

    # -- manual control ----------------------------------------------------------------

    def force_open(self, now: float) -> None:
        """Reject every call until `reset()`."""
        self._move(FORCED_OPEN, now)
        if self._pending:
            self._report()

    def disable(self, now: float) -> None:
        """Admit every call and count nothing until `reset()`."""
        self._move(DISABLED, now)
        if self._pending:
            self._report()

    def reset(self, now: float) -> None:
        """Close, forget the window, and start over from the first break duration."""
        self._close(now)
        if self._pending:
            self._report()

    def totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the window at `now`."""
        return self.window.totals(now)

    # -- transitions -------------------------------------------------------------------

    def _maybe_trip(self, now: float) -> None:
        calls, failures, slow = self.window.totals(now)
        if calls < self.minimum_calls:
            return
        if failures / calls >= self.failure_ratio or slow / calls >= self.slow_call_ratio:
            self._open(now, self._break)

    def _probe_succeeded(self, now: float) -> None:
        self._probes_out -= 1
        self._probes_ok += 1
        if self._probes_ok >= self.half_open_calls:
            self._close(now)

    def _next_break(self) -> float:
        return min(self._break * 2.0, self.max_break_duration)

    def _open(self, now: float, duration: float) -> None:
        self._break = duration
        self.open_until = now + duration
        self._move(OPEN, now)

    def _close(self, now: float) -> None:
        self._break = self.break_duration
        self.window.reset()
        self._move(CLOSED, now)

    def _move(self, new: CircuitState, now: float) -> None:
        old = self.state
        self.state = new
        self.epoch += 1
        self._probes_out = 0
        self._probes_ok = 0
        if old is not new and self._on_transition is not None:
            if self._pending is None:
                self._pending = []
            self._pending.append((old, new, now))

    def _report(self) -> None:
        """Tell on_transition of the state changes of the decision just made, in order."""
        pending, self._pending = self._pending, None
        report = self._on_transition
        if pending and report is not None:
            for old, new, now in pending:
                report(old, new, now)
