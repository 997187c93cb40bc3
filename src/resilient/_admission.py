"""The one shell of every single-shot admission policy (CircuitBreaker, Bulkhead,
RateLimiter, and load shedding, which is coming).

Such a policy is a pure, synchronous core that answers "admit this call now?" and is told
how the call ended. The shell is everything else, written once: the decorator, `.call()`,
`async with`, the Pipeline stage and their telemetry record. A policy implements four
hooks, each a plain method on its core:

- `_admit(record)`: admit now and return a *ticket* (whatever the core needs to settle the
  call later), or return `WAIT` to ask the shell to wait, or raise the rejection (having
  ended `record` as rejected);
- `_wait(record)`: the waiting path (a bulkhead queue, a rate limiter's reserved permit),
  bounded by `max_wait` and the enclosing deadline; returns the ticket or raises, having
  ended `record`;
- `_settle(ticket, error, record)`: the call ended (`error` is None on success, or what it
  raised, cancellation included): count it, release what the ticket holds, end `record`;
- `_settle_result(ticket, result, record)`: the call returned `result` (default: a plain
  success; a breaker with `on_result` judges the result here).

The fast path is the general case: a call admitted at once costs the hooks' own work and
no await beyond the user's call.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ClassVar, Final, ParamSpec, TypeVar

from resilient._policy import Policy, ensure_async_callable
from resilient._task_local import TaskLocalStack
from resilient.telemetry._core import CallRecord, PolicyTelemetry

__all__ = ("WAIT", "AdmissionPolicy")

P = ParamSpec("P")
T = TypeVar("T")
A = TypeVar("A", bound="AdmissionPolicy")


class _Wait:
    __slots__ = ()

    def __repr__(self) -> str:
        return "WAIT"


#: What `_admit` returns to ask the shell to wait for admission.
WAIT: Final = _Wait()


class AdmissionPolicy(Policy):
    """Base of the single-shot admission policies: the shell around their pure cores."""

    __slots__ = ()

    _telemetry: PolicyTelemetry
    _entries: TaskLocalStack[tuple[Any, CallRecord | None]]
    #: True for a policy whose admitted calls may hold no ticket (a bulkhead slot, a
    #: permit): its `async with` blocks then keep no per-task state unless nested.
    _ticketless: ClassVar[bool] = False
    #: False for a policy with nothing to settle for a call nobody records (a rate
    #: limiter's permit is spent at admission): the shell then skips `_settle` for it.
    _settles_unrecorded: ClassVar[bool] = True

    # -- the hooks ------------------------------------------------------------------------

    def _admit(self, record: CallRecord | None) -> Any:
        """A ticket, `WAIT`, or raise the rejection."""
        raise NotImplementedError

    async def _wait(self, record: CallRecord | None) -> Any:
        """Wait for admission; a ticket, or raise."""
        raise NotImplementedError

    def _settle(self, ticket: Any, error: BaseException | None, record: CallRecord | None) -> None:
        """The call is over: count it, release what `ticket` holds, end `record`."""
        raise NotImplementedError

    def _settle_result(self, ticket: Any, result: object, record: CallRecord | None) -> None:
        """The call returned `result`."""
        self._settle(ticket, None, record)

    # -- the faces, written once ----------------------------------------------------------

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        record = self._telemetry.start()
        ticket = self._admit(record)
        if ticket is WAIT:
            ticket = await self._wait(record)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(ticket, exc, record)
            raise
        self._settle_result(ticket, result, record)
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an `async def`; the decorated function keeps its signature.

        Raises:
            TypeError: `fn` is not an `async def` function.
        """
        ensure_async_callable(fn, type(self).__name__)
        # The shell of _run, inlined into the wrapper: one coroutine per call, not two.
        start = self._telemetry.start
        admit, wait = self._admit, self._wait
        settle, settle_result = self._settle, self._settle_result

        if not self._settles_unrecorded:

            async def admitted_unsettled(*args: P.args, **kwargs: P.kwargs) -> T:
                record = start()
                ticket = admit(record)
                if ticket is WAIT:
                    ticket = await wait(record)
                if record is None:
                    return await fn(*args, **kwargs)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    settle(ticket, exc, record)
                    raise
                settle_result(ticket, result, record)
                return result

            return functools.wraps(fn)(admitted_unsettled)

        async def admitted(*args: P.args, **kwargs: P.kwargs) -> T:
            record = start()
            ticket = admit(record)
            if ticket is WAIT:
                ticket = await wait(record)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                settle(ticket, exc, record)
                raise
            settle_result(ticket, result, record)
            return result

        return functools.wraps(fn)(admitted)

    async def __aenter__(self: A) -> A:
        record = self._telemetry.start()
        ticket = self._admit(record)
        if ticket is WAIT:
            ticket = await self._wait(record)
        # A block with nothing to settle later (no ticket, no record: a bulkhead slot, a
        # permit) is pushed only when it nests inside one that was, so that pops stay in
        # order; most blocks then cost no per-task state at all.
        entries = self._entries
        if not self._ticketless or ticket is not None or record is not None or not entries.empty():
            entries.push((ticket, record))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entries = self._entries
        if self._ticketless and entries.empty():
            if self._settles_unrecorded:
                self._settle(None, exc, None)
            return
        ticket, record = entries.pop()
        self._settle(ticket, exc, record)
