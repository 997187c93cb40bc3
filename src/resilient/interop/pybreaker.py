"""`PyBreakerPolicy`: an existing `pybreaker.CircuitBreaker`, run correctly around async calls.

`@breaker` on an `async def` does not protect it: pybreaker calls the function, gets a
coroutine back, counts that as a success and returns it; the coroutine fails later, out of
the breaker's sight, so the breaker never opens. pybreaker's own async support needs
Tornado, and its lock is held around the whole call.

`PyBreakerPolicy(breaker)` is a resilient policy around the same breaker: it awaits the call
and reports its real outcome to pybreaker's own state machine (its failure counter,
`fail_max`, `reset_timeout`, `success_threshold`, excluded exceptions, listeners and state
storage), so the breaker opens, half-opens and closes as pybreaker would for a synchronous
call, while the call keeps resilient's faces: the decorator, `.call()`, `async with`, a
`Pipeline` stage, and telemetry. It never holds pybreaker's lock across an await.

Needs the `pybreaker` extra (`pip install 'resilient-patterns[pybreaker]'`).
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, TypeVar

try:
    import pybreaker
except ImportError as exc:  # pragma: no cover - exercised with pybreaker hidden, in a test
    raise ImportError(
        "resilient.interop.pybreaker needs the pybreaker package (1.0 or newer): "
        "pip install 'resilient-patterns[pybreaker]'"
    ) from exc

from resilient._policy import Policy
from resilient._task_local import TaskLocalStack
from resilient._validate import check_bool, check_name, short_repr
from resilient.circuit_breaker._breaker import ATTR_FROM, ATTR_TO, TRANSITION
from resilient.exceptions import CircuitOpenError, RejectedError
from resilient.telemetry._core import CallRecord, PolicyTelemetry, outcome_of

__all__ = ("PyBreakerOpenError", "PyBreakerPolicy")

T = TypeVar("T")

#: pybreaker's state names as resilient's telemetry spells them.
_STATE_NAMES: Final = {
    pybreaker.STATE_CLOSED: "closed",
    pybreaker.STATE_OPEN: "open",
    pybreaker.STATE_HALF_OPEN: "half_open",
}


class PyBreakerOpenError(CircuitOpenError, pybreaker.CircuitBreakerError):
    """Raised by `PyBreakerPolicy` when its pybreaker breaker rejects a call: the breaker is
    open and its `reset_timeout` has not passed, or it is half-open and its trial call is
    still running.

    It is both a `resilient.CircuitOpenError` (so `Retry`, `Fallback` and handlers of
    `RejectedError` treat it like any open breaker) and a `pybreaker.CircuitBreakerError`
    (so code written for pybreaker keeps catching it). `policy` is the policy's name and
    `retry_after` the seconds until the breaker half-opens (`None` while a trial runs).

    Examples:
        >>> issubclass(PyBreakerOpenError, pybreaker.CircuitBreakerError)
        True
    """


class _Trial:
    """Whether a half-open trial call of one breaker is running (shared by every policy
    around that breaker: its half-open state admits one call at a time)."""

    __slots__ = ("running",)

    def __init__(self) -> None:
        self.running = False


_TRIALS: weakref.WeakKeyDictionary[pybreaker.CircuitBreaker, _Trial] = weakref.WeakKeyDictionary()


def _trial_of(breaker: pybreaker.CircuitBreaker) -> _Trial:
    trial = _TRIALS.get(breaker)
    if trial is None:
        trial = _TRIALS[breaker] = _Trial()
    return trial


def _now() -> datetime:
    """The wall clock, as pybreaker reads it for `opened_at` and `reset_timeout`."""
    return datetime.now(UTC)


def _async_with_block() -> None:
    """What pybreaker listeners' `before_call` receive as `func` for an `async with` block
    (the block has no function of its own)."""


#: (the pybreaker state object that admitted the call, whether it is the half-open trial)
_Ticket = tuple[Any, bool]


class PyBreakerPolicy(Policy):
    """Run a `pybreaker.CircuitBreaker` around async calls, as a resilient policy.

    Args:
        breaker: the `pybreaker.CircuitBreaker` to run; it keeps its settings, state,
            storage and listeners, and may still guard synchronous code elsewhere.
        name: names the policy in telemetry and in `PyBreakerOpenError` (default: the
            breaker's `name`, or `"pybreaker"` when it has none).
        telemetry: `False` silences this policy's spans and metrics.

    Each call runs through pybreaker's own state machine, as `breaker.call(fn)` would run a
    synchronous function:

    - **Closed**: the call runs; its failure increments pybreaker's failure counter (and
      notifies the listeners' `failure`), and the failure that reaches `fail_max` opens
      the breaker. A success resets the counter. An exception the breaker excludes
      (`exclude=`) counts as a success, as in pybreaker.
    - **Open**: the call is rejected at once with `PyBreakerOpenError` until
      `reset_timeout` seconds have passed since the breaker opened; then the breaker
      half-opens and the call runs as its trial.
    - **Half-open**: one trial call at a time; calls meanwhile are rejected with
      `PyBreakerOpenError`. The trial's failure reopens the breaker; `success_threshold`
      successful trials close it.

    Differences from pybreaker's synchronous `call`, all on purpose:

    - the call that trips the breaker raises its own error (with a note saying it opened
      the breaker), not a `CircuitBreakerError`, whatever `throw_new_error_on_trip`;
    - cancellation (and any `BaseException` that is not an `Exception`) counts as nothing;
    - a call that ends after the breaker changed state (another call opened it, or it was
      reset) counts as nothing: its outcome belongs to a state that is gone;
    - pybreaker's lock is taken only around its bookkeeping, never across the await, so
      calls run concurrently; a half-open breaker rejects the calls that pybreaker would
      have queued behind its lock.

    Examples:
        ```python
        import pybreaker

        from resilient import Pipeline, Retry, Timeout
        from resilient.interop.pybreaker import PyBreakerPolicy

        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30, name="payments")
        guarded = PyBreakerPolicy(breaker)

        @guarded
        async def charge(order_id: int) -> str: ...

        stack = Pipeline(Retry(), guarded, Timeout(2.0))
        ```
    """

    __slots__ = ("_entries", "_telemetry", "_trial", "breaker", "name")

    def __init__(
        self,
        breaker: pybreaker.CircuitBreaker,
        *,
        name: str | None = None,
        telemetry: bool = True,
    ) -> None:
        if not isinstance(breaker, pybreaker.CircuitBreaker):
            raise ValueError(
                f"breaker must be a pybreaker.CircuitBreaker, got {short_repr(breaker)}"
            )
        self.breaker = breaker
        self.name = check_name(name, breaker.name or "pybreaker")
        self._trial = _trial_of(breaker)
        self._telemetry = PolicyTelemetry(
            "circuit_breaker", self.name, enabled=check_bool("telemetry", telemetry)
        )
        self._entries: TaskLocalStack[tuple[_Ticket, CallRecord | None]] = TaskLocalStack(
            "PyBreakerPolicy"
        )

    def __repr__(self) -> str:
        return f"PyBreakerPolicy({self.breaker!r}, name={self.name!r})"

    @property
    def state(self) -> str:
        """The breaker's state as pybreaker names it: `"closed"`, `"open"` or `"half-open"`.

        Examples:
            >>> PyBreakerPolicy(pybreaker.CircuitBreaker()).state
            'closed'
        """
        return str(self.breaker.current_state)

    # -- admission and settlement, each under pybreaker's lock and never across an await ----

    def _admit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _Ticket:
        """Admit the call now (a ticket) or raise `PyBreakerOpenError`."""
        breaker = self.breaker
        with breaker._lock:
            before = breaker.current_state
            state = breaker.state
            if state.name == pybreaker.STATE_OPEN:
                opened_at = breaker._state_storage.opened_at
                if opened_at is not None:
                    left = (
                        opened_at + timedelta(seconds=breaker.reset_timeout) - _now()
                    ).total_seconds()
                    if left > 0:
                        raise PyBreakerOpenError(
                            f"pybreaker circuit breaker {self.name!r} is open; "
                            f"retry after {left:.3g}s",
                            policy=self.name,
                            retry_after=left,
                        )
                breaker.half_open()
                state = breaker.state
            trial = state.name == pybreaker.STATE_HALF_OPEN
            if trial:
                if self._trial.running:
                    self._transitioned(before, breaker.current_state)
                    raise PyBreakerOpenError(
                        f"pybreaker circuit breaker {self.name!r} is half-open and its trial "
                        "call is still running",
                        policy=self.name,
                    )
                self._trial.running = True
            self._transitioned(before, breaker.current_state)
            try:
                for listener in breaker.listeners:
                    listener.before_call(breaker, fn, *args, **kwargs)
            except BaseException:
                if trial:
                    self._trial.running = False
                raise
        return state, trial

    def _settle(self, ticket: _Ticket, error: BaseException | None) -> None:
        """Report the call's outcome to the state that admitted it, if it is still current."""
        admitted_by, trial = ticket
        breaker = self.breaker
        with breaker._lock:
            try:
                if error is not None and not isinstance(error, Exception):
                    return  # cancellation says nothing about the dependency
                before = breaker.current_state
                state = breaker.state
                if state is not admitted_by:
                    return
                if error is None:
                    state._handle_success()
                else:
                    try:
                        state._handle_error(error, reraise=False)
                    except pybreaker.CircuitBreakerError:
                        pass  # the failure tripped the breaker: the call's own error goes on
                    except Exception as raised:
                        if raised is not error:  # a listener's error
                            raise
                after = breaker.current_state
                self._transitioned(before, after)
                if error is not None and after == pybreaker.STATE_OPEN != before:
                    error.add_note(
                        f"resilient: this failure opened pybreaker circuit breaker {self.name!r}"
                    )
            finally:
                if trial:
                    self._trial.running = False

    def _transitioned(self, before: str, after: str) -> None:
        if before != after and self._telemetry.enabled:
            self._telemetry.emit(
                TRANSITION,
                {
                    ATTR_FROM: _STATE_NAMES.get(before, before),
                    ATTR_TO: _STATE_NAMES.get(after, after),
                },
            )

    def _enter(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        record: CallRecord | None,
    ) -> _Ticket:
        if record is None:
            return self._admit(fn, args, kwargs)
        try:
            return self._admit(fn, args, kwargs)
        except RejectedError as rejected:
            record.end("rejected", rejected)
            raise
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise

    def _exit(
        self, ticket: _Ticket, error: BaseException | None, record: CallRecord | None
    ) -> None:
        if record is None:
            self._settle(ticket, error)
            return
        try:
            self._settle(ticket, error)
        except BaseException as raised:
            record.end(outcome_of(raised), raised)
            raise
        record.end("success" if error is None else outcome_of(error), error)

    # -- the faces -------------------------------------------------------------------------

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        record = self._telemetry.start()
        ticket = self._enter(fn, args, kwargs, record)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._exit(ticket, exc, record)
            raise
        self._exit(ticket, None, record)
        return result

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        run = self._run

        async def guarded(*args: Any, **kwargs: Any) -> T:
            return await run(fn, args, kwargs)

        return guarded

    async def __aenter__(self) -> PyBreakerPolicy:
        record = self._telemetry.start()
        ticket = self._enter(_async_with_block, (), {}, record)
        self._entries.push((ticket, record))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ticket, record = self._entries.pop()
        self._exit(ticket, exc, record)
