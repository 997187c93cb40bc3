"""LoadShedder: a concurrency limit, static or adaptive, with a bounded queue per priority."""

from __future__ import annotations

from typing import Any, Final

from resilient._admission import WAIT, AdmissionPolicy
from resilient._backend import one_shot_event
from resilient._clock import Clock, TimedScope
from resilient._deadline import time_left
from resilient._task_local import TaskLocalStack
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_optional_positive,
    check_positive_int,
    short_repr,
)
from resilient._waitqueue import Link, WaitQueue
from resilient.exceptions import LoadShedError, RejectedError
from resilient.load_shedding._limits import AdaptiveLimit
from resilient.load_shedding._priority import priority_var
from resilient.telemetry._core import CallRecord, PolicyTelemetry
from resilient.telemetry._spec import WAIT_DURATION, Effect, EventSpec, Instrument

__all__ = ("LoadShedder", "ShedderCore")

#: Why a call was shed (`LoadShedError.reason`, and the `resilient.load_shed.reason`
#: attribute of its span event and metric).
LIMIT: Final = "limit"
QUEUE_FULL: Final = "queue_full"
WAITED_TOO_LONG: Final = "waited_too_long"
PRIORITY: Final = "priority"

ATTR_REASON: Final = "resilient.load_shed.reason"
ATTR_PRIORITY: Final = "resilient.load_shed.priority"
ATTR_WAITING: Final = "resilient.load_shed.waiting"
ATTR_LIMIT_DELTA: Final = "resilient.load_shed.limit.delta"
ATTR_WAIT: Final = "resilient.wait.duration"

# -- what LoadShedder reports (telemetry as data; see resilient.telemetry) -------------------

SHED_REQUESTS: Final = Instrument(
    "resilient.load_shed.requests",
    "counter",
    "{request}",
    "Requests a load shedder turned away, by reason.",
)
ADMITTED_REQUESTS: Final = Instrument(
    "resilient.load_shed.admitted", "counter", "{request}", "Requests a load shedder admitted."
)
QUEUED_REQUESTS: Final = Instrument(
    "resilient.load_shed.queued",
    "counter",
    "{request}",
    "Requests that waited in a load shedder's queue.",
)
IN_FLIGHT: Final = Instrument(
    "resilient.load_shed.in_flight",
    "up_down_counter",
    "{request}",
    "Requests running inside a load shedder.",
)
CURRENT_LIMIT: Final = Instrument(
    "resilient.load_shed.limit",
    "up_down_counter",
    "{request}",
    "A load shedder's current concurrency limit.",
)
#: A call took a slot (at once, or after waiting) / gave it back.
ADMITTED: Final = EventSpec(
    "resilient.load_shed.admitted",
    span_event=False,
    effects=(Effect(ADMITTED_REQUESTS, 1), Effect(IN_FLIGHT, 1)),
)
RELEASED: Final = EventSpec(
    "resilient.load_shed.released", span_event=False, effects=(Effect(IN_FLIGHT, -1),)
)
#: A call joined the queue (`resilient.load_shed.waiting`: the queue's length with it).
QUEUED: Final = EventSpec("resilient.load_shed.queued", effects=(Effect(QUEUED_REQUESTS, 1),))
#: A queued call got its slot after `resilient.wait.duration` seconds.
DEQUEUED: Final = EventSpec(
    "resilient.load_shed.dequeued", effects=(Effect(WAIT_DURATION, ATTR_WAIT),)
)
#: A call was turned away, with `resilient.load_shed.reason`.
SHED: Final = EventSpec(
    "resilient.load_shed.shed",
    effects=(Effect(SHED_REQUESTS, 1, ((ATTR_REASON, ATTR_REASON),)),),
)
#: The limit moved by `resilient.load_shed.limit.delta`.
LIMIT_CHANGED: Final = EventSpec(
    "resilient.load_shed.limit_changed",
    span_event=False,
    effects=(Effect(CURRENT_LIMIT, ATTR_LIMIT_DELTA),),
)
_NO_ATTRIBUTES: Final[dict[str, object]] = {}
_SHED_ATTRIBUTES: Final = {
    reason: {ATTR_REASON: reason} for reason in (LIMIT, QUEUE_FULL, WAITED_TOO_LONG, PRIORITY)
}
#: The weight of each new round trip in the average behind `retry_after`.
_RTT_WEIGHT: Final = 0.1


class _Waiter(Link):
    """One queued caller. `granted` is set, with the event, when a slot is handed to it;
    `evicted` when a more important caller took its place in the queue."""

    __slots__ = ("event", "evicted", "granted", "level")

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.event = one_shot_event()
        self.granted = False
        self.evicted = False

    def wake(self) -> None:
        """Hand this waiter the slot it waited for."""
        self.granted = True
        self.event.set()

    def evict(self) -> None:
        """Push this waiter out of the queue, without a slot."""
        self.evicted = True
        self.event.set()


class ShedderCore:
    """The slots and the queues of a load shedder: pure and synchronous, no awaits.

    `limit` calls may hold a slot at once; beyond that, callers wait in one FIFO per
    priority level, `max_waiting` of them in all. A released slot goes straight to the
    oldest waiter of the most important level (no barging). When the queue is full, a
    newcomer pushes out the newest waiter of the least important level below its own, or
    is refused. Waiters exist only while every slot is taken: raising the limit hands the
    new slots out at once; lowering it takes slots back as calls end.

    Examples:
        ```python
        core = ShedderCore(1, max_waiting=1, levels=2)
        assert core.try_acquire() and not core.try_acquire()
        assert core.enqueue(waiter) is None   # queued; waiter.wake() hands it a slot
        core.release()                        # the slot goes to the waiter
        ```
    """

    __slots__ = ("in_flight", "limit", "max_waiting", "queues", "waiting")

    def __init__(self, limit: int, *, max_waiting: int, levels: int) -> None:
        self.limit = limit
        self.max_waiting = max_waiting
        self.in_flight = 0
        self.waiting = 0
        self.queues: tuple[WaitQueue[_Waiter], ...] = tuple(WaitQueue() for _ in range(levels))

    def try_acquire(self) -> bool:
        """Take a free slot if there is one."""
        if self.in_flight < self.limit:
            self.in_flight += 1
            return True
        return False

    def enqueue(self, waiter: _Waiter) -> str | None:
        """Queue `waiter`; None when it is queued, or the reason it is refused.

        A full queue makes room by evicting (`evict()`) the newest waiter of the least
        important level that is less important than `waiter`'s.
        """
        if not self.max_waiting:
            return LIMIT
        if self.waiting >= self.max_waiting:
            queues = self.queues
            for level in range(len(queues) - 1, waiter.level, -1):
                if queues[level].size:
                    queues[level].pop().evict()
                    self.waiting -= 1
                    break
            else:
                return QUEUE_FULL
        self.queues[waiter.level].append(waiter)
        self.waiting += 1
        return None

    def leave(self, waiter: _Waiter) -> None:
        """A waiter gives up its place in the queue (it timed out or was cancelled)."""
        if self.queues[waiter.level].remove(waiter):
            self.waiting -= 1

    def _hand_over(self) -> bool:
        for queue in self.queues:
            if queue.size:
                self.waiting -= 1
                queue.popleft().wake()
                return True
        return False

    def release(self) -> None:
        """Give a slot back: to the most important, oldest waiter, or free it."""
        if not (self.waiting and self.in_flight <= self.limit and self._hand_over()):
            self.in_flight -= 1

    def set_limit(self, limit: int) -> None:
        """Move the limit; new slots go to waiters at once."""
        self.limit = limit
        while self.waiting and self.in_flight < limit and self._hand_over():
            self.in_flight += 1


class LoadShedder(AdmissionPolicy):
    """Let at most `limit` calls run at once; queue a few more by priority; refuse the rest
    at once with `LoadShedError`.

    Args:
        limit: the concurrency limit: a whole number >= 1 (default 100), or an adaptive
            limit (`AIMD(...)`, `Gradient2(...)`) that learns it from the round trips of the
            calls it admits. Give each shedder its own adaptive limit object.
        max_waiting: how many callers may wait for a slot, across every priority level
            (>= 0, default 0: no queue, refuse at once). Keep it small: a long queue only
            turns overload into latency.
        max_wait: how long, in seconds, a queued caller waits before it is dropped, unrun
            (> 0, default `None`: no limit of its own). A wait never outlasts the deadline
            of an enclosing `Timeout`.
        priority_levels: how many priority levels the queue tells apart (>= 1, default 1).
            A call's level is read from `resilient.load_shedding.priority`: 0 is the most
            important; a level past `priority_levels - 1` counts as the last.
        name: names the policy in telemetry and errors (default `"load_shed"`).
        clock: the time source for `max_wait` and round trips (default: monotonic).
        telemetry: `False` silences this policy's spans and metrics.

    A call runs at once while fewer than `limit` run. Otherwise it waits in the FIFO of its
    priority level, when there is room; a full queue makes room by pushing out the newest
    waiter of a less important level, so under pressure the least important calls are
    shed first; a released slot goes to the oldest waiter of the most important level. A
    waiter still queued after `max_wait` (or at the enclosing deadline) is dropped before
    it runs. A waiter that is cancelled leaves the queue and its timer at once; one
    cancelled just after it was handed a slot passes the slot on.

    With an adaptive limit, each call that ends is a sample: its round trip (admission
    to end, on `clock`), the calls in flight when it was admitted, and whether it was
    *dropped*: it raised a `TimeoutError` (a `Timeout` inside it expired) or a
    `RejectedError` (something further down turned it away). Calls that were cancelled or
    failed otherwise are not samples.

    Raises `LoadShedError` (with its `reason`: `"limit"`, `"queue_full"`,
    `"waited_too_long"` or `"priority"`).

    Examples:
        ```python
        shedder = LoadShedder(64, max_waiting=16, max_wait=0.1, priority_levels=3)

        @shedder
        async def handle(request: Request) -> Response: ...

        with priority(2):                     # sheddable: a prefetch
            await handle(prefetch_request)

        adaptive = LoadShedder(AIMD(min_limit=4, timeout=0.5))
        ```
    """

    __slots__ = (
        "_adaptive",
        "_clock",
        "_core",
        "_entries",
        "_reported_limit",
        "_rtt",
        "_telemetry",
        "max_wait",
        "max_waiting",
        "name",
        "priority_levels",
    )

    _ticketless = True

    def __init__(
        self,
        limit: int | AdaptiveLimit = 100,
        *,
        max_waiting: int = 0,
        max_wait: float | None = None,
        priority_levels: int = 1,
        name: str | None = None,
        clock: Clock | None = None,
        telemetry: bool = True,
    ) -> None:
        if isinstance(limit, int) and not isinstance(limit, bool):
            self._adaptive: AdaptiveLimit | None = None
            initial = check_positive_int("limit", limit)
        elif isinstance(limit, AdaptiveLimit):
            self._adaptive = limit
            initial = limit.limit
        else:
            raise ValueError(
                "limit must be a whole number >= 1 or an adaptive limit (AIMD, Gradient2), "
                f"got {short_repr(limit)}"
            )
        self.max_waiting = check_positive_int("max_waiting", max_waiting, minimum=0)
        self.max_wait = check_optional_positive("max_wait", max_wait)
        self.priority_levels = check_positive_int("priority_levels", priority_levels)
        self.name = check_name(name, "load_shed")
        self._clock = check_clock(clock)
        self._telemetry = PolicyTelemetry(
            "load_shed", self.name, enabled=check_bool("telemetry", telemetry)
        )
        self._core = ShedderCore(initial, max_waiting=self.max_waiting, levels=self.priority_levels)
        self._entries: TaskLocalStack[tuple[Any, CallRecord | None]] = TaskLocalStack("LoadShedder")
        self._rtt: float | None = None
        self._reported_limit = 0
        self._report_limit()

    def __repr__(self) -> str:
        limit = self._core.limit if self._adaptive is None else self._adaptive
        return (
            f"LoadShedder({limit!r}, max_waiting={self.max_waiting!r}, "
            f"max_wait={self.max_wait!r}, priority_levels={self.priority_levels!r}, "
            f"name={self.name!r})"
        )

    @property
    def limit(self) -> int:
        """The current concurrency limit (it moves when the limit is adaptive)."""
        return self._core.limit

    @property
    def in_flight(self) -> int:
        """How many calls hold a slot right now."""
        return self._core.in_flight

    @property
    def waiting(self) -> int:
        """How many callers are queued for a slot right now, across every level."""
        return self._core.waiting

    # -- waiting ---------------------------------------------------------------------------

    def _shed(self, reason: str, detail: str, record: CallRecord) -> LoadShedError:
        record.event(SHED, _SHED_ATTRIBUTES[reason])
        return LoadShedError(
            f"{self.name} shed the call: {detail}",
            policy=self.name,
            retry_after=self._rtt,
            reason=reason,
        )

    def _level(self) -> int:
        last = self.priority_levels - 1
        if not last:
            return 0
        level = priority_var.get()
        return level if level < last else last

    async def _wait(self, record: CallRecord) -> Any:
        """The admission hook for a shedder at its limit: queue by priority; return
        holding a slot, or raise LoadShedError."""
        core = self._core
        if not self.max_waiting:
            raise self._shed(
                LIMIT, f"{core.in_flight} running, at the limit of {core.limit}", record
            )
        limit = self.max_wait
        left = time_left()
        if left is not None:
            if left <= 0:
                raise self._shed(WAITED_TOO_LONG, "the enclosing deadline has passed", record)
            if limit is None or left < limit:
                limit = left
        waiter = _Waiter(self._level())
        refused = core.enqueue(waiter)
        if refused is not None:
            raise self._shed(
                refused, f"{core.waiting} queued, at most {self.max_waiting} may wait", record
            )
        clock = self._clock
        started = clock.now()
        record.event(QUEUED, {ATTR_WAITING: core.waiting})
        try:
            if limit is None:
                await waiter.event.wait()
            else:
                with TimedScope(clock, limit):
                    await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self._release()  # cancelled just after being handed a slot: pass it on
            else:
                core.leave(waiter)
            raise
        if not waiter.granted:
            if waiter.evicted:
                raise self._shed(
                    PRIORITY, "pushed out of the queue by a more important call", record
                )
            core.leave(waiter)
            raise self._shed(WAITED_TOO_LONG, f"no slot within {limit:g}s", record)
        now = clock.now()
        record.event(DEQUEUED, {ATTR_WAIT: now - started})
        record.event(ADMITTED, _NO_ATTRIBUTES)
        return None if self._adaptive is None else (now, core.in_flight)

    # -- the admission hooks (the shell is resilient._admission) ---------------------------

    _admitted_event = (ADMITTED, _NO_ATTRIBUTES)
    _released_event = (RELEASED, _NO_ATTRIBUTES)

    def _admit(self) -> Any:
        core = self._core
        if core.in_flight < core.limit:
            core.in_flight += 1
            if self._adaptive is None:
                return None
            return (self._clock.now(), core.in_flight)
        return WAIT

    def _settle(self, ticket: Any, error: BaseException | None) -> None:
        if ticket is None:
            self._release()
            return
        if error is None or isinstance(error, TimeoutError | RejectedError):
            started, in_flight = ticket
            now = self._clock.now()
            rtt = now - started
            if error is None:
                previous = self._rtt
                self._rtt = rtt if previous is None else previous + _RTT_WEIGHT * (rtt - previous)
            assert self._adaptive is not None
            limit = self._adaptive.update(now, rtt, in_flight, error is not None)
            self._release()
            if limit != self._core.limit:
                self._core.set_limit(limit)
                self._report_limit()
        else:
            self._release()

    def _release(self) -> None:
        self._core.release()

    # -- telemetry --------------------------------------------------------------------------

    def _report_limit(self) -> None:
        """Move the limit gauge by how much the limit moved since it was last reported."""
        telemetry = self._telemetry
        if not telemetry.metrics_ready():
            return
        delta = self._core.limit - self._reported_limit
        if delta:
            telemetry.emit(LIMIT_CHANGED, {ATTR_LIMIT_DELTA: delta})
            self._reported_limit = self._core.limit
