"""Bulkhead: cap how many calls run at once, with an optional bounded FIFO queue."""

from __future__ import annotations

from typing import Any, Final, TypeVar

from resilient._admission import WAIT, AdmissionPolicy
from resilient._backend import one_shot_event
from resilient._clock import Clock, TimedScope
from resilient._deadline import time_left
from resilient._policy import given_arguments
from resilient._task_local import TaskLocalStack
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_optional_positive,
    check_positive_int,
)
from resilient._waitqueue import Link, WaitQueue
from resilient.exceptions import BulkheadFullError
from resilient.telemetry._core import CallRecord, PolicyTelemetry
from resilient.telemetry._spec import WAIT_DURATION, Effect, EventSpec, Instrument

__all__ = ("Bulkhead",)

T = TypeVar("T")

ATTR_WAITING: Final = "resilient.bulkhead.waiting"
ATTR_WAIT: Final = "resilient.wait.duration"

# -- what Bulkhead reports (telemetry as data; see resilient.telemetry) ----------------------

IN_FLIGHT: Final = Instrument(
    "resilient.bulkhead.in_flight", "up_down_counter", "{call}", "Calls running inside a bulkhead."
)
QUEUED_CALLS: Final = Instrument(
    "resilient.bulkhead.queued", "up_down_counter", "{call}", "Calls waiting for a bulkhead slot."
)
#: A call took a slot / gave it back.
ACQUIRED: Final = EventSpec(
    "resilient.bulkhead.acquired", span_event=False, effects=(Effect(IN_FLIGHT, 1),)
)
RELEASED: Final = EventSpec(
    "resilient.bulkhead.released", span_event=False, effects=(Effect(IN_FLIGHT, -1),)
)
#: A call joined the queue (`resilient.bulkhead.waiting`: the queue's length with it).
QUEUED: Final = EventSpec("resilient.bulkhead.queued", effects=(Effect(QUEUED_CALLS, 1),))
#: A call left the queue, whether or not it got a slot.
LEFT_QUEUE: Final = EventSpec(
    "resilient.bulkhead.left_queue", span_event=False, effects=(Effect(QUEUED_CALLS, -1),)
)
#: A queued call got its slot after `resilient.wait.duration` seconds.
DEQUEUED: Final = EventSpec(
    "resilient.bulkhead.dequeued", effects=(Effect(WAIT_DURATION, ATTR_WAIT),)
)
_NO_ATTRIBUTES: Final[dict[str, object]] = {}


class _Waiter(Link):
    """One queued caller. `granted` is set, with the event, when a slot is handed to it."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        super().__init__()
        self.event = one_shot_event()
        self.granted = False

    def wake(self) -> None:
        """Hand this waiter the slot it waited for."""
        self.granted = True
        self.event.set()


class BulkheadCore:
    """The slots and the queue of a bulkhead: pure and synchronous, no awaits.

    A released slot is handed straight to the oldest waiter rather than freed, so that a
    caller arriving between the release and the waiter's wake-up cannot take it (no
    barging). A waiter is whatever the async shell parks (a `_Waiter`); the core calls its
    `wake()` when it hands it a slot. Every operation takes constant time, however long the
    queue: a waiter that leaves is unlinked where it stands, not searched for.

    Examples:
        ```python
        core = BulkheadCore(1, max_waiting=1)
        assert core.try_acquire() and not core.try_acquire()
        core.enqueue(waiter)   # waiter.wake() is called when a slot is handed to it
        core.release()         # the slot goes to the waiter: still 1 in flight
        assert core.in_flight == 1
        ```
    """

    __slots__ = ("in_flight", "max_concurrent", "max_waiting", "waiters")

    def __init__(self, max_concurrent: int, *, max_waiting: int) -> None:
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.in_flight = 0
        self.waiters: WaitQueue[_Waiter] = WaitQueue()

    def try_acquire(self) -> bool:
        """Take a free slot if there is one."""
        if self.in_flight < self.max_concurrent:
            self.in_flight += 1
            return True
        return False

    def queue_full(self) -> bool:
        return self.waiters.size >= self.max_waiting

    def enqueue(self, waiter: _Waiter) -> None:
        self.waiters.append(waiter)

    def leave(self, waiter: _Waiter) -> None:
        """A waiter gives up its place in the queue (it timed out or was cancelled)."""
        self.waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back: to the oldest waiter (woken), or free it."""
        waiters = self.waiters
        if waiters.size:
            waiters.popleft().wake()
        else:
            self.in_flight -= 1


class Bulkhead(AdmissionPolicy):
    """Let at most `max_concurrent` calls run at once; queue or reject the rest.

    Args:
        max_concurrent: how many calls may run at the same time (a whole number >= 1).
            Required: the right value depends on what the bulkhead protects.
        max_waiting: how many callers may queue for a slot when all are busy (>= 0,
            default 0: no queue, reject at once).
        max_wait: how long, in seconds, a queued caller waits for a slot before it is
            rejected (> 0, default `None`: no limit of its own). A wait never outlasts the
            deadline of an enclosing `Timeout`.
        name: names the policy in telemetry and errors (default `"bulkhead"`).
        clock: the time source for `max_wait` (default: the monotonic clock).
        telemetry: `False` silences this policy's spans and metrics.

    Raises `BulkheadFullError` when every slot is busy and the queue is full, or when a
    queued caller waited `max_wait` without getting a slot. Queued callers are served
    first come, first served: a slot that is released goes straight to the oldest waiter,
    so a newcomer never jumps the queue. A waiter that is cancelled leaves the queue, and
    one cancelled just after it was handed a slot passes the slot on; no slot is ever lost.

    Examples:
        ```python
        bulkhead = Bulkhead(10, max_waiting=20, max_wait=0.5)

        @bulkhead
        async def render_report(report_id: int) -> bytes: ...

        async with bulkhead:
            await talk_to_the_slow_dependency()
        ```
    """

    __slots__ = (
        "_clock",
        "_core",
        "_entries",
        "_given",
        "_telemetry",
        "max_concurrent",
        "max_wait",
        "max_waiting",
        "name",
    )

    _ticketless = True

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_waiting: int = 0,
        max_wait: float | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        telemetry: bool = True,
    ) -> None:
        self._given = given_arguments(Bulkhead.__init__, locals())
        self.max_concurrent = check_positive_int("max_concurrent", max_concurrent)
        self.max_waiting = check_positive_int("max_waiting", max_waiting, minimum=0)
        self.max_wait = check_optional_positive("max_wait", max_wait)
        self.name = check_name(name, "bulkhead")
        self._clock = check_clock(clock)
        self._telemetry = PolicyTelemetry(
            "bulkhead", self.name, enabled=check_bool("telemetry", telemetry)
        )
        self._core = BulkheadCore(self.max_concurrent, max_waiting=self.max_waiting)
        self._entries: TaskLocalStack[tuple[Any, CallRecord | None]] = TaskLocalStack("Bulkhead")

    def __repr__(self) -> str:
        return (
            f"Bulkhead({self.max_concurrent!r}, max_waiting={self.max_waiting!r}, "
            f"max_wait={self.max_wait!r}, name={self.name!r})"
        )

    @property
    def in_flight(self) -> int:
        """How many calls hold a slot right now (running, or handed a slot and resuming)."""
        return self._core.in_flight

    @property
    def waiting(self) -> int:
        """How many callers are queued for a slot right now."""
        return len(self._core.waiters)

    # -- slots ----------------------------------------------------------------------------

    def _full(self, reason: str) -> BulkheadFullError:
        return BulkheadFullError(f"{self.name} is full: {reason}", policy=self.name)

    async def _wait(self, record: CallRecord) -> Any:
        """The admission hook for a full bulkhead: wait in line for a slot; return holding
        one, or raise BulkheadFullError."""
        core = self._core
        if core.queue_full():
            if self.max_waiting:
                raise self._full(f"{self.max_concurrent} running and {len(core.waiters)} queued")
            raise self._full(f"{self.max_concurrent} running and no queue")
        limit = self.max_wait
        left = time_left()
        if left is not None:
            if left <= 0:
                raise self._full("the enclosing deadline has passed")
            if limit is None or left < limit:
                limit = left
        waiter = _Waiter()
        core.enqueue(waiter)
        started = self._clock.now()
        record.event(QUEUED, {ATTR_WAITING: len(core.waiters)})
        try:
            if limit is None:
                await waiter.event.wait()
            else:
                with TimedScope(self._clock, limit):
                    await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                core.release()  # cancelled just after being handed a slot: pass it on
            else:
                core.leave(waiter)
            raise
        finally:
            record.event(LEFT_QUEUE, _NO_ATTRIBUTES)
        if not waiter.granted:
            core.leave(waiter)
            raise self._full(f"no slot within {limit:g}s")
        record.event(DEQUEUED, {ATTR_WAIT: self._clock.now() - started})
        record.event(ACQUIRED, _NO_ATTRIBUTES)
        return None

    # -- the admission hooks (the shell is resilient._admission) --------------------------

    _admitted_event = (ACQUIRED, _NO_ATTRIBUTES)
    _released_event = (RELEASED, _NO_ATTRIBUTES)

    def _admit(self) -> Any:
        return None if self._core.try_acquire() else WAIT

    def _settle(self, ticket: Any, error: BaseException | None) -> None:
        self._core.release()
