"""RateLimiter: admit at most `rate` permits per `per` seconds, per key (GCRA)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, TypeVar

import anyio

from resilient._admission import WAIT, AdmissionPolicy
from resilient._clock import Clock, TimedScope
from resilient._deadline import time_left
from resilient._policy import given_arguments
from resilient._task_local import TaskLocalStack
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_non_negative,
    check_positive,
    check_positive_int,
    short_repr,
)
from resilient.exceptions import RateLimitedError
from resilient.storage import Decision, MemoryStore, Store, SyncStore
from resilient.telemetry._core import QUIET, CallRecord, PolicyTelemetry, outcome_of
from resilient.telemetry._spec import WAIT_DURATION, Effect, EventSpec, Instrument

__all__ = ("RateLimiter",)

T = TypeVar("T")

ALLOWED: Final = "allowed"
DELAYED: Final = "delayed"
REJECTED: Final = "rejected"
ATTR_DECISION: Final = "resilient.rate_limit.decision"
ATTR_WAIT: Final = "resilient.wait.duration"

# -- what RateLimiter reports (telemetry as data; see resilient.telemetry) -------------------

DECISIONS: Final = Instrument(
    "resilient.rate_limit.decisions",
    "counter",
    "{decision}",
    "Rate limiter decisions: allowed, delayed or rejected.",
)
#: The limiter decided (`resilient.rate_limit.decision`: allowed, delayed or rejected); set
#: on the call's span as an attribute.
DECIDED: Final = EventSpec(
    "resilient.rate_limit.decision",
    span_attribute=ATTR_DECISION,
    effects=(Effect(DECISIONS, 1, ((ATTR_DECISION, ATTR_DECISION),)),),
)
#: An admitted call waits `resilient.wait.duration` seconds for its reserved permit.
DELAYED_CALL: Final = EventSpec(
    "resilient.rate_limit.delayed", effects=(Effect(WAIT_DURATION, ATTR_WAIT),)
)
#: Built once: the attributes of each decision.
_DECISION_ATTRS: Final = {d: {ATTR_DECISION: d} for d in (ALLOWED, DELAYED, REJECTED)}

#: Longest a cancelled waiter spends giving its reservation back to a remote store.
_REFUND_TIMEOUT: Final = 1.0

#: The largest `burst`: 2**53, the largest whole number from which a float still counts one
#: permit at a time. The bucket is float arithmetic (`burst * per / rate` seconds).
MAX_BURST: Final = 2**53


def _check_key(field: str, key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{field} must be a non-empty string, got {short_repr(key)}")
    return key


class RateLimiter(AdmissionPolicy):
    """Admit at most `rate` permits every `per` seconds, with bursts of up to `burst`.

    A token bucket, kept as GCRA (one timestamp per key): the bucket holds `burst`
    permits and refills one permit every `per / rate` seconds.

    Args:
        rate: permits per `per` seconds (a number > 0; fractions are fine: `rate=1,
            per=60` is one a minute).
        per: the period `rate` is counted over, in seconds (> 0, default 1.0). The time
            between two permits, `per / rate`, must be a finite number of seconds > 0.
        burst: the bucket size: how many permits may be taken at once after a quiet spell
            (a whole number from 1 to 2**53, about 9e15; default `rate` rounded down, at
            least 1). The bucket's size in seconds, `burst * per / rate`, must be finite.
        max_wait: seconds a caller may wait for a permit (>= 0, default 0.0: reject at
            once rather than block). A caller that waits has reserved its permit, so
            waiters are served first come, first served. A wait never outlasts the deadline
            of an enclosing `Timeout`: if it cannot fit, the call is rejected at once.
        store: where the buckets live (default: a `MemoryStore` of this limiter's own).
            Limiters sharing a store and a `name` share their buckets.
        key: the bucket the decorator, `.call()` and `async with` use (a non-empty
            string, default `"default"`).
        name: names the policy in telemetry, errors and shared state (default
            `"rate_limit"`).
        clock: the time source for waits, and for the default store's decisions
            (default: the monotonic clock). A shared store decides on its own clock.
        telemetry: `False` silences this policy's spans and metrics.

    Raises `RateLimitedError` when no permit is available within `max_wait`; its
    `retry_after` is the exact number of seconds until the request would be admitted.

    A caller cancelled while waiting gives its reservation back only if it is still the
    latest on that key (nobody reserved after it); otherwise the reservation is kept and
    simply expires, because giving it back would let a newcomer in ahead of callers already
    waiting behind it. The limit is never exceeded either way.

    Examples:
        ```python
        limiter = RateLimiter(100, per=1.0, burst=20)

        @limiter
        async def call_partner_api(order_id: int) -> dict: ...

        await limiter.acquire(key="tenant-42", cost=5)   # five permits from another bucket
        left = await limiter.remaining()                 # whole permits available now
        ```
    """

    __slots__ = (
        "_capacity",
        "_clock",
        "_default_key",
        "_emission_interval",
        "_entries",
        "_given",
        "_nowait",
        "_prefix",
        "_refund_nowait",
        "_store",
        "_telemetry",
        "burst",
        "key",
        "max_wait",
        "name",
        "per",
        "rate",
    )

    _ticketless = True
    _settles_unrecorded = False

    def __init__(
        self,
        rate: float,
        *,
        per: float = 1.0,
        burst: int | None = None,
        max_wait: float = 0.0,
        store: Store | None = None,
        key: str = "default",
        name: str | None = None,
        clock: Clock | None = None,
        telemetry: bool = True,
    ) -> None:
        self._given = given_arguments(RateLimiter.__init__, locals())
        self.rate = check_positive("rate", rate)
        self.per = check_positive("per", per)
        self._emission_interval = self.per / self.rate
        if not (0 < self._emission_interval < math.inf):
            raise ValueError(
                "per / rate, the seconds between two permits, must be a finite number > 0, "
                f"got per={short_repr(per)}, rate={short_repr(rate)}"
            )
        if burst is None:
            self.burst = max(1, math.floor(self.rate))
            if self.burst > MAX_BURST:
                raise ValueError(
                    f"burst must be given when rate is above {MAX_BURST}, the largest burst "
                    f"(it defaults to rate rounded down), got rate={short_repr(rate)}"
                )
        else:
            self.burst = check_positive_int("burst", burst, maximum=MAX_BURST)
        # The bucket size in seconds, computed once for the synchronous fast path.
        self._capacity = self.burst * self._emission_interval
        if self._capacity == math.inf:
            raise ValueError(
                "burst * per / rate, the bucket's size in seconds, must be finite, "
                f"got burst={self.burst}, per={short_repr(per)}, rate={short_repr(rate)}"
            )
        self.max_wait = check_non_negative("max_wait", max_wait)
        self.key = _check_key("key", key)
        self.name = check_name(name, "rate_limit")
        self._clock = check_clock(clock)
        if store is None:
            # A private store: no other limiter can reach it, so keys need no namespace.
            store = MemoryStore(clock=self._clock)
            self._prefix = ""
        elif not isinstance(store, Store):
            raise ValueError(
                f"store must implement resilient.storage.Store, got {short_repr(store)}"
            )
        else:
            # Length-prefixed, so no (name, key) pair can collide with another.
            self._prefix = f"{len(self.name)}:{self.name}:"
        self._store: Store = store
        self._default_key = self._prefix + self.key
        if isinstance(store, SyncStore):
            # A store with its state in this process: bound once, a granted permit is one
            # synchronous call, no await.
            self._nowait: Callable[[str, float, float], float] | None = store.acquire_nowait
            self._refund_nowait: Callable[[str, float, float, int], bool] | None = (
                store.refund_nowait
            )
        else:
            # A shared store may still answer at once while its backend is down (NaN:
            # "await me"); its refunds always await.
            self._nowait = getattr(store, "_decide_nowait", None)
            self._refund_nowait = None
        self._entries: TaskLocalStack[tuple[Any, CallRecord | None]] = TaskLocalStack("RateLimiter")
        self._telemetry = PolicyTelemetry(
            "rate_limit", self.name, enabled=check_bool("telemetry", telemetry)
        )

    def __repr__(self) -> str:
        return (
            f"RateLimiter({self.rate:g}, per={self.per:g}, burst={self.burst!r}, "
            f"max_wait={self.max_wait:g}, name={self.name!r})"
        )

    @property
    def store(self) -> Store:
        """Where this limiter's buckets live."""
        return self._store

    # -- checks -----------------------------------------------------------------------------

    def _store_key(self, key: Any) -> str:
        return self._prefix + _check_key("key", key)

    def _check_cost(self, cost: Any) -> int:
        if not isinstance(cost, int) or isinstance(cost, bool) or cost < 1:
            raise ValueError(f"cost must be a whole number >= 1, got {short_repr(cost)}")
        if cost > self.burst:
            raise ValueError(
                f"cost must be at most burst ({self.burst}): {cost} permits could never be "
                "admitted at once"
            )
        return cost

    # -- deciding ---------------------------------------------------------------------------

    def _count(self, record: CallRecord, decision: str) -> None:
        record.event(DECIDED, _DECISION_ATTRS[decision])

    def _rejected(self, retry_after: float, cost: int, record: CallRecord) -> RateLimitedError:
        self._count(record, REJECTED)
        return self._rejection(retry_after, cost)

    def _rejection(self, retry_after: float, cost: int) -> RateLimitedError:
        what = "has no permit left" if cost == 1 else f"does not have {cost} permits left"
        return RateLimitedError(
            f"rate limiter {self.name!r} {what} within its limit of {self.rate:g} per "
            f"{self.per:g}s; retry after {retry_after:.3g}s",
            policy=self.name,
            retry_after=retry_after,
        )

    def _wait_limit(self) -> float:
        """How long a caller may wait now: `max_wait`, or less before the enclosing deadline."""
        limit = self.max_wait
        left = time_left()
        if left is not None and left < limit:
            limit = left
        return limit

    async def _admit_slow(
        self,
        record: CallRecord,
        key: str | None = None,
        cost: int = 1,
        needed: float | None = None,
    ) -> None:
        # `key` is the store key (None: the limiter's own); `needed` is the synchronous
        # store's answer to "admit now?": the seconds to wait, or None when the store has not
        # been asked yet. Called with the record alone, this is the shell's `_wait` hook.
        if key is None:
            key = self._default_key
        limit = self._wait_limit()
        if needed is not None and limit <= 0:
            raise self._rejected(needed, cost, record)
        decision = await self._store.acquire(
            key,
            emission_interval=self._emission_interval,
            burst=self.burst,
            cost=cost,
            max_wait=max(limit, 0.0),
        )
        if not decision.allowed:
            raise self._rejected(decision.retry_after, cost, record)
        if decision.wait > 0:
            await self._wait_in_line(key, cost, decision, record)
        else:
            self._count(record, ALLOWED)

    async def _wait_in_line(
        self, key: str, cost: int, decision: Decision, record: CallRecord
    ) -> None:
        wait = decision.wait
        self._count(record, DELAYED)
        record.event(DELAYED_CALL, {ATTR_WAIT: wait})
        try:
            with TimedScope(self._clock, wait):
                await anyio.sleep_forever()
        except BaseException:
            await self._give_back(key, cost, decision.tat)
            raise

    async def _give_back(self, key: str, cost: int, tat: float) -> None:
        refund_nowait = self._refund_nowait
        if refund_nowait is not None:
            refund_nowait(key, tat, self._emission_interval, cost)
            return
        # We are being cancelled: shield the round trip, and bound it, since a store that is
        # down must not hold the cancellation up.
        with anyio.move_on_after(_REFUND_TIMEOUT, shield=True):
            try:
                await self._store.refund(
                    key, tat=tat, emission_interval=self._emission_interval, cost=cost
                )
            except Exception:
                # An unrefunded permit just expires; the caller's cancellation is what
                # must propagate, not a storage error.
                pass

    # -- faces ------------------------------------------------------------------------------

    async def acquire(self, key: str | None = None, cost: int = 1) -> None:
        """Take `cost` permits from `key`'s bucket, waiting up to `max_wait` if allowed to.

        Args:
            key: the bucket (a non-empty string; default: the limiter's `key`).
            cost: permits to take (a whole number, 1 <= cost <= burst).

        Raises:
            RateLimitedError: no permits within `max_wait` (or before the enclosing
                deadline); `retry_after` says when they will be there.
            ValueError: `key` is not a non-empty string, or `cost` is out of range.

        Examples:
            ```python
            limiter = RateLimiter(10, per=1.0)
            await limiter.acquire()                       # one permit, default bucket
            await limiter.acquire(key="user:7", cost=3)   # three, from user 7's bucket
            ```
        """
        store_key = self._default_key if key is None else self._store_key(key)
        if cost != 1 or type(cost) is not int:
            cost = self._check_cost(cost)
        record = self._telemetry.start()
        nowait = self._nowait
        needed = None
        if nowait is not None:
            needed = nowait(store_key, cost * self._emission_interval, self._capacity)
            if not needed:
                if record is not None:
                    self._count(record, ALLOWED)
                    record.end("success")
                return
            if needed != needed:  # NaN: the store must be awaited
                needed = None
        if record is None:
            await self._admit_slow(QUIET, store_key, cost, needed)
            return
        try:
            await self._admit_slow(record, store_key, cost, needed)
        except RateLimitedError as error:
            record.end(REJECTED, error)
            raise
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise
        record.end("success")

    async def remaining(self, key: str | None = None) -> int:
        """Whole permits that `key`'s bucket could hand out right now, without waiting.

        Args:
            key: the bucket (default: the limiter's `key`).

        Examples:
            ```python
            limiter = RateLimiter(5)
            await limiter.acquire(cost=2)
            assert await limiter.remaining() == 3
            ```
        """
        store_key = self._default_key if key is None else self._store_key(key)
        return await self._store.peek(
            store_key, emission_interval=self._emission_interval, burst=self.burst
        )

    # -- the admission hooks (the shell is resilient._admission) --------------------------

    _admitted_event = (DECIDED, _DECISION_ATTRS[ALLOWED])
    _rejected_event = (DECIDED, _DECISION_ATTRS[REJECTED])

    def _admit(self) -> Any:
        nowait = self._nowait
        if nowait is None:
            return WAIT
        needed = nowait(self._default_key, self._emission_interval, self._capacity)
        if not needed:
            return None
        if needed != needed:  # NaN: the store must be awaited
            return WAIT
        if self._wait_limit() <= 0:
            raise self._rejection(needed, 1)
        return WAIT

    # Waiting for the default bucket is the slow path itself, with no frame of its own
    # (every call while a shared store is down takes it). Its ticket is None.
    _wait = _admit_slow

    def _settle(self, ticket: Any, error: BaseException | None) -> None:
        return None  # the permit was spent at admission
