"""The one shell of every single-shot admission policy (CircuitBreaker, Bulkhead,
RateLimiter, LoadShedder).

Such a policy is a pure, synchronous core that answers "admit this call now?" and is told
how the call ended. The shell is everything else, written once: the decorator, `.call()`,
`async with`, the Pipeline stage and their telemetry record. A policy implements four
hooks, each a plain method on its core:

- `_admit()`: admit now and return a *ticket* (whatever the core needs to settle the call
  later), or return `WAIT` to ask the shell to wait, or raise the rejection;
- `_wait(record)`: the waiting path (a bulkhead queue, a rate limiter's reserved permit),
  bounded by `max_wait` and the enclosing deadline; returns the ticket or raises, and
  reports what it did on `record` (`QUIET` when nothing records the call);
- `_settle(ticket, error)`: the call ended (`error` is None on success, or what it raised,
  cancellation included): count it and release what the ticket holds;
- `_settle_result(ticket, result)`: the call returned `result`; True when it counts as a
  failure (a breaker with `on_result` judges the result here).

The fast path takes no record at all: what a policy reports there is declared as data
(`_admitted_event`, `_rejected_event`, `_released_event`) and reported by the shell, on the
calls something records. The shell also ends the record.

The fast path is the general case: a call admitted at once costs the hooks' own work and
no await beyond the user's call.

A policy whose settling must itself await (a breaker whose state lives in a store sends
the outcome there) derives from `AwaitedSettlement` as well, and implements the awaited
twins of the two settle hooks; the shell then awaits them on every face.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, ClassVar, Final, ParamSpec, TypeVar

from resilient._policy import Policy
from resilient._task_local import TaskLocalStack
from resilient.exceptions import RejectedError
from resilient.telemetry._core import QUIET, CallRecord, PolicyTelemetry, outcome_of
from resilient.telemetry._spec import EventSpec

__all__ = ("WAIT", "AdmissionPolicy", "AwaitedSettlement")

P = ParamSpec("P")
T = TypeVar("T")
A = TypeVar("A", bound="AdmissionPolicy")

#: An event a policy declares for the shell to report: the event and its attributes.
Report = tuple[EventSpec, Mapping[str, Any]]


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
    #: What the shell reports on a recorded call, as (event, attributes), or None: when
    #: `_admit` admits at once, when `_admit` rejects, and when the call is settled.
    _admitted_event: ClassVar[Report | None] = None
    _rejected_event: ClassVar[Report | None] = None
    _released_event: ClassVar[Report | None] = None

    # -- the hooks ------------------------------------------------------------------------

    def _admit(self) -> Any:
        """A ticket, `WAIT`, or raise the rejection (a `RejectedError`)."""
        raise NotImplementedError

    async def _wait(self, record: CallRecord) -> Any:
        """Wait for admission, reporting on `record`; a ticket, or raise."""
        raise NotImplementedError

    def _settle(self, ticket: Any, error: BaseException | None) -> None:
        """The call is over (`error` is what it raised, or None): count it and release what
        `ticket` holds."""
        raise NotImplementedError

    def _settle_result(self, ticket: Any, result: object) -> bool:
        """The call returned `result`; True when the result counts as a failure."""
        self._settle(ticket, None)
        return False

    # -- the recorded path ----------------------------------------------------------------
    #
    # The shell, not the hooks, ends a call's telemetry record: rejected when admission
    # raised a RejectedError, otherwise by what the call (or a hook) raised or returned.

    async def _enter_recorded(self, record: CallRecord) -> Any:
        try:
            ticket = self._admit()
        except RejectedError as error:
            _report(record, self._rejected_event)
            record.end("rejected", error)
            raise
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise
        if ticket is not WAIT:
            _report(record, self._admitted_event)
            return ticket
        try:
            return await self._wait(record)
        except RejectedError as error:
            record.end("rejected", error)
            raise
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise

    def _exit_recorded(self, ticket: Any, error: BaseException | None, record: CallRecord) -> None:
        try:
            self._settle(ticket, error)
        except BaseException as raised:
            record.end(outcome_of(raised), raised)
            raise
        _report(record, self._released_event)
        record.end("success" if error is None else outcome_of(error), error)

    def _result_recorded(self, ticket: Any, result: object, record: CallRecord) -> None:
        try:
            failed = self._settle_result(ticket, result)
        except BaseException as raised:
            record.end(outcome_of(raised), raised)
            raise
        _report(record, self._released_event)
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

    # -- the faces, written once ----------------------------------------------------------

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        record = self._telemetry.start()
        if record is not None:
            return await self._run_recorded(record, fn, args, kwargs)
        ticket = self._admit()
        if ticket is WAIT:
            ticket = await self._wait(QUIET)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(ticket, exc)
            raise
        self._settle_result(ticket, result)
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
                if admit() is WAIT:
                    await wait(QUIET)
                return await fn(*args, **kwargs)

            return admitted_unsettled

        async def admitted(*args: Any, **kwargs: Any) -> T:
            record = start()
            if record is not None:
                return await run_recorded(record, fn, args, kwargs)
            ticket = admit()
            if ticket is WAIT:
                ticket = await wait(QUIET)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                settle(ticket, exc)
                raise
            settle_result(ticket, result)
            return result

        return admitted

    async def __aenter__(self: A) -> A:
        record = self._telemetry.start()
        if record is None:
            ticket = self._admit()
            if ticket is WAIT:
                ticket = await self._wait(QUIET)
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
                self._settle(None, exc)
            return
        ticket, record = entries.pop()
        if record is None:
            self._settle(ticket, exc)
        else:
            self._exit_recorded(ticket, exc, record)


class AwaitedSettlement(AdmissionPolicy):
    """The shell for a policy whose settling awaits: put it before the policy's class in
    the bases. Its hooks are `_settle_awaited` and `_settle_result_awaited`, the awaited
    twins of `_settle` and `_settle_result`; a call is over only when they return."""

    __slots__ = ()

    async def _settle_awaited(self, ticket: Any, error: BaseException | None) -> None:
        """`_settle`, awaited."""
        raise NotImplementedError

    async def _settle_result_awaited(self, ticket: Any, result: object) -> bool:
        """`_settle_result`, awaited: True when the result counts as a failure."""
        raise NotImplementedError

    async def _exit_awaited(
        self, ticket: Any, error: BaseException | None, record: CallRecord | None
    ) -> None:
        if record is None:
            await self._settle_awaited(ticket, error)
            return
        try:
            await self._settle_awaited(ticket, error)
        except BaseException as raised:
            record.end(outcome_of(raised), raised)
            raise
        _report(record, self._released_event)
        record.end("success" if error is None else outcome_of(error), error)

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        record = self._telemetry.start()
        if record is None:
            ticket = self._admit()
            if ticket is WAIT:
                ticket = await self._wait(QUIET)
        else:
            ticket = await self._enter_recorded(record)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._exit_awaited(ticket, exc, record)
            raise
        if record is None:
            await self._settle_result_awaited(ticket, result)
            return result
        try:
            failed = await self._settle_result_awaited(ticket, result)
        except BaseException as raised:
            record.end(outcome_of(raised), raised)
            raise
        _report(record, self._released_event)
        record.end("failure" if failed else "success")
        return result

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        run = self._run

        async def admitted(*args: Any, **kwargs: Any) -> T:
            return await run(fn, args, kwargs)

        return admitted

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ticket, record = self._entries.pop()
        await self._exit_awaited(ticket, exc, record)


def _report(record: CallRecord, report: Report | None) -> None:
    if report is not None:
        record.event(*report)
