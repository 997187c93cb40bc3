"""Every exception resilient raises, in one place.

The hierarchy::

    ResilienceError                     base of everything resilient raises itself
    ├── RejectedError                   the call did not run; carries .policy and .retry_after
    │   ├── CircuitOpenError            a circuit breaker is open (or half-open and busy)
    │   ├── BulkheadFullError           a bulkhead has no free slot and no room to wait
    │   ├── RateLimitedError            a rate limiter has no permit within max_wait
    │   ├── LoadShedError               a load shedder is over its limit; carries .reason
    │   └── ThrottledError              an adaptive throttle refused the call locally
    ├── TimeoutExceeded                 a Timeout's deadline passed; also a built-in TimeoutError
    └── StorageUnavailableError         a shared store cannot be reached and is set to deny

Catch `RejectedError` to handle every "the call was never attempted" case at once, for
example to answer 503 with a `Retry-After` header taken from `retry_after`.

Errors raised by the protected call itself are never wrapped: a `Retry` that gives up
re-raises the call's own last exception, with a note (`BaseException.add_note`) saying why
it stopped.
"""

from __future__ import annotations

__all__ = (
    "BulkheadFullError",
    "CircuitOpenError",
    "LoadShedError",
    "RateLimitedError",
    "RejectedError",
    "ResilienceError",
    "StorageUnavailableError",
    "ThrottledError",
    "TimeoutExceeded",
)


class ResilienceError(Exception):
    """Base class of every exception that resilient raises itself."""


class RejectedError(ResilienceError):
    """A policy turned the call away before it ran.

    Args:
        policy: the name of the policy that rejected the call (its `name=`, or its kind).
        retry_after: seconds after which trying again may succeed, or `None` when unknown.
        message: the human-readable reason.

    `Retry` does not retry a `RejectedError` unless its `on=` names it explicitly: retrying
    straight into an open breaker or an exhausted limiter only adds load.
    """

    def __init__(self, message: str, *, policy: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.policy = policy
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), self.policy, self.retry_after))


def _rebuild(
    cls: type[RejectedError], message: str, policy: str, retry_after: float | None
) -> RejectedError:
    return cls(message, policy=policy, retry_after=retry_after)


class CircuitOpenError(RejectedError):
    """Raised by `CircuitBreaker` while it is open, forced open, or half-open with every
    probe slot taken. `retry_after` says when the next probe will be admitted."""


class BulkheadFullError(RejectedError):
    """Raised by `Bulkhead` when every slot is busy and the queue is full, or when a queued
    call waited `max_wait` seconds (or up to the enclosing deadline) without getting a slot."""


class RateLimitedError(RejectedError):
    """Raised by `RateLimiter` when no permit is available within `max_wait` (or before the
    enclosing deadline). `retry_after` is when the permit will be available."""


class LoadShedError(RejectedError):
    """Raised by `resilient.load_shedding.LoadShedder` when it turns a call away before it
    runs: every slot is taken and there is no room to wait, or the call waited too long.

    `reason` says which: `"limit"` (over the concurrency limit, no queue), `"queue_full"`
    (the queue is full of calls at least as important), `"waited_too_long"` (queued past
    `max_wait` or the enclosing deadline) or `"priority"` (a queued call pushed out by a
    more important one). `retry_after` is the recent round trip of admitted calls, in
    seconds, when the shedder measures it (an adaptive limit), else `None`.
    """

    def __init__(
        self,
        message: str,
        *,
        policy: str,
        retry_after: float | None = None,
        reason: str = "limit",
    ) -> None:
        super().__init__(message, policy=policy, retry_after=retry_after)
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_shed, (str(self), self.policy, self.retry_after, self.reason))


def _rebuild_shed(
    message: str, policy: str, retry_after: float | None, reason: str
) -> LoadShedError:
    return LoadShedError(message, policy=policy, retry_after=retry_after, reason=reason)


class ThrottledError(RejectedError):
    """Raised by `AdaptiveThrottle` when it refuses a call locally, before sending it,
    because the upstream has been refusing most recent calls (client-side adaptive
    throttling). `retry_after` is the throttle's bucket width, in seconds: the soonest its
    window of outcomes moves on."""


class TimeoutExceeded(ResilienceError, TimeoutError):
    """Raised by `Timeout` when its deadline passes before the call finishes.

    It is also a built-in `TimeoutError`, so code that already catches `TimeoutError`
    keeps working. `timeout` is the policy's limit in seconds.
    """

    def __init__(self, message: str, *, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_timeout, (str(self), self.timeout))


def _rebuild_timeout(message: str, timeout: float) -> TimeoutExceeded:
    return TimeoutExceeded(message, timeout=timeout)


class StorageUnavailableError(ResilienceError):
    """Raised by a store shared between processes (`resilient.storage.RedisStore`) built
    with `on_unavailable="deny"`, when it cannot reach its backend: Redis did not answer
    within the store's `timeout`, refused the connection, or has been counted as down
    since several round trips in a row failed. The error that made Redis unreachable, when
    there was one, is its `__cause__`.

    It is not a `RejectedError`: the call was turned away because the limit could not be
    checked, not because it was over the limit.
    """
