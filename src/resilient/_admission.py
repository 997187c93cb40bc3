"""The one shell of every single-shot admission policy (CircuitBreaker, Bulkhead,
RateLimiter, and load shedding, which is coming).

Such a policy is a pure, synchronous core that answers "admit this call now?" and is told
how the call ended. The shell is everything else, written once: the decorator, `.call()`,
`async with`, the Pipeline stage and their telemetry record. A policy implements four
hooks, each a plain method on its core:

- `_admit(record)`: admit now and return a *ticket* (whatever the core needs to settle the
  call later), or return `WAIT` to ask the shell to wait, or raise the rejection;
- `_wait(record)`: the waiting path (a bulkhead queue, a rate limiter's reserved permit),
  bounded by `max_wait` and the enclosing deadline; returns the ticket or raises;
- `_settle(ticket, error, record)`: the call ended (`error` is None on success, or what it
  raised, cancellation included): count it and release what the ticket holds;
- `_settle_result(ticket, result, record)`: the call returned `result`; True when it
  counts as a failure (a breaker with `on_result` judges the result here).

Hooks report events on `record` (a queue, a decision); the shell ends it.

The fast path is the general case: a call admitted at once costs the hooks' own work and
no await beyond the user's call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ClassVar, Final, ParamSpec, TypeVar

from resilient._policy import Policy
from resilient._task_local import TaskLocalStack
from resilient.exceptions import RejectedError
from resilient.telemetry._core import CallRecord, PolicyTelemetry, outcome_of

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
        """A ticket, `WAIT`, or raise the rejection (a `RejectedError`)."""
        raise NotImplementedError

    async def _wait(self, record: CallRecord | None) -> Any:
        """Wait for admission; a ticket, or raise."""
        raise NotImplementedError

    def _settle(self, ticket: Any, error: BaseException | None, record: CallRecord | None) -> None:
        """The call is over (`error` is what it raised, or None): count it and release what
        `ticket` holds."""
        raise NotImplementedError

    def _settle_result(self, ticket: Any, result: object, record: CallRecord | None) -> bool:
        """The call returned `result`; True when the result counts as a failure."""
        self._settle(ticket, None, record)
        return False

    # -- the faces, written once ----------------------------------------------------------
    #
    # The shell, not the hooks, ends a call's telemetry record: rejected when admission
    # raised a RejectedError, otherwise by what the call (or a hook) raised or returned.

    async def _enter_recorded(self, record: CallRecord) -> Any:
        try:
            ticket = self._admit(record)
            if ticket is WAIT:
                ticket = await self._wait(record)
        except RejectedError as error:
            record.end("rejected", error)
            raise
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise
        return ticket

    def _exit_recorded(self, ticket: Any, error: BaseException | None, record: CallRecord) -> None:
        try:
            self._settle(ticket, error, record)
        except BaseException as raised:
            record.end(outcome_of(raised), raised)
            raise
        record.end("success" if error is None else outcome_of(error), error)

    def _result_recorded(self, ticket: Any, result: object, record: CallRecord) -> None:
        try:
            failed = self._settle_result(ticket, result, record)
        except BaseException as raised:
            record.end(outcome_of(raised), raised)
            raise
        record.end("failure" if failed else "success")

    async def _run_recorded(
        self,
        record: CallRecord,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        ticket = await self._enter_recorded(record)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._exit_recorded(ticket, exc, record)
            raise
        self._result_recorded(ticket, result, record)
        return result

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        record = self._telemetry.start()
        if record is not None:
            return await self._run_recorded(record, fn, args, kwargs)
        ticket = self._admit(None)
        if ticket is WAIT:
            ticket = await self._wait(None)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(ticket, exc, None)
            raise
        self._settle_result(ticket, result, None)
        return result

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        # The shell of _run, inlined into the function: one coroutine per unrecorded call.
        start, run_recorded = self._telemetry.start, self._run_recorded
        admit, wait = self._admit, self._wait
        settle, settle_result = self._settle, self._settle_result

        if not self._settles_unrecorded:

            async def admitted_unsettled(*args: Any, **kwargs: Any) -> T:
                record = start()
                if record is not None:
                    return await run_recorded(record, fn, args, kwargs)
                if admit(None) is WAIT:
                    await wait(None)
                return await fn(*args, **kwargs)

            return admitted_unsettled

        async def admitted(*args: Any, **kwargs: Any) -> T:
            record = start()
            if record is not None:
                return await run_recorded(record, fn, args, kwargs)
            ticket = admit(None)
            if ticket is WAIT:
                ticket = await wait(None)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                settle(ticket, exc, None)
                raise
            settle_result(ticket, result, None)
            return result

        return admitted

    async def __aenter__(self: A) -> A:
        record = self._telemetry.start()
        if record is None:
            ticket = self._admit(None)
            if ticket is WAIT:
                ticket = await self._wait(None)
        else:
            ticket = await self._enter_recorded(record)
        # A block with nothing to settle later (a bulkhead slot, a permit, no record) is
        # pushed only when it nests inside one that was, so that pops stay in order; most
        # blocks then keep no per-task state at all.
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
        if record is None:
            self._settle(ticket, exc, None)
        else:
            self._exit_recorded(ticket, exc, record)
