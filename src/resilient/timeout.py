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
from resilient._validate import check_bool, check_clock, check_name, check_positive
from resilient.exceptions import TimeoutExceeded
from resilient.telemetry._core import CallRecord, PolicyTelemetry, outcome_of

__all__ = ("Timeout",)

T = TypeVar("T")


_ACTIVE, _DONE, _EXPIRED = 0, 1, 2

# One call's entry in a _DeadlineQueue: [deadline, task, task.cancelling() on entry, state].
# A list rather than an object: it is built on every call, and a list costs a fraction of
# an instance with __init__.
_Entry = list[Any]
_DEADLINE, _TASK, _CANCELLING, _STATE = range(4)


class _DeadlineQueue:
    """The deadlines of one Timeout's calls on one asyncio loop, in arrival order.

    Every call of a Timeout lasts the same `seconds`, so deadlines arrive already sorted:
    a FIFO and one loop timer armed for the oldest live deadline replace the loop timer
    (a heap push, a cancelled handle left on the heap) that asyncio.timeout costs per call.
    """

    __slots__ = ("entries", "handle", "loop", "seconds", "shared")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, *, shared: bool) -> None:
        self.loop = loop
        self.seconds = seconds
        # A shared queue serves every Timeout of this duration on the loop and keeps its
        # timer armed; a private one disarms it when it empties, so that a Timeout made
        # per call leaves only a cancelled handle, which the loop purges.
        self.shared = shared
        self.entries: deque[_Entry] = deque()
        self.handle: asyncio.TimerHandle | None = None

    def push(self) -> _Entry:
        """Start a deadline for the running task."""
        task = current_task(self.loop)
        if task is None:
            raise RuntimeError("Timeout must be used inside an asyncio task")
        # Deadlines are kept on time.monotonic (cheaper to read than loop.time(), which
        # some loops cache per iteration); the timer is armed with a relative delay.
        entry = [_monotonic() + self.seconds, task, task.cancelling(), _ACTIVE]
        self.entries.append(entry)
        if self.handle is None:
            self.handle = self.loop.call_later(self.seconds, self._expire_due)
        return entry

    def leave(self, entry: _Entry, error: BaseException | None) -> bool:
        """End a deadline; True when its expiry is what ended the call."""
        if entry[_STATE] == _ACTIVE:
            entry[_STATE] = _DONE
            entries = self.entries
            while entries and entries[0][_STATE] != _ACTIVE:
                entries.popleft()
            if not entries and not self.shared and self.handle is not None:
                self.handle.cancel()
                self.handle = None
            return False
        # Same rule as asyncio.timeout: it is our timeout only if no one else asked for
        # cancellation meanwhile.
        return entry[_TASK].uncancel() <= entry[_CANCELLING] and isinstance(
            error, asyncio.CancelledError
        )

    def _expire_due(self) -> None:
        self.handle = None
        entries = self.entries
        now = _monotonic()
        while entries:
            entry = entries[0]
            if entry[_STATE] == _ACTIVE:
                if entry[_DEADLINE] > now:
                    self.handle = self.loop.call_later(entry[_DEADLINE] - now, self._expire_due)
                    return
                entry[_STATE] = _EXPIRED
                entry[_TASK].cancel()
            entries.popleft()


class _TrioScope:
    __slots__ = ("scope",)

    def __init__(self, seconds: float) -> None:
        trio = trio_module()
        self.scope = trio.CancelScope(deadline=trio.current_time() + seconds)
        self.scope.__enter__()

    def close(self, error: BaseException | None) -> bool:
        return _exit_scope(self.scope, error)


class _ClockScope:
    """A deadline driven by a non-default clock that schedules timers (FakeClock)."""

    __slots__ = ("scope", "timer")

    def __init__(self, scope: anyio.CancelScope, timer: TimerHandle) -> None:
        self.scope = scope
        self.timer = timer

    def close(self, error: BaseException | None) -> bool:
        self.timer.cancel()
        return _exit_scope(self.scope, error)


_Scope = _TrioScope | _ClockScope


def _exit_scope(scope: Any, error: BaseException | None) -> bool:
    """Leave a trio or anyio cancel scope; True when its deadline ended the call."""
    if error is None:
        scope.__exit__(None, None, None)
        return False
    swallowed = scope.__exit__(type(error), error, error.__traceback__)
    return bool(swallowed) and bool(scope.cancelled_caught)


class _Entered:
    """What one `async with timeout:` block needs to find again in `__aexit__`: its queue
    entry on asyncio, or its cancel scope elsewhere."""

    __slots__ = ("deadline_token", "entry", "queue", "record", "scope")

    def __init__(
        self,
        deadline_token: Token[Deadline | None] | None,
        record: CallRecord | None,
    ) -> None:
        self.deadline_token = deadline_token
        self.record = record
        self.queue: _DeadlineQueue | None = None
        self.entry: _Entry | None = None
        self.scope: _Scope | None = None

    def close(self, error: BaseException | None) -> bool:
        if self.queue is not None and self.entry is not None:
            return self.queue.leave(self.entry, error)
        assert self.scope is not None
        return self.scope.close(error)


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
        self._clock = check_clock(clock)
        self._native = clock is None or clock is monotonic_clock
        self._telemetry = PolicyTelemetry(
            "timeout", self.name, enabled=check_bool("telemetry", telemetry)
        )
        self._entered: TaskLocalStack[_Entered] = TaskLocalStack("Timeout")
        self._queue: _DeadlineQueue | None = None

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r}, name={self.name!r})"

    def _queue_on(self, loop: asyncio.AbstractEventLoop) -> _DeadlineQueue:
        queue = self._queue
        if queue is None or queue.loop is not loop:
            # First use on this loop (or on another one: another thread, a later
            # asyncio.run); calls in flight keep a reference to the queue they joined.
            queue = self._queue = _queue_for(loop, self.seconds)
        return queue

    def _open_scope(self) -> _Scope:
        """A cancel scope for trio, or for a clock that schedules its own timers."""
        if not self._native:
            scope = anyio.CancelScope()
            timer = schedule(self._clock, self._clock.now() + self.seconds, scope.cancel)
            if timer is not None:
                scope.__enter__()
                return _ClockScope(scope, timer)
        return _TrioScope(self.seconds)

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

    def _ended(
        self,
        timed_out: bool,
        error: BaseException | None,
        token: Token[Deadline | None] | None,
        record: CallRecord | None,
    ) -> TimeoutExceeded | None:
        """Close the call's books; the TimeoutExceeded to raise when it timed out."""
        if token is not None:
            current_deadline.reset(token)
        if timed_out:
            assert error is not None
            timeout_error = self._error(error)
            if record is not None:
                record.end("timeout", timeout_error)
            return timeout_error
        if record is not None:
            record.end("success" if error is None else outcome_of(error), error)
        return None

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        record = self._telemetry.start()
        token = self._publish_deadline()
        loop = asyncio_loop() if self._native else None
        if loop is None:
            return await self._run_in_scope(self._open_scope(), token, record, fn, args, kwargs)
        queue = self._queue
        if queue is None or queue.loop is not loop:
            queue = self._queue_on(loop)
        entry = queue.push()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            error = self._ended(queue.leave(entry, exc), exc, token, record)
            if error is None:
                raise
            raise error from exc
        queue.leave(entry, None)
        # The plain success, written out: this is every call's way out.
        if token is not None:
            current_deadline.reset(token)
        if record is not None:
            record.end("success")
        return result

    async def _run_in_scope(
        self,
        scope: _Scope,
        token: Token[Deadline | None] | None,
        record: CallRecord | None,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            error = self._ended(scope.close(exc), exc, token, record)
            if error is None:
                raise
            raise error from exc
        scope.close(None)
        self._ended(False, None, token, record)
        return result

    async def __aenter__(self) -> Timeout:
        entered = _Entered(self._publish_deadline(), self._telemetry.start())
        loop = asyncio_loop() if self._native else None
        if loop is None:
            entered.scope = self._open_scope()
        else:
            entered.queue = queue = self._queue_on(loop)
            entered.entry = queue.push()
        self._entered.push(entered)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered = self._entered.pop()
        error = self._ended(entered.close(exc), exc, entered.deadline_token, entered.record)
        if error is not None:
            raise error from exc


#: The shared deadline queues of each loop, by duration. Timeouts of one duration share a
#: queue, so a Timeout made per request costs no more than one kept for the process.
_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _DeadlineQueue]] = (
    weakref.WeakKeyDictionary()
)
#: Past this many distinct durations on one loop (durations computed per call), further
#: Timeouts get a private queue each.
_MAX_SHARED_QUEUES = 64


def _queue_for(loop: asyncio.AbstractEventLoop, seconds: float) -> _DeadlineQueue:
    try:
        per_loop = _queues.get(loop)
        if per_loop is None:
            per_loop = _queues[loop] = {}
    except TypeError:  # a loop that cannot be weakly referenced: nothing is shared there
        return _DeadlineQueue(loop, seconds, shared=False)
    queue = per_loop.get(seconds)
    if queue is None:
        if len(per_loop) >= _MAX_SHARED_QUEUES:
            return _DeadlineQueue(loop, seconds, shared=False)
        queue = per_loop[seconds] = _DeadlineQueue(loop, seconds, shared=True)
    return queue
