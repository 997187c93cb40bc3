"""Hedge: when a call is slower than most, start another and take the first good answer.

At the hedge delay without an outcome (or at once, when an attempt fails) another attempt
starts, paid from the retry budget, up to `max_hedges` of them. The first acceptable
outcome wins; every other attempt is cancelled and awaited before the call returns, so
nothing outlives it.

Two engines drive a call, with the same rules:

- on asyncio (`_AsyncioRace`), the primary runs inline in the caller's task and the hedges
  are tasks started by a timer, so a call answered before the delay costs a timer link
  and nothing else;
- elsewhere (trio, or a clock that cannot schedule timers), every attempt is a task of an
  anyio task group and the caller's task waits for an outcome or the delay (`_race`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from contextvars import Context, ContextVar, copy_context
from typing import Any, Final, TypeVar

import anyio

from resilient._backend import OneShotEvent, asyncio_loop, current_task, one_shot_event
from resilient._clock import Clock, TimedScope, TimerHandle, is_native, schedule
from resilient._deadline import time_left
from resilient._on import On, exception_filter
from resilient._policy import Policy
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_non_negative,
    check_optional_callable,
    check_positive_int,
    short_repr,
)
from resilient.hedge._quantile import QuantileEstimator
from resilient.retry._budget import OWN_BUDGET, OwnBudget, RetryBudget, check_budget
from resilient.telemetry._core import QUIET, CallRecord, PolicyTelemetry, outcome_of
from resilient.telemetry._spec import Effect, EventSpec, Instrument

__all__ = ("Hedge", "hedge_attempt")

T = TypeVar("T")

ATTR_ATTEMPT: Final = "resilient.hedge.attempt"
ATTR_DELAY: Final = "resilient.hedge.delay"
ATTR_REASON: Final = "resilient.hedge.reason"
ATTR_WINNER: Final = "resilient.hedge.winner"

# -- what Hedge reports (telemetry as data; see resilient.telemetry) -------------------------

HEDGES: Final = Instrument(
    "resilient.hedge.hedges", "counter", "{attempt}", "Extra attempts started by Hedge."
)
#: A hedge started: `resilient.hedge.attempt` (1 for the first hedge),
#: `resilient.hedge.delay` seconds after the primary.
STARTED: Final = EventSpec("resilient.hedge.started", effects=(Effect(HEDGES),))
#: An attempt's outcome was taken: `resilient.hedge.attempt` (0 is the primary).
WON: Final = EventSpec("resilient.hedge.won")
#: The retry budget refused a hedge.
BUDGET_EXHAUSTED: Final = EventSpec("resilient.hedge.budget_exhausted")
#: No more hedges for this call: `resilient.hedge.reason` says why ("deadline").
STOPPED: Final = EventSpec("resilient.hedge.stopped")

#: Which attempt of a hedged call the current task runs (0: the primary, 1 and up: hedges).
_attempt: ContextVar[int] = ContextVar("resilient_hedge_attempt", default=0)


def hedge_attempt() -> int:
    """Which attempt of a hedged call the running code belongs to: 0 for the primary (and
    outside any `Hedge`), 1 for the first hedge, and so on: what an HTTP client reports
    as the resend count of a request."""
    return _attempt.get()


class _Race:
    """The attempts of one hedged call, as the caller's task and the attempts see them."""

    __slots__ = (
        "error",
        "failed",
        "hurry",
        "latency",
        "primary_error",
        "primary_result",
        "running",
        "value",
        "wake",
        "winner",
    )

    def __init__(self) -> None:
        self.winner: int | None = None
        self.value: Any = None
        self.error = False
        self.latency: float | None = None
        self.primary_error: Exception | None = None
        self.primary_result: Any = None
        self.failed = 0
        self.running = 0
        #: An attempt failed: start the next hedge now, not at the delay.
        self.hurry = False
        self.wake: OneShotEvent | None = None

    def _wake(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def win(self, index: int, value: Any, error: bool, latency: float | None) -> None:
        if self.winner is None:
            self.winner = index
            self.value = value
            self.error = error
            self.latency = latency
        self._wake()

    def fail(self, index: int, error: Exception | None, result: Any) -> None:
        if index == 0:
            self.primary_error = error
            self.primary_result = result
        self.failed += 1
        self.hurry = True
        self._wake()


class Hedge(Policy):
    """Start another attempt when a call is slower than most; take the first good answer.

    Args:
        delay: seconds to wait for an outcome before starting the next attempt (a finite
            number >= 0), or `None` (the default) to follow the `quantile` of recent
            successful latencies, never below `min_delay`. With `None`, calls are not
            hedged until 20 successes have been measured. The quantile is estimated from
            the last 1,000 to 2,000 successes, on the low side (a lower bound at about
            97.7 % confidence), so that a tail about as large as `1 - quantile` does not
            put the delay in the tail.
        max_hedges: the most extra attempts per call (a whole number >= 1; default 1).
        quantile: with `delay=None`, the latency quantile to hedge at, in (0, 1) (default
            0.95: about one call in twenty is hedged).
        min_delay: the shortest adaptive delay, in seconds (>= 0; default 0.005, 5 ms).
        on: what makes an attempt's outcome unacceptable, so that the others may still
            win: an `Exception` subclass, a tuple of them, or a predicate
            `(exception) -> bool` (default `Exception`). An attempt that fails this way
            also starts the next hedge at once. Any other exception is an answer and wins.
            A `RejectedError` (an open breaker, a full bulkhead) is an answer unless `on`
            names it. Cancellation never counts.
        on_result: `(result) -> bool`, True when a returned result is unacceptable (a
            503 response); default `None`: every result is acceptable.
        budget: the `RetryBudget` each hedge is paid from (default: a new `RetryBudget()`
            for this policy); `None` switches the budget off. Pass one budget to a
            `Retry` and a `Hedge` to share it: retries and hedges together then stay
            within its ratio of the calls, which the `Retry` counts.
        name: names the policy in telemetry and notes (default `"hedge"`).
        clock: the time source of the delays and latencies (default: the monotonic clock).
        telemetry: `False` silences this policy's spans and metrics.

    Only for calls that are safe to run twice (reads, idempotent writes). The first
    acceptable outcome wins; the other attempts are cancelled, and awaited before the
    call returns. When every attempt fails, the primary's outcome is what the call gives
    (its exception is re-raised with a note). Inside a `Timeout`, no hedge starts once the
    deadline has passed, and the deadline cancels every attempt.

    Examples:
        ```python
        hedge = Hedge(max_hedges=2, on=(ConnectionError, TimeoutError))

        @hedge
        async def get_profile(user_id: int) -> dict: ...

        fixed = Hedge(0.05)  # a second attempt after 50 ms without an answer
        shared = RetryBudget()
        policy = Pipeline(Timeout(2.0), Retry(budget=shared), Hedge(budget=shared))
        ```
    """

    __slots__ = (
        "_budget",
        "_clock",
        "_due_line",
        "_estimator",
        "_failed",
        "_now",
        "_telemetry",
        "_timed",
        "delay",
        "max_hedges",
        "min_delay",
        "name",
        "on",
        "on_result",
        "quantile",
    )

    def __init__(
        self,
        delay: float | None = None,
        *,
        max_hedges: int = 1,
        quantile: float = 0.95,
        min_delay: float = 0.005,
        on: On = Exception,
        on_result: Callable[[Any], bool] | None = None,
        budget: RetryBudget | OwnBudget | None = OWN_BUDGET,
        name: str | None = None,
        clock: Clock | None = None,
        telemetry: bool = True,
    ) -> None:
        self.delay = None if delay is None else check_non_negative("delay", delay)
        self.max_hedges = check_positive_int("max_hedges", max_hedges)
        if (
            not isinstance(quantile, int | float)
            or isinstance(quantile, bool)
            or not 0.0 < quantile < 1.0
        ):
            raise ValueError(f"quantile must be a number in (0, 1), got {short_repr(quantile)}")
        self.quantile = float(quantile)
        self.min_delay = check_non_negative("min_delay", min_delay)
        self._failed = exception_filter(on, retry_rejected=False)
        self.on = on
        self.on_result = check_optional_callable(
            "on_result", on_result, "a callable (result) -> bool"
        )
        self._budget = budget = check_budget(budget)
        self.name = check_name(name, "hedge")
        self._clock = check_clock(clock)
        self._now = self._clock.now
        self._telemetry = PolicyTelemetry(
            "hedge", self.name, enabled=check_bool("telemetry", telemetry)
        )
        # A lower confidence bound of the quantile (two standard deviations of its rank):
        # when the slow calls are about `1 - quantile` of all, the exact sample quantile
        # falls in the tail half of the time, and a delay there hedges nothing.
        self._estimator = QuantileEstimator(self.quantile, spread=2.0)
        # asyncio runs the primary inline in the caller's task and needs timers on the
        # clock: the loop's own, or the clock's (FakeClock). Other clocks use task groups.
        self._timed = is_native(self._clock) or hasattr(self._clock, "call_at")
        self._due_line: _DueLine | None = None

    def __repr__(self) -> str:
        return (
            f"Hedge({self.delay!r}, max_hedges={self.max_hedges!r}, quantile={self.quantile!r}, "
            f"min_delay={self.min_delay!r}, budget={self._budget!r}, name={self.name!r})"
        )

    @property
    def budget(self) -> RetryBudget | None:
        """The `RetryBudget` hedges are paid from, or `None` when there is none."""
        return self._budget

    @property
    def current_delay(self) -> float | None:
        """The delay the next call would hedge after, in seconds; `None` while an adaptive
        hedge has not yet measured enough successes to hedge at all.

        Examples:
            >>> Hedge(0.2).current_delay
            0.2
            >>> Hedge().current_delay is None
            True
        """
        delay = self.delay
        if delay is not None:
            return delay
        estimate = self._estimator.estimate()
        if estimate is None:
            return None
        return estimate if estimate > self.min_delay else self.min_delay

    # -- the engine ----------------------------------------------------------------------

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        record = self._telemetry.start() or QUIET
        started = self._now()
        budget = self._budget
        if budget is not None and not budget._counted_by_retry:
            budget.record_call(started)
        delay = self.current_delay
        if delay is None:
            return await self._unhedged(record, started, fn, args, kwargs)
        try:
            loop = asyncio_loop()
            race: _Race
            if loop is not None and self._timed:
                native = _AsyncioRace(self, loop, record, delay, fn, args, kwargs)
                await native.run()
                race = native
            else:
                race = await self._race(record, delay, fn, args, kwargs)
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise
        if race.winner is not None:
            record.event(WON, {ATTR_ATTEMPT: race.winner})
            if race.winner:
                record.set(ATTR_WINNER, race.winner)
            if race.error:
                record.end("failure", race.value)
                raise race.value
            if race.latency is not None and self.delay is None:
                self._estimator.add(race.latency)
            record.end("success")
            won: T = race.value
            return won
        # Every attempt failed: the primary's outcome stands.
        attempts = race.failed
        error = race.primary_error
        if error is None:
            record.end("failure")
            result: T = race.primary_result
            return result
        error.add_note(
            f"resilient: Hedge {self.name!r}: all {attempts} attempts failed; "
            "this is the first attempt's error"
        )
        record.end("failure", error)
        raise error

    async def _unhedged(
        self,
        record: CallRecord,
        started: float,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """A call with no hedge (an adaptive delay still measuring): run it inline."""
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise
        on_result = self.on_result
        if on_result is None or not on_result(result):
            self._estimator.add(self._now() - started)
            record.end("success")
        else:
            record.end("failure")
        return result

    async def _race(
        self,
        record: CallRecord,
        delay: float,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> _Race:
        race = _Race()
        now, clock, budget = self._now, self._clock, self._budget
        hedges, max_hedges = 0, self.max_hedges
        async with anyio.create_task_group() as tasks:
            race.running = 1
            tasks.start_soon(self._attempt, race, 0, fn, args, kwargs)
            began = now()
            next_at = began + delay
            hedging = True
            while race.winner is None:
                wait: float | None = None
                if hedging and hedges < max_hedges:
                    at = now()
                    if race.hurry or race.running == 0 or at >= next_at:
                        race.hurry = False
                        left = time_left()
                        if left is not None and left <= 0:
                            hedging = False
                            record.event(STOPPED, {ATTR_REASON: "deadline"})
                            continue
                        if budget is not None and not budget.try_spend(at):
                            hedging = False
                            record.event(BUDGET_EXHAUSTED, {ATTR_ATTEMPT: hedges + 1})
                            continue
                        hedges += 1
                        record.event(STARTED, {ATTR_ATTEMPT: hedges, ATTR_DELAY: at - began})
                        race.running += 1
                        tasks.start_soon(self._attempt, race, hedges, fn, args, kwargs)
                        next_at = at + delay
                        continue
                    wait = next_at - at
                elif race.running == 0:
                    break  # every attempt failed and no other may start
                event = race.wake = one_shot_event()
                if wait is None:
                    await event.wait()
                else:
                    with TimedScope(clock, wait):
                        await event.wait()
                race.wake = None
            tasks.cancel_scope.cancel()
        return race

    async def _attempt(
        self,
        race: _Race,
        index: int,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """One attempt, in a task of its own: report its outcome to `race`."""
        if index:
            _attempt.set(index)  # this task's own context
        now = self._now
        started = now()
        try:
            try:
                result = await fn(*args, **kwargs)
            finally:
                race.running -= 1
        except Exception as exc:
            if race.winner is not None:
                return
            try:
                failed = self._failed(exc)
            except Exception as judged:
                race.win(index, judged, True, None)
                return
            if failed:
                race.fail(index, exc, None)
            else:
                race.win(index, exc, True, None)
            return
        if race.winner is not None:
            return
        on_result = self.on_result
        if on_result is not None:
            try:
                rejected = on_result(result)
            except Exception as judged:
                race.win(index, judged, True, None)
                return
            if rejected:
                race.fail(index, None, result)
                return
        race.win(index, result, False, now() - started)


_PRIMARY, _WAITING = 0, 1


class _Due:
    """A race waiting for its next hedge in a `_DueLine`: a link of the line, and the handle
    the race cancels (`cancel()` unlinks it wherever it stands)."""

    __slots__ = ("after", "before", "due", "line", "race")

    def __init__(self, line: _DueLine, race: _AsyncioRace | None, due: float) -> None:
        self.line = line
        self.race = race
        self.due = due
        self.before: _Due | None = None
        self.after: _Due | None = None

    def cancel(self) -> None:
        if self.race is None:
            return
        self.race = None
        before, after = self.before, self.after
        assert before is not None  # linked: the line's head stands before every link
        before.after = after
        if after is None:
            self.line.tail = before
        else:
            after.before = before


class _DueLine:
    """The races of one `Hedge` on one asyncio loop waiting for their next hedge, in the
    order they are due, under one loop timer.

    With a fixed delay every race is due `delay` after it was armed, so they arrive in
    order: one timer armed for the oldest replaces a loop timer per call (a heap push,
    and a cancelled handle left on the heap by every call answered in time). A race
    answered in time unlinks itself in constant time. An adaptive delay that shrinks may
    put a race due before the one ahead of it: it gets a timer of its own then.
    """

    __slots__ = ("armed_at", "head", "loop", "tail")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.head = _Due(self, None, -math.inf)
        self.tail = self.head
        self.armed_at = math.inf

    def push(self, race: _AsyncioRace, delay: float) -> _Due:
        loop = self.loop
        due = loop.time() + delay
        link = _Due(self, race, due)
        tail = self.tail
        link.before = tail
        tail.after = link
        self.tail = link
        if due < self.armed_at:
            self.armed_at = due
            loop.call_at(due, self._fire)
        return link

    def _fire(self) -> None:
        now = self.loop.time()
        self.armed_at = math.inf
        head = self.head
        link = head.after
        while link is not None and link.due <= now:
            race = link.race
            link.cancel()
            if race is not None:
                race._due()
            link = head.after
        if link is not None and link.due < self.armed_at:
            self.armed_at = link.due
            self.loop.call_at(link.due, self._fire)


class _AsyncioRace(_Race):
    """One hedged call on asyncio: the primary runs inline in the caller's task, and the
    hedges are tasks started by a timer on the clock.

    A primary that answers before the delay costs a timer armed and called off: no task,
    no event loop round trip. A hedge that wins while the primary runs interrupts it the
    way `asyncio.timeout` does, by cancelling the caller's task and taking the
    cancellation back (`uncancel`) when it arrives; a cancellation from anyone else
    propagates. Once the primary has failed, the caller waits on a future the attempts
    resolve.
    """

    __slots__ = (
        "args",
        "began",
        "ctx",
        "delay",
        "fn",
        "future",
        "hedge",
        "hedges",
        "interrupted",
        "kwargs",
        "loop",
        "phase",
        "record",
        "stopped",
        "task",
        "tasks",
        "timer",
    )

    def __init__(
        self,
        hedge: Hedge,
        loop: asyncio.AbstractEventLoop,
        record: CallRecord,
        delay: float,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__()
        task = current_task(loop)
        if task is None:
            raise RuntimeError("Hedge must be used inside an asyncio task")
        self.hedge = hedge
        self.loop = loop
        self.task = task
        self.record = record
        self.delay = delay
        self.fn, self.args, self.kwargs = fn, args, kwargs
        # The caller's context: hedges run in copies of it, and read its deadline. Taken
        # here, since the timer that starts a hedge runs in whichever context armed it.
        self.ctx: Context = copy_context()
        self.future: asyncio.Future[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.timer: TimerHandle | None = None
        self.hedges = 0
        self.phase = _PRIMARY
        self.interrupted = False
        self.stopped = False
        self.began = 0.0

    # -- timers and hedges (called from the loop, outside the caller's task) ---------------

    def _arm(self, delay: float) -> None:
        hedge = self.hedge
        clock = hedge._clock
        if delay <= 0.0:
            # No delay: the next hedge starts as soon as the loop runs again (a clock
            # timer due now would start it before this returns).
            self.timer = self.loop.call_soon(self._due)
        elif is_native(clock):
            line = hedge._due_line
            if line is None or line.loop is not self.loop:
                line = hedge._due_line = _DueLine(self.loop)
            self.timer = line.push(self, delay)
        else:
            self.timer = schedule(clock, clock.now() + delay, self._due)

    def _disarm(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    def _due(self) -> None:
        self.timer = None
        if self.winner is None:
            self._launch()

    def _launch(self) -> bool:
        """Start the next hedge if one may start now; False when none will any more."""
        hedge = self.hedge
        if self.stopped or self.hedges >= hedge.max_hedges:
            return False
        self._disarm()
        ctx = self.ctx
        at = hedge._now()
        left = ctx.run(time_left)
        if left is not None and left <= 0:
            self.stopped = True
            self.record.event(STOPPED, {ATTR_REASON: "deadline"})
            return False
        budget = hedge._budget
        if budget is not None and not budget.try_spend(at):
            self.stopped = True
            self.record.event(BUDGET_EXHAUSTED, {ATTR_ATTEMPT: self.hedges + 1})
            return False
        self.hedges += 1
        self.record.event(STARTED, {ATTR_ATTEMPT: self.hedges, ATTR_DELAY: at - self.began})
        self.running += 1
        self.tasks.append(self.loop.create_task(self._attempt(self.hedges), context=ctx.copy()))
        if self.hedges < hedge.max_hedges:
            self._arm(self.delay)
        return True

    async def _attempt(self, index: int) -> None:
        _attempt.set(index)  # the task's own context
        hedge = self.hedge
        started = hedge._now()
        try:
            try:
                result = await self.fn(*self.args, **self.kwargs)
            finally:
                self.running -= 1
        except Exception as exc:
            self._judge_error(index, exc)
            return
        self._judge_result(index, result, hedge._now() - started)

    def _judge_error(self, index: int, exc: Exception) -> None:
        if self.winner is not None:
            return
        try:
            failed = self.hedge._failed(exc)
        except Exception as judged:
            self._won(index, judged, True, None)
            return
        if failed:
            self._lost(index, exc, None)
        else:
            self._won(index, exc, True, None)

    def _judge_result(self, index: int, result: Any, latency: float) -> None:
        if self.winner is not None:
            return
        on_result = self.hedge.on_result
        if on_result is not None:
            try:
                rejected = on_result(result)
            except Exception as judged:
                self._won(index, judged, True, None)
                return
            if rejected:
                self._lost(index, None, result)
                return
        self._won(index, result, False, latency)

    def _won(self, index: int, value: Any, error: bool, latency: float | None) -> None:
        self.win(index, value, error, latency)
        self._disarm()
        if index == 0:
            return
        if self.phase == _PRIMARY:
            self.interrupted = True
            self.task.cancel()  # taken back by the caller (uncancel) when it arrives
        else:
            self._wake_caller()

    def _lost(self, index: int, error: Exception | None, result: Any) -> None:
        self.fail(index, error, result)
        # A failed attempt starts the next hedge at once.
        if not self._launch() and self.running == 0 and self.phase == _WAITING:
            self._wake_caller()

    def _wake_caller(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    # -- the caller's side ----------------------------------------------------------------

    async def run(self) -> None:
        """Run the race to its end: `winner` set, or every attempt failed."""
        hedge, task = self.hedge, self.task
        cancelling = task.cancelling()
        self.began = started = hedge._now()
        self._arm(self.delay)
        try:
            result = await self.fn(*self.args, **self.kwargs)
        except Exception as exc:
            if self.interrupted:
                task.uncancel()
                await self._finish()
                return
            self.phase = _WAITING
            self._judge_error(0, exc)
        except BaseException as exc:
            # Our own cancellation (a hedge won) is taken back; any other one propagates.
            if (
                self.interrupted
                and task.uncancel() <= cancelling
                and isinstance(exc, asyncio.CancelledError)
            ):
                await self._finish()
                return
            self._disarm()
            self.stopped = True
            await self._finish()
            raise
        else:
            if self.interrupted:
                task.uncancel()
                await self._finish()
                return
            self.phase = _WAITING
            self._judge_result(0, result, hedge._now() - started)
        if self.winner is None and self.running:
            future = self.future = self.loop.create_future()
            try:
                await future
            except BaseException:
                self.stopped = True
                self._disarm()
                await self._finish()
                raise
        self._disarm()
        self.stopped = True
        await self._finish()

    async def _finish(self) -> None:
        """Cancel every hedge still running and wait until each has ended."""
        pending = [t for t in self.tasks if not t.done()]
        if not pending:
            return
        for attempt in pending:
            attempt.cancel()
        cancelled: BaseException | None = None
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:  # keep waiting: nothing may be left
                cancelled = exc
            pending = [t for t in pending if not t.done()]
        if cancelled is not None:
            raise cancelled
