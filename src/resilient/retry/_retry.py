"""Retry: run a call again when it fails transiently, within a budget and the deadline.

The first attempt runs inline with as little work as possible (the happy path); everything
about retrying lives in `_retry_after`, reached only once an attempt has failed. Both the
decorator and the block form (`attempts()`) take their decisions from `_plan`, so the two
drivers cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar

from resilient._clock import Clock
from resilient._deadline import time_left
from resilient._on import On, exception_filter
from resilient._policy import Policy
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_optional_callable,
    check_optional_positive,
    check_positive_int,
    short_repr,
)
from resilient.retry._backoff import Backoff, Planner
from resilient.retry._budget import OWN_BUDGET, OwnBudget, RetryBudget, check_budget
from resilient.telemetry._core import QUIET, CallRecord, PolicyTelemetry, outcome_of
from resilient.telemetry._spec import Effect, EventSpec, Instrument

__all__ = ("Attempt", "AttemptIterator", "Retry", "RetryStatistics")

T = TypeVar("T")

ATTR_ATTEMPT: Final = "resilient.retry.attempt"
SPAN_ATTEMPT: Final = "resilient.retry.attempt"
ATTR_DELAY: Final = "resilient.retry.delay"
ATTR_REASON: Final = "resilient.retry.reason"

# -- what Retry reports (telemetry as data; see resilient.telemetry) -------------------------

ATTEMPTS: Final = Instrument(
    "resilient.retry.attempts",
    "counter",
    "{attempt}",
    "Attempts made by Retry, the first one included.",
)
#: An attempt starts (its own child span, made current while it runs).
ATTEMPT_STARTED: Final = EventSpec(SPAN_ATTEMPT, span_event=False, effects=(Effect(ATTEMPTS),))
#: A retry is scheduled: `resilient.retry.attempt` (the next one) and its delay.
SCHEDULED: Final = EventSpec("resilient.retry.scheduled")
#: The retry budget refused the next attempt.
BUDGET_EXHAUSTED: Final = EventSpec("resilient.retry.budget_exhausted")
#: Retrying stopped: `resilient.retry.reason` says why (exhausted, deadline, max_duration,
#: or stopped: a backoff that plans retries itself said stop).
GAVE_UP: Final = EventSpec("resilient.retry.gave_up")


_DEFAULT_BACKOFF: Final = Backoff()


@dataclass(frozen=True, slots=True)
class RetryStatistics:
    """A snapshot of what one `Retry` has done since it was built.

    Attributes:
        calls: calls started (each makes a first attempt).
        attempts: attempts started, first attempts included.
        retries: attempts after the first (`attempts - calls`).
        successes: calls that returned a result `on_result` accepted.
        failures: calls that ended in an error, or with a result `on_result` rejected
            when retrying stopped; the counters below break some of them down.
        cancelled: calls that ended by cancellation (never counted as failures).
        exhausted: failures after the last of `attempts` attempts.
        budget_exhausted: failures because the retry budget refused a retry.
        deadline_give_ups: failures because the next retry would not start before the
            enclosing `Timeout`'s deadline.
        max_duration_give_ups: failures because the next retry would start after
            `max_duration`.
        stopped: failures because the backoff's own stop rule ended retrying (a
            `resilient.interop.tenacity.TenacityBackoff` with a `stop` strategy).

    A call still running counts in `calls` and in none of the outcomes, so
    `calls == successes + failures + cancelled + <calls in flight>`.

    Examples:
        >>> Retry().statistics.calls
        0
    """

    calls: int
    attempts: int
    retries: int
    successes: int
    failures: int
    cancelled: int
    exhausted: int
    budget_exhausted: int
    deadline_give_ups: int
    max_duration_give_ups: int
    stopped: int = 0


class _Call:
    """The state of one call once it needs a retry (never allocated on the happy path)."""

    __slots__ = ("attempt", "previous_delay", "record", "slept", "spent_at", "started")

    def __init__(self, started: float, record: CallRecord) -> None:
        self.started = started
        self.record = record
        self.attempt = 1
        self.previous_delay: float | None = None
        self.spent_at: float | None = None
        self.slept = 0.0  # the delays slept so far, in seconds


class Retry(Policy):
    """Run a failed call again, with backoff, a retry budget and respect for deadlines.

    Args:
        attempts: attempts in total, the first call included (>= 1; default 3).
        backoff: the delays between attempts (default `Backoff()`: 0.1 s doubling to
            10 s, full jitter).
        on: what to retry: an `Exception` subclass, a tuple of them, or a predicate
            `(exception) -> bool` (default `Exception`). Cancellation is never retried.
            A `RejectedError` (open breaker, full bulkhead, rate limited) is retried only
            when `on` names `RejectedError` or a subclass of it; a predicate decides alone.
        on_result: `(result) -> bool`, True to retry a returned result (default `None`:
            every result is final). When attempts run out, the last result is returned.
        budget: the `RetryBudget` retries draw from (default: a new `RetryBudget()` for
            this policy: 20 % of calls plus 10 retries/s over 10 s); `None` switches the
            budget off.
        max_duration: no retry starts later than this many seconds after the first
            attempt began (default `None`: no limit).
        name: names the policy in telemetry and in notes (default `"retry"`).
        clock: the time source for delays and durations (default: the monotonic clock).
        telemetry: `False` silences this policy's spans and metrics.

    When retrying stops, the last exception is re-raised as it was, with a note
    (`BaseException.add_note`) saying why: attempts ran out, the budget refused, the
    backoff's stop rule said stop (tenacity's `stop_*` strategies, through
    `resilient.interop.tenacity.TenacityBackoff`), or the next sleep would not end before
    `max_duration` or the enclosing `Timeout`'s deadline.
    A sleep never runs past either: the policy gives up before starting it.

    Examples:
        ```python
        retry = Retry(attempts=4, on=(ConnectionError, TimeoutError), name="users")

        @retry
        async def get_user(user_id: int) -> dict: ...

        user = await retry.call(get_user_uncached, 42)

        async for attempt in retry.attempts():
            with attempt:
                await send_heartbeat()
        ```
    """

    __slots__ = (
        "_budget",
        "_budget_exhausted",
        "_calls",
        "_cancelled",
        "_clock",
        "_count_call",
        "_deadline_give_ups",
        "_exhausted",
        "_failures",
        "_max_duration_give_ups",
        "_now",
        "_planner",
        "_retries",
        "_should_retry",
        "_stopped",
        "_successes",
        "_telemetry",
        "backoff",
        "max_attempts",
        "max_duration",
        "name",
        "on",
        "on_result",
    )

    def __init__(
        self,
        attempts: int = 3,
        *,
        backoff: Backoff = _DEFAULT_BACKOFF,
        on: On = Exception,
        on_result: Callable[[Any], bool] | None = None,
        budget: RetryBudget | OwnBudget | None = OWN_BUDGET,
        max_duration: float | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        telemetry: bool = True,
    ) -> None:
        self.max_attempts = check_positive_int("attempts", attempts)
        if not isinstance(backoff, Backoff):
            raise ValueError(f"backoff must be a Backoff, got {short_repr(backoff)}")
        self.backoff = backoff
        # A backoff that plans retries itself (sees the outcome, may stop) is bound once
        # here, so a plain Backoff's path through _plan pays nothing for the hook.
        self._planner: Planner | None = getattr(backoff, "_plan_retry", None)
        self._should_retry = exception_filter(on, retry_rejected=False)
        self.on = on
        self.on_result = check_optional_callable(
            "on_result", on_result, "a callable (result) -> bool"
        )
        self._budget = budget = check_budget(budget)
        if budget is not None:
            budget._counted_by_retry = True  # a Hedge sharing it leaves the counting to us
        # The budget's call counter, bound once: it runs on every call's happy path.
        self._count_call = None if budget is None else budget.call_counter()
        self.max_duration = check_optional_positive("max_duration", max_duration)
        self.name = check_name(name, "retry")
        self._clock = check_clock(clock)
        self._now = self._clock.now
        self._telemetry = PolicyTelemetry(
            "retry", self.name, enabled=check_bool("telemetry", telemetry)
        )
        self._calls = self._retries = self._successes = self._failures = self._cancelled = 0
        self._exhausted = self._budget_exhausted = 0
        self._deadline_give_ups = self._max_duration_give_ups = self._stopped = 0

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self.max_attempts!r}, backoff={self.backoff!r}, "
            f"budget={self._budget!r}, max_duration={self.max_duration!r}, name={self.name!r})"
        )

    @property
    def budget(self) -> RetryBudget | None:
        """The `RetryBudget` this policy draws retries from, or `None` when it has none."""
        return self._budget

    @property
    def statistics(self) -> RetryStatistics:
        """A consistent snapshot of the calls, attempts and outcomes so far.

        Examples:
            >>> Retry(attempts=2).statistics.retries
            0
        """
        return RetryStatistics(
            calls=self._calls,
            attempts=self._calls + self._retries,
            retries=self._retries,
            successes=self._successes,
            failures=self._failures,
            cancelled=self._cancelled,
            exhausted=self._exhausted,
            budget_exhausted=self._budget_exhausted,
            deadline_give_ups=self._deadline_give_ups,
            max_duration_give_ups=self._max_duration_give_ups,
            stopped=self._stopped,
        )

    # -- the decorator and .call() -------------------------------------------------------

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        retry = self
        start, now, count_call = self._telemetry.start, self._now, self._count_call
        run_recorded, retry_after = self._run_recorded, self._retry_after

        async def retried(*args: Any, **kwargs: Any) -> T:
            record = start()
            if record is not None:
                return await run_recorded(fn, args, kwargs, record)
            # The happy path, written out: _start_call without the _Call it would allocate.
            started = now()
            if count_call is not None:
                count_call(started)
            retry._calls += 1
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                error = exc
            except BaseException:
                retry._cancelled += 1
                raise
            else:
                if retry.on_result is None:
                    retry._successes += 1
                    return result
                call = _Call(started, QUIET)
                if not retry._retry_result(call, result):
                    retry._finish(call, "success")
                    return result
                return await retry_after(call, fn, args, kwargs, None, result)
            # Outside the except block, so that the retries do not run "while handling" it.
            return await retry_after(_Call(started, QUIET), fn, args, kwargs, error, None)

        return retried

    async def _run_recorded(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        record: CallRecord,
    ) -> T:
        call = self._start_call(record)
        error, result = await self._attempt(call, fn, args, kwargs)
        if error is None and not self._retry_result(call, result):
            self._finish(call, "success")
            succeeded: T = result
            return succeeded
        return await self._retry_after(call, fn, args, kwargs, error, result)

    # -- the engine both drivers (the decorator and the block form) use ---------------------
    #
    # _start_call (_start_block_call), _retry_error and _retry_result, _plan, _sleep and
    # _finish: a call begins,
    # each outcome is judged, the next attempt is planned and slept for, and the call ends.
    # The block form drives a call through these and nothing else of Retry.

    def _start_call(self, record: CallRecord) -> _Call:
        """Begin one call: count it, and in the budget."""
        call = _Call(self._now(), record)
        if self._count_call is not None:
            self._count_call(call.started)
        self._calls += 1
        return call

    def _start_block_call(self) -> _Call:
        """Begin a call of the block form. Its record is detached: a caller may `break` out
        of the loop, and nothing of the call may stay attached to its context then."""
        return self._start_call(self._telemetry.start_detached() or QUIET)

    def _retry_result(self, call: _Call, result: object) -> bool:
        """True when `on_result` asks to retry `result`. If it raises, the call ends as a
        failure and its exception propagates."""
        on_result = self.on_result
        if on_result is None:
            return False
        try:
            return bool(on_result(result))
        except BaseException as exc:
            self._finish(call, outcome_of(exc), exc)
            raise

    def _retry_error(self, call: _Call, error: Exception) -> bool:
        """True when `on` asks to retry `error`. If the predicate raises, the call ends as a
        failure and the predicate's exception propagates (chained to `error`)."""
        try:
            return self._should_retry(error)
        except BaseException as exc:
            self._finish(call, outcome_of(exc), exc)
            raise

    async def _retry_after(
        self,
        call: _Call,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        error: Exception | None,
        result: Any,
    ) -> T:
        """The slow path: attempt 1 has failed (`error`) or returned a rejected `result`."""
        while True:
            if error is not None and not self._retry_error(call, error):
                self._finish(call, "failure", error)
                raise error
            delay = self._plan(call, error, result=result)
            if delay is None:
                if error is not None:
                    raise error
                final: T = result
                return final
            await self._sleep(call, delay)
            error, result = await self._attempt(call, fn, args, kwargs)
            if error is None and not self._retry_result(call, result):
                self._finish(call, "success")
                succeeded: T = result
                return succeeded

    async def _attempt(
        self,
        call: _Call,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Exception | None, Any]:
        """Run attempt number `call.attempt`, in its own span when recording."""
        record = call.record
        span, token = _start_attempt(record, call.attempt)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            _end_attempt(record, span, token, exc)
            return exc, None
        except BaseException:
            _end_attempt(record, span, token, None)
            self._finish(call, "cancelled")
            raise
        _end_attempt(record, span, token, None)
        return None, result

    async def _sleep(self, call: _Call, delay: float) -> None:
        """Sleep before the next attempt, then count it; cancellation refunds the budget."""
        try:
            await self._clock.sleep(delay)
        except BaseException:
            budget, spent_at = self._budget, call.spent_at
            if budget is not None and spent_at is not None:
                budget.refund(spent_at, self._now())
            self._finish(call, "cancelled")
            raise
        call.attempt += 1
        call.slept += delay
        self._retries += 1

    # -- the decision, shared by both drivers --------------------------------------------

    def _plan(
        self,
        call: _Call,
        error: Exception | None,
        min_delay: float | None = None,
        *,
        result: Any = None,
    ) -> float | None:
        """Decide whether attempt `call.attempt + 1` happens: its delay, or None to stop.

        `error` is what the last attempt raised, or None when `on_result` rejected its
        `result` (a backoff that plans retries itself sees either). `min_delay` is a floor
        on the delay that the callee itself asked for (an HTTP `Retry-After`): the retry
        never starts earlier, and when the floor does not fit before `max_duration` or the
        deadline, retrying stops at once.

        On None the call is finished (statistics, telemetry) and `error`, when there is
        one, carries a note saying why retrying stopped.
        """
        done = call.attempt
        if done >= self.max_attempts:
            self._give_up(call, "exhausted", error, "")
            return None
        now = self._now()
        planned: float | None = None
        planner = self._planner
        if planner is not None:
            try:
                plan = planner(
                    done, call.previous_delay, error, result, now - call.started, call.slept
                )
            except BaseException as exc:
                self._finish(call, outcome_of(exc), exc)
                raise
            if isinstance(plan, str):
                self._give_up(call, "stopped", error, plan)
                return None
            planned = plan
        budget = self._budget
        if budget is not None and not budget.try_spend(now):
            self._give_up(
                call,
                "budget_exhausted",
                error,
                ": the retry budget is exhausted (retries may add "
                f"{budget.ratio:.0%} of calls plus {budget.min_per_second:g}/s "
                f"over {budget.window:g}s)",
            )
            return None
        delay = self.backoff.delay(done, call.previous_delay) if planned is None else planned
        if min_delay is not None and min_delay > delay:
            delay = min_delay
        why = ""
        max_duration = self.max_duration
        if max_duration is not None and now - call.started + delay >= max_duration:
            outcome = "max_duration"
            why = (
                f": the next retry, in {delay:.3g}s, would start after max_duration "
                f"({max_duration:g}s) had passed"
            )
        else:
            left = time_left()
            if left is not None and delay >= left:
                outcome = "deadline"
                why = (
                    f": the next retry, in {delay:.3g}s, would not start before the "
                    f"enclosing deadline ({max(left, 0.0):.3g}s left)"
                )
        if why:
            if budget is not None:
                budget.refund(now, now)
            self._give_up(call, outcome, error, why)
            return None
        call.previous_delay = delay
        call.spent_at = now
        call.record.event(SCHEDULED, {ATTR_ATTEMPT: done + 1, ATTR_DELAY: delay})
        return delay

    def _give_up(self, call: _Call, outcome: str, error: Exception | None, why: str) -> None:
        done = call.attempt
        if outcome == "budget_exhausted":
            call.record.event(BUDGET_EXHAUSTED, {ATTR_ATTEMPT: done})
        else:
            call.record.event(GAVE_UP, {ATTR_ATTEMPT: done, ATTR_REASON: outcome})
        if error is not None:
            plural = "attempt" if done == 1 else "attempts"
            error.add_note(f"resilient: Retry {self.name!r} gave up after {done} {plural}{why}")
        self._finish(call, outcome, error)

    def _finish(self, call: _Call, outcome: str, error: BaseException | None = None) -> None:
        """Count the call's outcome and close its telemetry record."""
        if outcome == "success":
            self._successes += 1
        elif outcome == "cancelled":
            self._cancelled += 1
        else:
            self._failures += 1
            if outcome == "exhausted":
                self._exhausted += 1
            elif outcome == "budget_exhausted":
                self._budget_exhausted += 1
            elif outcome == "deadline":
                self._deadline_give_ups += 1
            elif outcome == "max_duration":
                self._max_duration_give_ups += 1
            elif outcome == "stopped":
                self._stopped += 1
        record, call.record = call.record, QUIET  # a call is ended once
        if call.attempt > 1:
            # One attempt is what every call makes; only a retried call says how many it
            # took (each attribute set on a live span costs the SDK a lock).
            record.set(ATTR_ATTEMPT, call.attempt)
        record.end(outcome, error)

    # -- the block form ------------------------------------------------------------------

    def attempts(self) -> AttemptIterator:
        """Retry a block of code: `async for attempt in retry.attempts(): with attempt: ...`.

        Each `with attempt:` block is one attempt. An exception that `on` matches is
        captured there and the iterator sleeps before the next attempt, under the same
        budget, `max_duration` and deadline rules as the decorator; when retrying stops it
        re-raises the last exception (with its note). After a successful block the loop
        ends. Set `attempt.result` inside the block to have `on_result` judge it.

        Put everything that belongs to the attempt inside the `with` block: code after
        it still runs when the attempt failed and will be retried.

        Examples:
            ```python
            async for attempt in Retry(attempts=5).attempts():
                with attempt:
                    response = await client.get("/health")
                    attempt.result = response.status_code
            ```
        """
        return AttemptIterator(self)


_NEW, _RUNNING, _DONE = range(3)


class AttemptIterator:
    """The async iterator `Retry.attempts()` returns; one per retried block."""

    __slots__ = ("_call", "_current", "_error", "_result", "_retry", "_state")

    def __init__(self, retry: Retry) -> None:
        self._retry = retry
        self._state = _NEW
        self._call: _Call | None = None
        self._current: Attempt | None = None
        self._error: Exception | None = None
        self._result: Any = None

    def __aiter__(self) -> AttemptIterator:
        return self

    async def __anext__(self) -> Attempt:
        retry = self._retry
        if self._state == _NEW:
            # Detached: a caller may `break` out of the loop, and nothing of this call may
            # stay attached to its context then. Attempt spans name this span as parent.
            self._call = retry._start_block_call()
            self._state = _RUNNING
            self._current = Attempt(self, 1)
            return self._current
        call, current = self._call, self._current
        if self._state == _DONE or call is None or current is None:
            raise StopAsyncIteration
        if not current._exited:
            self._state = _DONE
            retry._finish(call, "failure")
            raise RuntimeError("each attempt from Retry.attempts() must be used as `with attempt:`")
        error, self._error = self._error, None
        delay = retry._plan(call, error, result=current._result)
        if delay is None:
            self._state = _DONE
            if error is not None:
                raise error
            raise StopAsyncIteration
        await retry._sleep(call, delay)
        self._current = Attempt(self, call.attempt)
        return self._current

    def _exit(self, attempt: Attempt, exc: BaseException | None) -> bool:
        """Judge the attempt that just ended; True swallows `exc` to retry it."""
        call, retry = self._call, self._retry
        assert call is not None
        if exc is not None and not isinstance(exc, Exception):
            self._state = _DONE
            retry._finish(call, "cancelled")
            return False
        try:
            if exc is None:
                again = attempt._has_result and retry._retry_result(call, attempt._result)
            else:
                again = retry._retry_error(call, exc)
        except BaseException:
            self._state = _DONE  # the predicate's own error has ended the call
            raise
        if again:
            self._error = exc  # None when on_result asked for another attempt
            return exc is not None
        self._state = _DONE
        if exc is None:
            retry._finish(call, "success")
        else:
            retry._finish(call, "failure", exc)
        return False


class Attempt:
    """One attempt of `Retry.attempts()`: use it as `with attempt:` around the work.

    Attributes:
        number: which attempt this is, 1-based.

    Examples:
        ```python
        async for attempt in retry.attempts():
            with attempt:
                attempt.result = await poll_job(job_id)
        ```
    """

    __slots__ = (
        "_exited",
        "_has_result",
        "_iterator",
        "_record",
        "_result",
        "_span",
        "_token",
        "number",
    )

    def __init__(self, iterator: AttemptIterator, number: int) -> None:
        self._iterator = iterator
        self.number = number
        self._has_result = False
        self._result: Any = None
        self._exited = False
        self._record: CallRecord = QUIET
        self._span: Any = None
        self._token: object = None

    def __repr__(self) -> str:
        return f"<Attempt {self.number} of {self._iterator._retry.name!r}>"

    @property
    def result(self) -> Any:
        """The result set for this attempt (`None` until set); `on_result` judges it."""
        return self._result

    @result.setter
    def result(self, value: Any) -> None:
        self._result = value
        self._has_result = True

    def __enter__(self) -> Attempt:
        call = self._iterator._call
        if call is not None:
            self._record = call.record
            self._span, self._token = _start_attempt(call.record, call.attempt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._exited = True
        _end_attempt(
            self._record, self._span, self._token, exc if isinstance(exc, Exception) else None
        )
        self._record, self._span, self._token = QUIET, None, None
        return self._iterator._exit(self, exc)


def _start_attempt(record: CallRecord, number: int) -> tuple[Any, object]:
    """Report the attempt and open its span, current while it runs, so that the spans of
    the call nest under it."""
    attributes = {ATTR_ATTEMPT: number}
    record.event(ATTEMPT_STARTED, attributes)
    return record.child(SPAN_ATTEMPT, attributes)


def _end_attempt(record: CallRecord, span: Any, token: object, error: Exception | None) -> None:
    record.end_child(span, token, error)
