"""`TenacityBackoff`: tenacity's wait and stop strategies inside a `Retry`.

For code that already says how to retry in tenacity's terms: `Retry(backoff=
TenacityBackoff(wait_exponential(max=10) + wait_random(0, 1), stop=stop_after_delay(30)))`
waits and stops exactly as `@tenacity.retry(wait=..., stop=...)` would, while the call keeps
everything else of `Retry`: exception filters and `on_result`, the retry budget, the enclosing
`Timeout`'s deadline, `max_duration`, the block form, its place in a `Pipeline`, statistics and
telemetry, and asyncio or trio alike.

Every strategy works, tenacity's own (`wait_fixed`, `wait_random`, `wait_incrementing`,
`wait_exponential`, `wait_random_exponential`, `wait_exponential_jitter`, `wait_chain`,
`wait_exception`, `wait_combine`, sums with `+`; `stop_after_attempt`, `stop_after_delay`,
`stop_before_delay`, `stop_when_event_set`, `stop_never`, and `|` / `&`) and any callable
written for tenacity: each one is handed a real `tenacity.RetryCallState` describing the
call, on the policy's clock.

Needs the `tenacity` extra (`pip install 'resilient-patterns[tenacity]'`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

try:
    import tenacity
except ImportError as exc:  # pragma: no cover - exercised with tenacity hidden, in a test
    raise ImportError(
        "resilient.interop.tenacity needs the tenacity package (8.2 or newer): "
        "pip install 'resilient-patterns[tenacity]'"
    ) from exc

from resilient._validate import short_repr
from resilient.retry._backoff import Backoff

__all__ = ("TenacityBackoff",)

#: What a tenacity wait strategy is: `wait_base` or any `(RetryCallState) -> float`.
Wait = Callable[[tenacity.RetryCallState], float]
#: What a tenacity stop strategy is: `stop_base` or any `(RetryCallState) -> bool`.
Stop = Callable[[tenacity.RetryCallState], bool]

#: How deep `_describe` follows combined strategies before it writes "...".
_DEPTH: Final = 3


class TenacityBackoff(Backoff):
    """A `Backoff` that waits with a tenacity `wait` strategy and stops with its `stop`.

    Args:
        wait: a tenacity wait strategy (`tenacity.wait_exponential()`, sums of them with
            `+`, `wait_chain(...)`, `wait_exception(...)`, ...) or any callable
            `(RetryCallState) -> float` written for tenacity; it returns the seconds to
            sleep before the next attempt (a negative number counts as 0).
        stop: a tenacity stop strategy (`stop_after_delay(30)`, `stop_before_delay(30)`,
            `stop_after_attempt(5) | stop_when_event_set(event)`, ...) or any callable
            `(RetryCallState) -> bool`; True stops retrying (default `None`: only the
            `Retry`'s own limits stop it).

    Before each retry, `Retry` builds a `tenacity.RetryCallState` for the call, as tenacity
    would at that point: `attempt_number` (attempts made so far), `outcome` (a completed
    `tenacity.Future` holding the last attempt's exception, or its result when `on_result`
    rejected it), `start_time` and `outcome_timestamp` on the policy's clock (so
    `seconds_since_start` is the time since the call began, and a `FakeClock` drives
    it in tests), `idle_for` (seconds slept so far) and, for the stop strategy,
    `upcoming_sleep` (the delay the wait strategy just chose). It calls `wait`, then `stop`,
    in tenacity's order. When `stop` says stop, retrying ends: the last error is re-raised
    with a note naming the stop strategy (or the last result is returned), and the call
    counts as `stopped` in `Retry.statistics` and its telemetry outcome.

    The `Retry`'s own limits still apply on top: `attempts` (raise it when `stop` is what
    should end retrying, as `Retry(attempts=1_000, ...)`), the retry budget, `max_duration`
    and the enclosing deadline. tenacity's `retry=` predicates map to `Retry(on=...)`
    and `on_result`, its `before_sleep` and statistics to resilient's telemetry.

    A `TenacityBackoff` holds no per-call state (it builds a fresh `RetryCallState` each
    time), so one instance can serve any number of policies and concurrent calls, as long
    as the strategies themselves keep no state (tenacity's do not).

    Examples:
        ```python
        from tenacity import stop_after_delay, wait_exponential, wait_random

        from resilient import Retry
        from resilient.interop.tenacity import TenacityBackoff

        retry = Retry(
            attempts=100,
            on=ConnectionError,
            backoff=TenacityBackoff(
                wait_exponential(multiplier=0.5, max=10) + wait_random(0, 1),
                stop=stop_after_delay(30),
            ),
        )
        ```
    """

    __slots__ = ("_retrying", "stop", "wait")

    wait: Wait
    stop: Stop | None
    _retrying: tenacity.AsyncRetrying

    def __init__(self, wait: Wait, *, stop: Stop | None = None) -> None:
        # Backoff's own fields (initial, multiplier, ...) mean nothing here and stay unset.
        if not callable(wait):
            raise ValueError(
                "wait must be a tenacity wait strategy or a callable (RetryCallState) -> "
                f"float, got {short_repr(wait)}"
            )
        if stop is not None and not callable(stop):
            raise ValueError(
                "stop must be a tenacity stop strategy, a callable (RetryCallState) -> bool, "
                f"or None, got {short_repr(stop)}"
            )
        set_ = object.__setattr__
        set_(self, "wait", wait)
        set_(self, "stop", stop)
        # The `retry_object` of the states handed to the strategies, for a strategy that
        # looks at it as it would in tenacity.
        set_(
            self,
            "_retrying",
            tenacity.AsyncRetrying(
                wait=wait, stop=tenacity.stop_never if stop is None else stop, reraise=True
            ),
        )

    def __repr__(self) -> str:
        stop = "" if self.stop is None else f", stop={_describe(self.stop)}"
        return f"TenacityBackoff({_describe(self.wait)}{stop})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TenacityBackoff):
            return NotImplemented
        return self.wait is other.wait and self.stop is other.stop

    def __hash__(self) -> int:
        return hash((id(self.wait), id(self.stop)))

    def base(self, retry: int) -> float:
        """The delay before retry `retry` (1-based): tenacity's strategies do not separate
        a base from its jitter, so this is `delay(retry)`.

        Examples:
            >>> from tenacity import wait_incrementing
            >>> TenacityBackoff(wait_incrementing(start=1, increment=2)).base(3)
            5.0
        """
        return self.delay(retry)

    def delay(self, retry: int, previous: float | None = None) -> float:
        """The wait strategy's delay before retry number `retry` (1-based), for a call
        with no outcome and no time passed (`Retry` gives the strategy the whole state
        instead; `wait_exception` needs it).

        Examples:
            >>> from tenacity import wait_exponential
            >>> TenacityBackoff(wait_exponential(multiplier=1, max=5)).delay(3)
            4.0
        """
        state = self._state(retry, None, None, 0.0, 0.0)
        state.outcome = None
        state.outcome_timestamp = None
        return _seconds(self.wait(state), self.wait)

    def _state(
        self,
        attempts: int,
        error: BaseException | None,
        result: Any,
        elapsed: float,
        slept: float,
    ) -> tenacity.RetryCallState:
        state = tenacity.RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        # On the policy's clock: seconds_since_start is outcome_timestamp - start_time.
        state.start_time = 0.0
        state.outcome_timestamp = elapsed
        state.attempt_number = attempts
        state.idle_for = slept
        outcome = tenacity.Future(attempts)
        if error is None:
            outcome.set_result(result)
        else:
            outcome.set_exception(error)
        state.outcome = outcome
        return state

    def _plan_retry(
        self,
        attempts: int,
        previous: float | None,
        error: BaseException | None,
        result: Any,
        elapsed: float,
        slept: float,
        /,
    ) -> float | str:
        """`Retry`'s hook (see `resilient.retry._backoff.Planner`): wait, then stop."""
        state = self._state(attempts, error, result, elapsed, slept)
        delay = _seconds(self.wait(state), self.wait)
        stop = self.stop
        if stop is None:
            return delay
        state.upcoming_sleep = delay
        if stop(state):
            return (
                f": its stop strategy {_describe(stop)} said stop "
                f"({elapsed:.3g}s after the first attempt began)"
            )
        return delay


def _seconds(value: Any, wait: object) -> float:
    """A wait strategy's answer as seconds to sleep; negative ones as 0, as tenacity does."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if math.isnan(seconds) or seconds == math.inf:
        raise ValueError(
            f"the wait strategy {_describe(wait)} returned {short_repr(value)}, "
            "not a finite number of seconds"
        )
    return seconds if seconds > 0.0 else 0.0


def _describe(strategy: object, depth: int = 0) -> str:
    """A short, readable name for a tenacity strategy: its class and its settings
    (`stop_after_delay(max_delay=30)`), combinations with their parts."""
    if depth >= _DEPTH:
        return "..."
    kind = type(strategy)
    if not kind.__module__.startswith("tenacity"):
        return getattr(strategy, "__qualname__", None) or short_repr(strategy)
    if strategy is tenacity.stop_never:
        return "stop_never"
    fields = getattr(strategy, "__dict__", {})
    parts: list[str] = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            parts.extend(_describe(part, depth + 1) for part in value)
        elif isinstance(value, int | float | str | bool):
            parts.append(f"{name}={value!r}")
        else:
            parts.append(f"{name}={_describe(value, depth + 1)}")
    return f"{kind.__name__}({', '.join(parts)})"
