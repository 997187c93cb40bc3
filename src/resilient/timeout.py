"""Timeout: cancel a call when its deadline passes."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import Token
from time import monotonic as _monotonic
from types import TracebackType
from typing import Any, TypeVar

from resilient._backend import asyncio_loop, current_task, trio_module
from resilient._clock import Clock, TimedScope, is_native
from resilient._deadline import Deadline, close_deadline, open_deadline
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

#: A queue is compacted (finished entries dropped from its middle) when it grows past twice
#: its live entries, and never below this length.
_COMPACT_MIN = 64


class _DeadlineQueue:
    """The deadlines of one duration's calls on one asyncio loop, in arrival order.

    Every call of a Timeout lasts the same `seconds`, so deadlines arrive already sorted:
    a FIFO and one loop timer armed for the oldest live deadline replace the loop timer
    (a heap push, a cancelled handle left on the heap) that asyncio.timeout costs per call.

    What a finished call leaves behind is O(1) and short-lived: its entry lets go of the
    task (and so of the task's result) when the call ends, and entries that finished behind
    a slower, older call are dropped in compactions whose cost is spread over the calls
    (amortised constant time). The queue holds its loop only weakly, and its timer handle
    only when it must call the timer off, so that nothing keeps a closed loop alive.
    """

    __slots__ = ("armed", "compact_at", "entries", "handle", "loop_ref", "seconds", "shared")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, *, shared: bool) -> None:
        self.loop_ref = weakref.ref(loop)
        self.seconds = seconds
        # A shared queue serves every Timeout of this duration on the loop and lets its
        # timer run out when it empties; a private one calls the timer off when it empties,
        # so that a Timeout made per call leaves only a cancelled handle, which the loop
        # purges.
        self.shared = shared
        self.entries: deque[_Entry] = deque()
        self.compact_at = _COMPACT_MIN
        self.armed = False
        self.handle: asyncio.TimerHandle | None = None

    def push(self, loop: asyncio.AbstractEventLoop) -> _Entry:
        """Start a deadline for the task running on `loop`."""
        task = current_task(loop)
        if task is None:
            raise RuntimeError("Timeout must be used inside an asyncio task")
        # Deadlines are kept on time.monotonic (cheaper to read than loop.time(), which
        # some loops cache per iteration); the timer is armed with a relative delay.
        entry = [_monotonic() + self.seconds, task, task.cancelling(), _ACTIVE]
        entries = self.entries
        entries.append(entry)
        if len(entries) > self.compact_at:
            self._compact()
        if not self.armed:
            self._arm(loop, self.seconds)
        return entry

    def leave(self, entry: _Entry, error: BaseException | None) -> bool:
        """End a deadline; True when its expiry is what ended the call."""
        if entry[_STATE] == _ACTIVE:
            entry[_STATE] = _DONE
            entry[_TASK] = None
            entries = self.entries
            while entries and entries[0][_STATE] != _ACTIVE:
                entries.popleft()
            if not entries and self.handle is not None:
                self.handle.cancel()
                self.handle = None
                self.armed = False
            return False
        task, entry[_TASK] = entry[_TASK], None
        # Same rule as asyncio.timeout: it is our timeout only if no one else asked for
        # cancellation meanwhile.
        return task.uncancel() <= entry[_CANCELLING] and isinstance(error, asyncio.CancelledError)

    def _arm(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.armed = True
        handle = loop.call_later(delay, self._expire_due, loop)
        if not self.shared:
            self.handle = handle

    def _compact(self) -> None:
        live = deque(entry for entry in self.entries if entry[_STATE] == _ACTIVE)
        self.entries = live
        self.compact_at = max(_COMPACT_MIN, 2 * len(live))

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self.armed = False
        self.handle = None
        entries = self.entries
        now = _monotonic()
        while entries:
            entry = entries[0]
            if entry[_STATE] == _ACTIVE:
                if entry[_DEADLINE] > now:
                    self._arm(loop, entry[_DEADLINE] - now)
                    return
                entry[_STATE] = _EXPIRED
                entry[_TASK].cancel()
            entries.popleft()


def _open_trio_scope(seconds: float) -> Any:
    trio = trio_module()
    scope = trio.CancelScope(deadline=trio.current_time() + seconds)
    scope.__enter__()
    return scope


def _exit_scope(scope: Any, error: BaseException | None) -> bool:
    """Leave an entered cancel scope (trio's, or a `TimedScope`); True when its deadline
    ended the call."""
    if error is None:
        scope.__exit__(None, None, None)
        return False
    swallowed = scope.__exit__(type(error), error, error.__traceback__)
    return bool(swallowed) and bool(scope.cancelled_caught)


class _Entered:
    """What one `async with timeout:` block needs to find again in `__aexit__`: its queue
    entry on asyncio, or its cancel scope elsewhere."""

    __slots__ = ("deadline", "entry", "queue", "record", "scope", "token")

    def __init__(
        self,
        deadline: Deadline,
        token: Token[Deadline | None],
        record: CallRecord | None,
    ) -> None:
        self.deadline = deadline
        self.token = token
        self.record = record
        self.queue: _DeadlineQueue | None = None
        self.entry: _Entry | None = None
        self.scope: Any = None


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

    __slots__ = (
        "_clock",
        "_entered",
        "_native",
        "_queue",
        "_telemetry",
        "_what",
        "name",
        "seconds",
    )

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
        self._native = is_native(self._clock)
        # What the TimeoutExceeded message calls the call: a named Timeout names itself.
        self._what = "call" if name is None else f"{self.name!r} call"
        self._telemetry = PolicyTelemetry(
            "timeout", self.name, enabled=check_bool("telemetry", telemetry)
        )
        self._entered: TaskLocalStack[_Entered] = TaskLocalStack("Timeout")
        self._queue: _DeadlineQueue | None = None

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r}, name={self.name!r})"

    def _queue_on(self, loop: asyncio.AbstractEventLoop) -> _DeadlineQueue:
        queue = self._queue
        if queue is None or queue.loop_ref() is not loop:
            # First use on this loop (or on another one: another thread, a later
            # asyncio.run); calls in flight keep a reference to the queue they joined.
            queue = self._queue = _queue_for(loop, self.seconds)
        return queue

    def _open_scope(self) -> Any:
        """An entered cancel scope, for every case but asyncio with the monotonic clock:
        trio's own scope on trio, a `TimedScope` for any other clock."""
        if self._native:
            return _open_trio_scope(self.seconds)
        return TimedScope(self._clock, self.seconds).__enter__()

    def _error(self, cause: BaseException) -> TimeoutExceeded:
        error = TimeoutExceeded(
            f"{self._what} timed out after {self.seconds:g}s", timeout=self.seconds
        )
        error.__cause__ = cause
        return error

    def _ended(
        self,
        timed_out: bool,
        error: BaseException | None,
        deadline: Deadline,
        token: Token[Deadline | None],
        record: CallRecord | None,
    ) -> TimeoutExceeded | None:
        """Close the call's books; the TimeoutExceeded to raise when it timed out."""
        close_deadline(deadline, token)
        if timed_out:
            assert error is not None
            timeout_error = self._error(error)
            if record is not None:
                record.end("timeout", timeout_error)
            return timeout_error
        if record is not None:
            record.end("success" if error is None else outcome_of(error), error)
        return None

    def _leave_scope(
        self,
        scope: Any,
        error: BaseException | None,
        deadline: Deadline,
        token: Token[Deadline | None],
        record: CallRecord | None,
    ) -> bool:
        """Leave the call's cancel scope. Whatever leaving raises (trio re-raises what is
        left of an exception group), the deadline is closed and the span ended first."""
        try:
            return _exit_scope(scope, error)
        except BaseException as raised:
            self._ended(False, raised, deadline, token, record)
            raise

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        timeout = self

        async def bound(*args: Any, **kwargs: Any) -> T:
            record = timeout._telemetry.start()
            deadline, token = open_deadline(timeout._clock.now() + timeout.seconds, timeout._clock)
            loop = asyncio_loop() if timeout._native else None
            if loop is None:
                return await timeout._run_in_scope(
                    timeout._open_scope(), deadline, token, record, fn, args, kwargs
                )
            queue = timeout._queue
            if queue is None or queue.loop_ref() is not loop:
                queue = timeout._queue_on(loop)
            entry = queue.push(loop)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                error = timeout._ended(queue.leave(entry, exc), exc, deadline, token, record)
                if error is None:
                    raise
                raise error from exc
            queue.leave(entry, None)
            # The plain success, written out: this is every call's way out.
            close_deadline(deadline, token)
            if record is not None:
                record.end("success")
            return result

        return bound

    async def _run_in_scope(
        self,
        scope: Any,
        deadline: Deadline,
        token: Token[Deadline | None],
        record: CallRecord | None,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            timed_out = self._leave_scope(scope, exc, deadline, token, record)
            error = self._ended(timed_out, exc, deadline, token, record)
            if error is None:
                raise
            raise error from exc
        self._leave_scope(scope, None, deadline, token, record)
        self._ended(False, None, deadline, token, record)
        return result

    async def __aenter__(self) -> Timeout:
        record = self._telemetry.start()
        deadline, token = open_deadline(self._clock.now() + self.seconds, self._clock)
        entered = _Entered(deadline, token, record)
        loop = asyncio_loop() if self._native else None
        if loop is None:
            entered.scope = self._open_scope()
        else:
            entered.queue = queue = self._queue_on(loop)
            entered.entry = queue.push(loop)
        self._entered.push(entered)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered = self._entered.pop()
        deadline, token, record = entered.deadline, entered.token, entered.record
        if entered.queue is not None and entered.entry is not None:
            timed_out = entered.queue.leave(entered.entry, exc)
        else:
            timed_out = self._leave_scope(entered.scope, exc, deadline, token, record)
        error = self._ended(timed_out, exc, deadline, token, record)
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
