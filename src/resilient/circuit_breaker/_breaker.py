"""CircuitBreaker: the async driver around the pure state machine in `_state`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar

from resilient._admission import WAIT, AdmissionPolicy, AwaitedSettlement
from resilient._backend import run_to_the_end
from resilient._clock import Clock
from resilient._on import On, exception_filter
from resilient._policy import given_arguments
from resilient._task_local import TaskLocalStack
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_optional_callable,
    check_optional_positive,
    check_positive,
    check_positive_int,
    check_ratio,
    short_repr,
)
from resilient._window import check_window
from resilient.circuit_breaker._state import (
    CLOSED,
    DISABLED,
    FORCED_OPEN,
    OPEN,
    REJECTED,
    BreakerCore,
    CircuitState,
)
from resilient.circuit_breaker._windows import MAX_SIZE, CountWindow, TimeWindow, Window
from resilient.exceptions import CircuitOpenError
from resilient.storage._base import BreakerSettings, BreakerStore, BreakerView
from resilient.telemetry._core import CallRecord, PolicyTelemetry
from resilient.telemetry._spec import Effect, EventSpec, Instrument

__all__ = ("CircuitBreaker", "CircuitBreakerMetrics")

T = TypeVar("T")

ATTR_FROM: Final = "resilient.circuit_breaker.from"
ATTR_TO: Final = "resilient.circuit_breaker.to"
ATTR_STATE: Final = "resilient.circuit_breaker.state"

# -- what CircuitBreaker reports (telemetry as data; see resilient.telemetry) ----------------

TRANSITIONS: Final = Instrument(
    "resilient.circuit_breaker.transitions",
    "counter",
    "{transition}",
    "Circuit breaker state changes, by from and to state.",
)
STATE: Final = Instrument(
    "resilient.circuit_breaker.state",
    "up_down_counter",
    "{breaker}",
    "1 for the state each circuit breaker is in, 0 for the others.",
)
#: The breaker moved from one state to another (a span event on the current span).
TRANSITION: Final = EventSpec(
    "resilient.circuit_breaker.transition",
    effects=(Effect(TRANSITIONS, 1, ((ATTR_FROM, ATTR_FROM), (ATTR_TO, ATTR_TO))),),
)
#: The state gauge: the breaker left one state, entered another.
STATE_LEFT: Final = EventSpec(
    "resilient.circuit_breaker.state_left",
    span_event=False,
    effects=(Effect(STATE, -1, ((ATTR_STATE, ATTR_STATE),)),),
)
STATE_ENTERED: Final = EventSpec(
    "resilient.circuit_breaker.state_entered",
    span_event=False,
    effects=(Effect(STATE, 1, ((ATTR_STATE, ATTR_STATE),)),),
)

# The attributes of the state gauge and of a transition depend on the states alone: built
# once per process, shared by every breaker.
_STATE_ATTRS: Final = {s: {ATTR_STATE: s.value} for s in CircuitState}
_TRANSITION_ATTRS: Final = {
    (old, new): {ATTR_FROM: old.value, ATTR_TO: new.value}
    for old in CircuitState
    for new in CircuitState
    if old is not new
}

_logger = logging.getLogger("resilient.circuit_breaker")


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitBreakerMetrics:
    """A snapshot of a breaker's state and of the outcomes in its current window.

    Attributes:
        state: the breaker's state when the snapshot was taken.
        calls: calls counted in the window.
        failures: of those, the failures.
        slow_calls: of those, the slow calls (failed or not).
        failure_ratio: `failures / calls`, 0.0 when the window is empty.
        slow_call_ratio: `slow_calls / calls`, 0.0 when the window is empty.

    Examples:
        ```python
        m = breaker.metrics()
        print(f"{m.state}: {m.failures}/{m.calls} failed ({m.failure_ratio:.0%})")
        ```
    """

    state: CircuitState
    calls: int
    failures: int
    slow_calls: int
    failure_ratio: float
    slow_call_ratio: float


class CircuitBreaker(AdmissionPolicy):
    """Stop calling a dependency that keeps failing, and probe it until it recovers.

    While **closed**, calls run and their outcomes are counted in a window: the last
    `window` seconds, or the last `window_calls` calls. Once the window holds at least
    `minimum_calls` calls, a failure that brings `failures / calls` to `failure_ratio` or
    more (or a slow call that brings `slow calls / calls` to `slow_call_ratio` or more)
    **opens** the breaker: every call is rejected at once with `CircuitOpenError` for
    `break_duration` seconds. The first call after the break moves it to **half-open** and
    runs as a probe; exactly `half_open_calls` probes run and everyone else is rejected.
    When all of them succeed the breaker closes with an empty window; when one fails (or
    is slow) it opens again for twice the previous break, at most `max_break_duration`.

    Args:
        name: names the breaker in spans and metrics (default `"circuit_breaker"`).
        failure_ratio: the failure ratio that opens the breaker, in (0, 1]. Default 0.5.
        minimum_calls: calls the window must hold before the breaker may open (>= 1).
            Default 20. With `window_calls`, at most `window_calls` are needed.
        window: the time-based window, in seconds (at least 0.001, i.e. 1 ms). Default
            30.0. Outcomes leave it in steps of a tenth of the window.
        window_calls: when set, count the last `window_calls` calls instead of a time
            window: a whole number from 1 to 1,000,000 (the window keeps two bits for each
            call, allocated up front: 25 KB for 100,000 calls). Default None.
        break_duration: how long the breaker stays open the first time, in seconds (> 0).
            Default 5.0.
        max_break_duration: the cap on the break, which doubles on each failed probe, in
            seconds (>= `break_duration`). Default 60.0.
        half_open_calls: probes admitted in half-open (>= 1); all must succeed to close.
            Default 1.
        slow_call_duration: a call that takes this many seconds or more is slow, even if
            it succeeded (> 0). Default None: no slow-call detection.
        slow_call_ratio: the ratio of slow calls that opens the breaker, in (0, 1].
            Default 1.0. Used only with `slow_call_duration`.
        on: which exceptions are failures: an `Exception` subclass, a tuple of them, or a
            predicate `(exception) -> bool`. Default `Exception`. Other exceptions still
            propagate but count as successes (the dependency answered). Cancellation is
            never counted.
        on_result: `(result) -> bool`; True marks a returned result as a failure (for
            example an HTTP 503 response). Default None. Not used by `async with`.
        on_state_change: `(old, new) -> None`, called after every state change with two
            `CircuitState` values. Exceptions it raises are logged and swallowed.
        store: a store with the `BreakerStore` capability (such as `RedisStore`) to share
            this breaker's state with every process that uses a breaker of the same `name`
            on it: one state, one window, one count of half-open probes. Default None:
            the state lives in this process. See "Shared breakers" below.
        clock: the time source (default: the monotonic clock).
        telemetry: `False` silences this breaker's spans and metrics.

    Raises:
        ValueError: an argument is out of range, naming the field and the value.

    A breaker protects one dependency: build it once and share it between every task
    that calls that dependency. It holds no lock across calls; its decisions are made
    between awaits, so they are exact under any number of concurrent calls.

    **Shared breakers.** With `store=RedisStore(...)`, every admission is one round trip
    to the store and every outcome one more, sent before the call returns (shielded from
    cancellation and bounded by the store's `timeout`, so an outcome is never lost and a
    Timeout around the breaker takes effect once it has arrived): a circuit opened by
    failures in one process rejects the next call in every other.
    When the store cannot be reached, its `on_unavailable` decides: `"allow"` and
    `"local"` let this process's own breaker decide (it counts the outcomes it sees
    while the store is away), `"deny"` raises `StorageUnavailableError`. `force_open()`,
    `disable()` and `reset()` act on this process's breaker only: a forced or disabled
    breaker does not ask the store until `reset()`. Shared breakers run on asyncio, as
    `RedisStore` does.

    Examples:
        ```python
        breaker = CircuitBreaker("payments", failure_ratio=0.5, break_duration=10)

        @breaker
        async def charge(order_id: int) -> Receipt: ...

        try:
            receipt = await charge(42)
        except CircuitOpenError as exc:
            print("payments is down, try again in", exc.retry_after, "s")

        async with breaker:
            await payments_client.refund(42)
        ```
    """

    __slots__ = (
        "_core",
        "_entries",
        "_given",
        "_is_failure",
        "_now",
        "_on_result",
        "_on_state_change",
        "_plain",
        "_reported_state",
        "_slow_after",
        "_telemetry",
        "name",
    )

    def __new__(cls, *args: Any, **kwargs: Any) -> CircuitBreaker:
        # A breaker with a store is the shared kind: its hooks await the store, and the
        # breaker in this process keeps its own hooks free of any check for it.
        if cls is CircuitBreaker and kwargs.get("store") is not None:
            cls = _SharedCircuitBreaker
        return super().__new__(cls)

    def __init__(
        self,
        name: str | None = None,
        *,
        failure_ratio: float = 0.5,
        minimum_calls: int = 20,
        window: float = 30.0,
        window_calls: int | None = None,
        break_duration: float = 5.0,
        max_break_duration: float = 60.0,
        half_open_calls: int = 1,
        slow_call_duration: float | None = None,
        slow_call_ratio: float = 1.0,
        on: On = Exception,
        on_result: Callable[[Any], bool] | None = None,
        on_state_change: Callable[[CircuitState, CircuitState], object] | None = None,
        store: BreakerStore | None = None,
        clock: Clock | None = None,
        telemetry: bool = True,
    ) -> None:
        self._given = given_arguments(CircuitBreaker.__init__, locals())
        self.name = check_name(name, "circuit_breaker")
        failure_ratio = check_ratio("failure_ratio", failure_ratio, allow_zero=False)
        minimum_calls = check_positive_int("minimum_calls", minimum_calls)
        window = check_window("window", window)
        if window_calls is not None:
            window_calls = check_positive_int("window_calls", window_calls, maximum=MAX_SIZE)
        break_duration = check_positive("break_duration", break_duration)
        max_break_duration = check_positive("max_break_duration", max_break_duration)
        if max_break_duration < break_duration:
            raise ValueError(
                f"max_break_duration must be >= break_duration ({break_duration!r}), "
                f"got {short_repr(max_break_duration)}"
            )
        half_open_calls = check_positive_int("half_open_calls", half_open_calls)
        self._slow_after = check_optional_positive("slow_call_duration", slow_call_duration)
        slow_call_ratio = check_ratio("slow_call_ratio", slow_call_ratio, allow_zero=False)
        self._is_failure = exception_filter(on)
        self._on_result = check_optional_callable("on_result", on_result)
        self._on_state_change = check_optional_callable("on_state_change", on_state_change)
        if store is not None and not isinstance(store, BreakerStore):
            raise ValueError(
                "store must be None or a store that can share breaker state (a "
                f"resilient.storage.BreakerStore such as RedisStore), got {short_repr(store)}"
            )
        if store is not None and not isinstance(self, _SharedCircuitBreaker):
            raise ValueError(
                f"store is not supported on a subclass of CircuitBreaker ({type(self).__name__})"
            )
        clock = check_clock(clock)
        check_bool("telemetry", telemetry)
        # No result predicate and no slow-call timing: a success needs one clock read.
        self._plain = self._on_result is None and self._slow_after is None

        self._now = clock.now
        counted: Window
        if window_calls is None:
            counted = TimeWindow(window)
        else:
            counted = CountWindow(window_calls)
            # As in Resilience4j: a count window can never hold more than its size.
            minimum_calls = min(minimum_calls, window_calls)
        self._core = BreakerCore(
            counted,
            failure_ratio=failure_ratio,
            minimum_calls=minimum_calls,
            slow_call_ratio=slow_call_ratio,
            break_duration=break_duration,
            max_break_duration=max_break_duration,
            half_open_calls=half_open_calls,
            on_transition=self._transitioned,
        )
        self._entries: TaskLocalStack[tuple[Any, CallRecord | None]] = TaskLocalStack(
            "CircuitBreaker"
        )
        self._telemetry = PolicyTelemetry("circuit_breaker", self.name, enabled=telemetry)
        self._reported_state: CircuitState | None = None
        self._report_state(CLOSED)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._core.state.value!r})"

    # -- public surface ----------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state: `"closed"`, `"open"`, `"half_open"`, `"forced_open"` or
        `"disabled"` (a `CircuitState`, which compares equal to those strings).

        An open breaker whose break is over still reads `"open"` until the next call
        arrives and becomes the first probe.

        Examples:
            >>> CircuitBreaker().state == "closed"
            True
        """
        return self._core.state

    def force_open(self) -> None:
        """Reject every call with `CircuitOpenError` (`retry_after` None) until `reset()`.

        Examples:
            >>> breaker = CircuitBreaker()
            >>> breaker.force_open()
            >>> breaker.state
            <CircuitState.FORCED_OPEN: 'forced_open'>
        """
        self._core.force_open(self._now())

    def disable(self) -> None:
        """Admit every call and count nothing until `reset()` (or `force_open()`).

        Examples:
            >>> breaker = CircuitBreaker()
            >>> breaker.disable()
            >>> breaker.state == "disabled"
            True
        """
        self._core.disable(self._now())

    def reset(self) -> None:
        """Close the breaker, empty its window and start again from `break_duration`.

        Calls still running from before the reset are not counted.

        Examples:
            >>> breaker = CircuitBreaker()
            >>> breaker.force_open()
            >>> breaker.reset()
            >>> breaker.state == "closed"
            True
        """
        self._core.reset(self._now())

    def metrics(self) -> CircuitBreakerMetrics:
        """A snapshot of the state and of the outcomes in the current window.

        The window keeps what tripped the breaker while it is open or half-open, and is
        emptied when the breaker closes again.

        Examples:
            >>> CircuitBreaker().metrics().calls
            0
        """
        core = self._core
        return _metrics(core.state, *core.totals(self._now()))

    # -- the engine --------------------------------------------------------------------

    # A ticket is the breaker's epoch when the call was admitted, so that a call that ends
    # after the state moved on is not counted against a state it never belonged to; with
    # slow-call detection it is (epoch, start time).

    def _admit(self) -> Any:
        core = self._core
        epoch = core.epoch if core.state is CLOSED else self._admit_outside_closed()
        return epoch if self._slow_after is None else (epoch, self._now())

    def _settle(self, ticket: Any, error: BaseException | None) -> None:
        if error is not None:
            self._settle_error(ticket, error)
        elif self._slow_after is None:
            self._core.record_success(ticket, self._now())
        else:
            self._count(ticket, False)

    def _settle_result(self, ticket: Any, result: object) -> bool:
        if self._plain:
            self._core.record_success(ticket, self._now())
            return False
        on_result = self._on_result
        failed = False
        if on_result is not None:
            try:
                failed = bool(on_result(result))
            except BaseException:
                # The result could not be classified: count nothing, free any probe slot.
                self._core.release(_epoch(ticket))
                raise
        self._count(ticket, failed)
        return failed

    def _admit_outside_closed(self) -> int:
        """Admission outside the closed state: an epoch, or raise `CircuitOpenError`."""
        now = self._now()
        core = self._core
        ticket = core.admit(now)
        if ticket != REJECTED:
            return ticket
        state = core.state
        retry_after = core.retry_after(now)
        if state is OPEN:
            reason = f"is open; retry after {retry_after:.3g}s"
        elif state is CircuitState.HALF_OPEN:
            reason = "is half-open and every probe slot is taken"
        else:
            reason = "is forced open"
        raise CircuitOpenError(
            f"circuit breaker {self.name!r} {reason}", policy=self.name, retry_after=retry_after
        )

    def _count(self, ticket: Any, failed: bool) -> None:
        """Count the call in the window, as failed or not, and slow or not."""
        now = self._now()
        if self._slow_after is None:
            self._core.record(ticket, now, failed, False)
        else:
            epoch, started = ticket
            self._core.record(epoch, now, failed, now - started >= self._slow_after)

    def _settle_error(self, ticket: Any, exc: BaseException) -> None:
        if not isinstance(exc, Exception):
            # Cancellation (or KeyboardInterrupt, SystemExit, ...) says nothing about the
            # dependency: count nothing, free any probe slot.
            self._core.release(_epoch(ticket))
            return
        try:
            failed = self._is_failure(exc)
        except BaseException:
            self._core.release(_epoch(ticket))
            raise
        self._count(ticket, failed)

    # -- telemetry ---------------------------------------------------------------------

    def _transitioned(self, old: CircuitState, new: CircuitState, now: float) -> None:
        telemetry = self._telemetry
        if telemetry.enabled:
            telemetry.emit(TRANSITION, _TRANSITION_ATTRS[old, new])
            self._report_state(new)
        callback = self._on_state_change
        if callback is not None:
            try:
                callback(old, new)
            except Exception:
                _logger.exception(
                    "on_state_change of circuit breaker %r raised; the breaker went on", self.name
                )

    def _report_state(self, state: CircuitState) -> None:
        """Move the state gauge: -1 on the state left, +1 on the state entered."""
        telemetry = self._telemetry
        if not telemetry.metrics_ready():
            return
        previous = self._reported_state
        if previous is not None:
            telemetry.emit(STATE_LEFT, _STATE_ATTRS[previous])
        telemetry.emit(STATE_ENTERED, _STATE_ATTRS[state])
        self._reported_state = state


def _epoch(ticket: Any) -> int:
    """The epoch a ticket was admitted in."""
    return ticket if isinstance(ticket, int) else int(ticket[0])


class _SharedCircuitBreaker(AwaitedSettlement, CircuitBreaker):
    """A `CircuitBreaker` whose state lives in a `BreakerStore`.

    Tickets are `(True, epoch, started)` for a call the store admitted, and
    `(False, ticket)` for one the breaker in this process admitted (forced or disabled by
    hand, or the store away), which is then settled by the plain breaker's hooks.
    """

    __slots__ = ("_counts", "_remote", "_settings", "_shared_state", "_store")

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        core = self._core
        window_calls = kwargs.get("window_calls")
        self._store: BreakerStore = kwargs["store"]
        self._settings = BreakerSettings(
            float(core.failure_ratio),
            core.minimum_calls,
            float(core.slow_call_ratio),
            float(core.break_duration),
            float(core.max_break_duration),
            core.half_open_calls,
            float(kwargs.get("window", 30.0)),
            0 if window_calls is None else window_calls,
        )
        #: The shared state as last seen, and whether the store answered last time.
        self._shared_state: CircuitState = CLOSED
        self._remote = True
        self._counts = (0, 0, 0)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value!r}, shared)"

    @property
    def state(self) -> CircuitState:
        """The state: this process's when forced open, disabled or the store is away,
        otherwise the shared state as of this process's last step on the store."""
        local = self._core.state
        if local is FORCED_OPEN or local is DISABLED or not self._remote:
            return local
        return self._shared_state

    def metrics(self) -> CircuitBreakerMetrics:
        """A snapshot of the state and of the shared window as of the last outcome this
        process sent (this process's own window while the store is away)."""
        if not self._remote:
            return super().metrics()
        return _metrics(self.state, *self._counts)

    # -- the hooks ----------------------------------------------------------------------

    def _admit(self) -> Any:
        local = self._core.state
        if local is FORCED_OPEN or local is DISABLED:
            return (False, super()._admit())
        return WAIT

    async def _wait(self, record: CallRecord) -> Any:
        view = await self._store.breaker_admit(self.name, self._settings)
        if view is None:
            self._remote = False
            return (False, super()._admit())
        self._remote = True
        self._observe(view)
        if not view.admitted:
            if view.state == OPEN:
                reason = f"is open; retry after {view.retry_after or 0.0:.3g}s"
            else:
                reason = "is half-open and every probe slot is taken"
            raise CircuitOpenError(
                f"circuit breaker {self.name!r} {reason}",
                policy=self.name,
                retry_after=view.retry_after,
            )
        return (True, view.epoch, 0.0 if self._slow_after is None else self._now())

    async def _settle_awaited(self, ticket: Any, error: BaseException | None) -> None:
        if not ticket[0]:
            super()._settle(ticket[1], error)
            return
        if error is None:
            await self._send(ticket, False)
            return
        if not isinstance(error, Exception):
            await self._release(ticket)
            return
        try:
            failed = self._is_failure(error)
        except BaseException:
            await self._release(ticket)
            raise
        await self._send(ticket, failed)

    async def _settle_result_awaited(self, ticket: Any, result: object) -> bool:
        if not ticket[0]:
            return super()._settle_result(ticket[1], result)
        failed = False
        if self._on_result is not None:
            try:
                failed = bool(self._on_result(result))
            except BaseException:
                await self._release(ticket)
                raise
        await self._send(ticket, failed)
        return failed

    # -- talking to the store -----------------------------------------------------------
    #
    # An outcome is sent before the call returns (one round trip, bounded by the store's
    # timeout), shielded from cancellation: a Timeout that expires meanwhile takes effect
    # once it has arrived, so no outcome is lost and none is left in flight at shutdown.

    async def _send(self, ticket: tuple[bool, int, float], failed: bool) -> None:
        _, epoch, started = ticket
        slow = self._slow_after is not None and self._now() - started >= self._slow_after
        await run_to_the_end(self._record(epoch, failed, slow))

    async def _record(self, epoch: int, failed: bool, slow: bool) -> None:
        try:
            view = await self._store.breaker_record(
                self.name, self._settings, epoch=epoch, failed=failed, slow=slow
            )
        except Exception:
            # Not an outage (those come back as None) but a fault of the store itself: the
            # call's own outcome stands, and the log says what went wrong.
            _logger.exception(
                "circuit breaker %r could not send an outcome to its store", self.name
            )
            return
        if view is not None:
            if view.counts is not None:
                self._counts = view.counts
            self._observe(view)

    async def _release(self, ticket: tuple[bool, int, float]) -> None:
        await run_to_the_end(self._store.breaker_release(self.name, epoch=ticket[1]))

    def _observe(self, view: BreakerView) -> None:
        """The store's answer: report a change of the shared state as a transition."""
        new = CircuitState(view.state)
        old = self._shared_state
        if new is not old:
            self._shared_state = new
            self._transitioned(old, new, self._now())


def _metrics(state: CircuitState, calls: int, failures: int, slow: int) -> CircuitBreakerMetrics:
    """The snapshot `metrics()` returns, from a state and its window's three counts."""
    return CircuitBreakerMetrics(
        state=state,
        calls=calls,
        failures=failures,
        slow_calls=slow,
        failure_ratio=failures / calls if calls else 0.0,
        slow_call_ratio=slow / calls if calls else 0.0,
    )
