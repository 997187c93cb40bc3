"""Timeout: cancel a call when its deadline passes."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import Token
from time import monotonic as _monotonic
from types import TracebackType
from typing import Any, TypeVar

import anyio

from resilient._backend import asyncio_loop, current_task, trio_module
from resilient._clock import Clock, TimerHandle, monotonic_clock, schedule
from resilient._deadline import Deadline, current_deadline, remaining
from resilient._policy import Policy
from resilient._task_local import TaskLocalStack
from resilient._validate import check_name, check_positive
from resilient.exceptions import TimeoutExceeded
from resilient.telemetry._core import CallRecord, PolicyTelemetry, outcome_of

__all__ = ("Timeout",)

T = TypeVar("T")


_ACTIVE, _DONE, _EXPIRED = 0, 1, 2


class _AsyncioScope:
    """One call's deadline on the running asyncio task, queued in its `_DeadlineQueue`."""

    __slots__ = ("cancelling", "deadline", "queue", "state", "task")

    def __init__(self, queue: _DeadlineQueue, task: asyncio.Task[Any], deadline: float) -> None:
        self.queue = queue
        self.task = task
        self.cancelling = task.cancelling()
        self.deadline = deadline
        self.state = _ACTIVE

    def close(self, error: BaseException | None) -> bool:
        """Leave the deadline; True when its expiry is what ended the call."""
        if self.state == _ACTIVE:
            self.state = _DONE
            entries = self.queue.entries
            while entries and entries[0].state != _ACTIVE:
                entries.popleft()
            return False
        # Same rule as asyncio.timeout: it is our timeout only if no one else asked for
        # cancellation meanwhile.
        return self.task.uncancel() <= self.cancelling and isinstance(error, asyncio.CancelledError)


class _DeadlineQueue:
    """The deadlines of one Timeout's calls on one asyncio loop, in arrival order.

    Every call of a Timeout lasts the same `seconds`, so deadlines arrive already sorted:
    a FIFO and one loop timer armed for the oldest live deadline replace the loop timer
    (a heap push, a cancelled handle left on the heap) that asyncio.timeout costs per call.
    """

    __slots__ = ("entries", "handle", "loop", "seconds")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.seconds = seconds
        self.entries: deque[_AsyncioScope] = deque()
        self.handle: asyncio.TimerHandle | None = None

    def push(self) -> _AsyncioScope:
        task = current_task(self.loop)
        if task is None:
            raise RuntimeError("Timeout must be used inside an asyncio task")
        # Deadlines are kept on time.monotonic (cheaper to read than loop.time(), which
        # some loops cache per iteration); the timer is armed with a relative delay.
        scope = _AsyncioScope(self, task, _monotonic() + self.seconds)
        self.entries.append(scope)
        if self.handle is None:
            self.handle = self.loop.call_later(self.seconds, self._expire_due)
        return scope

    def _expire_due(self) -> None:
        self.handle = None
        entries = self.entries
        now = _monotonic()
        while entries:
            scope = entries[0]
            if scope.state == _ACTIVE:
                if scope.deadline > now:
                    self.handle = self.loop.call_later(scope.deadline - now, self._expire_due)
                    return
                scope.state = _EXPIRED
                scope.task.cancel()
            entries.popleft()


class _TrioScope:
    __slots__ = ("scope",)

    def __init__(self, seconds: float) -> None:
        trio = trio_module()
        self.scope = trio.CancelScope(deadline=trio.current_time() + seconds)
        self.scope.__enter__()

    def close(self, error: BaseException | None) -> bool:
        scope = self.scope
        if error is None:
            scope.__exit__(None, None, None)
            return False
        swallowed = scope.__exit__(type(error), error, error.__traceback__)
        return bool(swallowed) and scope.cancelled_caught


class _ClockScope:
    """A deadline driven by a non-default clock that schedules timers (FakeClock)."""

    __slots__ = ("scope", "timer")

    def __init__(self, scope: anyio.CancelScope, timer: TimerHandle) -> None:
        self.scope = scope
        self.timer = timer

    def close(self, error: BaseException | None) -> bool:
        self.timer.cancel()
        scope = self.scope
        if error is None:
            scope.__exit__(None, None, None)
            return False
        swallowed = scope.__exit__(type(error), error, error.__traceback__)
        return bool(swallowed) and scope.cancelled_caught


_Scope = _AsyncioScope | _TrioScope | _ClockScope


class _Entered:
    """What one `async with timeout:` block needs to find again in `__aexit__`."""

    __slots__ = ("deadline_token", "record", "scope")

    def __init__(
        self,
        scope: _Scope,
        deadline_token: Token[Deadline | None] | None,
        record: CallRecord | None,
    ) -> None:
        self.scope = scope
        self.deadline_token = deadline_token
        self.record = record


class Timeout(Policy):
    """Cancel the call if it has not finished `seconds` after it started.

    Args:
        seconds: the time limit, in seconds (> 0).
        name: names the policy in telemetry (default `"timeout"`).
        clock: the time source (default: the monotonic clock). With
            `resilient.testing.FakeClock` the timeout fires when the fake clock passes it.
        telemetry: `False` silences this policy's spans and metrics.

    Raises `TimeoutExceeded` (also a `TimeoutError`) when the deadline passes. The deadline
    is published to everything inside the call: a `Retry` will not start a sleep that
    cannot finish before it, and a bulkhead or rate limiter waits at most until it.

    Examples:
        ```python
        timeout = Timeout(2.5)

        @timeout
        async def fetch_profile(user_id: int) -> dict: ...

        async with Timeout(1.0):
            await do_something()
        ```
    """

    __slots__ = ("_clock", "_entered", "_native", "_queue", "_telemetry", "name", "seconds")

    def __init__(
        self,
        seconds: float,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        telemetry: bool = True,
    ) -> None:
        self.seconds = check_positive("seconds", seconds)
        self.name = check_name(name, "timeout")
        self._clock = monotonic_clock if clock is None else clock
        self._native = clock is None or clock is monotonic_clock
        self._telemetry = PolicyTelemetry("timeout", self.name, enabled=telemetry is not False)
        self._entered: TaskLocalStack[_Entered] = TaskLocalStack("Timeout")
        self._queue: _DeadlineQueue | None = None

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r}, name={self.name!r})"

    def _open(self) -> _Scope:
        if not self._native:
            scope = anyio.CancelScope()
            timer = schedule(self._clock, self._clock.now() + self.seconds, scope.cancel)
            if timer is not None:
                scope.__enter__()
                return _ClockScope(scope, timer)
        loop = asyncio_loop()
        if loop is None:
            return _TrioScope(self.seconds)
        queue = self._queue
        if queue is None or queue.loop is not loop:
            # One queue per loop; a Timeout used from another loop (another thread, or a
            # later asyncio.run) gets its own.
            queue = self._queue = _queue_for(self, loop)
        return queue.push()

    def _publish_deadline(self) -> Token[Deadline | None] | None:
        outer = current_deadline.get()
        if outer is not None and remaining(outer) <= self.seconds:
            return None
        clock = self._clock
        return current_deadline.set((clock.now() + self.seconds, clock))

    def _error(self, cause: BaseException) -> TimeoutExceeded:
        error = TimeoutExceeded(
            f"{self.name} timed out after {self.seconds:g}s", timeout=self.seconds
        )
        error.__cause__ = cause
        return error

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        record = self._telemetry.start()
        token = self._publish_deadline()
        scope = self._open()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            timed_out = scope.close(exc)
            if token is not None:
                current_deadline.reset(token)
            if timed_out:
                error = self._error(exc)
                if record is not None:
                    record.end("timeout", error)
                raise error from exc
            if record is not None:
                record.end(outcome_of(exc), exc)
            raise
        scope.close(None)
        if token is not None:
            current_deadline.reset(token)
        if record is not None:
            record.end("success")
        return result

    async def __aenter__(self) -> Timeout:
        record = self._telemetry.start()
        self._entered.push(_Entered(self._open(), self._publish_deadline(), record))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered = self._entered.pop()
        timed_out = entered.scope.close(exc)
        if entered.deadline_token is not None:
            current_deadline.reset(entered.deadline_token)
        record = entered.record
        if timed_out:
            assert exc is not None
            error = self._error(exc)
            if record is not None:
                record.end("timeout", error)
            raise error from exc
        if record is not None:
            record.end("success" if exc is None else outcome_of(exc), exc)


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _DeadlineQueue]] = (
    weakref.WeakKeyDictionary()
)


def _queue_for(timeout: Timeout, loop: asyncio.AbstractEventLoop) -> _DeadlineQueue:
    per_loop = _queues.setdefault(loop, {})
    queue = per_loop.get(id(timeout))
    if queue is None or queue.seconds != timeout.seconds:
        queue = per_loop[id(timeout)] = _DeadlineQueue(loop, timeout.seconds)
    return queue
