"""Timeout: cancel a call when its deadline passes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

import anyio

from resilient._backend import asyncio_loop, trio_module
from resilient._clock import Clock, TimerHandle, monotonic_clock, schedule
from resilient._deadline import Deadline, current_deadline
from resilient._policy import Policy
from resilient._validate import check_name, check_positive
from resilient.exceptions import TimeoutExceeded
from resilient.telemetry._core import CallRecord, PolicyTelemetry

__all__ = ("Timeout",)

T = TypeVar("T")


class _AsyncioScope:
    """A deadline on the running asyncio task: one loop timer, no cancel-scope machinery."""

    __slots__ = ("cancelling", "expired", "handle", "task")

    def __init__(self, seconds: float, loop: asyncio.AbstractEventLoop) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Timeout must be used inside an asyncio task")
        self.task = task
        self.cancelling = task.cancelling()
        self.expired = False
        self.handle = loop.call_at(loop.time() + seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self.task.cancel()

    def close(self, error: BaseException | None) -> bool:
        """Stop the timer; True when this scope's expiry is what ended the call."""
        self.handle.cancel()
        if not self.expired:
            return False
        # Same rule as asyncio.timeout: it is our timeout only if no one else asked for
        # cancellation meanwhile.
        return self.task.uncancel() <= self.cancelling and isinstance(error, asyncio.CancelledError)


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

    __slots__ = ("deadline_token", "record", "scope", "self_token")

    def __init__(
        self,
        scope: _Scope,
        deadline_token: Token[Deadline | None] | None,
        record: CallRecord | None,
    ) -> None:
        self.scope = scope
        self.deadline_token = deadline_token
        self.record = record
        self.self_token: Token[_Entered | None] | None = None


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

    Example:
        ```python
        timeout = Timeout(2.5)

        @timeout
        async def fetch_profile(user_id: int) -> dict: ...

        async with Timeout(1.0):
            await do_something()
        ```
    """

    __slots__ = ("_clock", "_entered", "_native", "_telemetry", "name", "seconds")

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
        self._entered: ContextVar[_Entered | None] | None = None

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
        if loop is not None:
            return _AsyncioScope(self.seconds, loop)
        return _TrioScope(self.seconds)

    def _publish_deadline(self) -> Token[Deadline | None] | None:
        outer = current_deadline.get()
        if outer is not None and outer.remaining() <= self.seconds:
            return None
        clock = self._clock
        return current_deadline.set(Deadline(clock.now() + self.seconds, clock))

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
                record.end(_outcome_of(exc), exc)
            raise
        scope.close(None)
        if token is not None:
            current_deadline.reset(token)
        if record is not None:
            record.end("success")
        return result

    async def __aenter__(self) -> Timeout:
        var = self._entered
        if var is None:
            var = self._entered = ContextVar(f"resilient_timeout_{id(self)}", default=None)
        record = self._telemetry.start()
        entered = _Entered(self._open(), self._publish_deadline(), record)
        entered.self_token = var.set(entered)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        var = self._entered
        entered = var.get() if var is not None else None
        if var is None or entered is None or entered.self_token is None:
            raise RuntimeError("Timeout.__aexit__ without a matching __aenter__ in this task")
        var.reset(entered.self_token)
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
            record.end("success" if exc is None else _outcome_of(exc), exc)


def _outcome_of(exc: BaseException) -> str:
    return "failure" if isinstance(exc, Exception) else "cancelled"
