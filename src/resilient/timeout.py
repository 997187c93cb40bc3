"""Timeout: cancel a call when its deadline passes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar

# The native deadline primitives live behind the backend seam; the queue's limits and
# registry are re-exported for the tests that watch what a Timeout leaves behind.
from resilient._backend import _MAX_SHARED_QUEUES as _MAX_SHARED_QUEUES
from resilient._backend import DeadlineQueue, asyncio_loop, deadline_queue_for, open_trio_scope
from resilient._backend import _queues as _queues
from resilient._clock import Clock, TimedScope, is_native
from resilient._deadline import Deadline, close_deadline, open_deadline
from resilient._policy import Policy
from resilient._task_local import TaskLocalStack
from resilient._validate import check_bool, check_clock, check_name, check_positive
from resilient.exceptions import TimeoutExceeded
from resilient.telemetry._core import QUIET, CallRecord, PolicyTelemetry, outcome_of

__all__ = ("Timeout",)

T = TypeVar("T")


def _exit_scope(scope: Any, error: BaseException | None) -> bool:
    """Leave an entered cancel scope (trio's, or a `TimedScope`); True when its deadline
    ended the call."""
    if error is None:
        scope.__exit__(None, None, None)
        return False
    swallowed = scope.__exit__(type(error), error, error.__traceback__)
    return bool(swallowed) and bool(scope.cancelled_caught)


#: What one `async with timeout:` block finds again in `__aexit__`: (deadline, its token,
#: the record, and either the asyncio deadline queue with the call's entry in it, or the
#: entered cancel scope with None). A tuple: one is built for every block.
_Entered = tuple[Deadline, Token[Deadline | None], CallRecord, Any, Any]


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
        self._queue: DeadlineQueue | None = None

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r}, name={self.name!r})"

    def _queue_on(self, loop: asyncio.AbstractEventLoop) -> DeadlineQueue:
        queue = self._queue
        if queue is None or queue.loop_ref() is not loop:
            # First use on this loop (or on another one: another thread, a later
            # asyncio.run); calls in flight keep a reference to the queue they joined.
            queue = self._queue = deadline_queue_for(loop, self.seconds)
        return queue

    def _open_scope(self) -> Any:
        """An entered cancel scope, for every case but asyncio with the monotonic clock:
        trio's own scope on trio, a `TimedScope` for any other clock."""
        if self._native:
            return open_trio_scope(self.seconds)
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
        record: CallRecord,
    ) -> TimeoutExceeded | None:
        """Close the call's books; the TimeoutExceeded to raise when it timed out."""
        close_deadline(deadline, token)
        if timed_out:
            assert error is not None
            timeout_error = self._error(error)
            record.end("timeout", timeout_error)
            return timeout_error
        record.end("success" if error is None else outcome_of(error), error)
        return None

    def _leave_scope(
        self,
        scope: Any,
        error: BaseException | None,
        deadline: Deadline,
        token: Token[Deadline | None],
        record: CallRecord,
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
            record = timeout._telemetry.start() or QUIET
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
            if record is not QUIET:
                record.end("success")
            return result

        return bound

    async def _run_in_scope(
        self,
        scope: Any,
        deadline: Deadline,
        token: Token[Deadline | None],
        record: CallRecord,
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
        record = self._telemetry.start() or QUIET
        deadline, token = open_deadline(self._clock.now() + self.seconds, self._clock)
        loop = asyncio_loop() if self._native else None
        if loop is None:
            self._entered.push((deadline, token, record, self._open_scope(), None))
        else:
            queue = self._queue
            if queue is None or queue.loop_ref() is not loop:
                queue = self._queue_on(loop)
            self._entered.push((deadline, token, record, queue, queue.push(loop)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        deadline, token, record, queue_or_scope, entry = self._entered.pop()
        if entry is not None:
            timed_out = queue_or_scope.leave(entry, exc)
        else:
            timed_out = self._leave_scope(queue_or_scope, exc, deadline, token, record)
        error = self._ended(timed_out, exc, deadline, token, record)
        if error is not None:
            raise error from exc
