"""Adaptive concurrency limits: pure cores fed each call's round trip, returning the limit.

Both follow Netflix's concurrency-limits library (`AIMDLimit`, `Gradient2Limit` in
`concurrency-limits-core/.../limit/`), with its parameters and defaults. Each is plain
synchronous arithmetic: `update(now, rtt, in_flight, dropped)` takes one sample and returns
the new limit, so it is tested without an event loop and driven by `LoadShedder`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from resilient._validate import (
    check_bool,
    check_non_negative,
    check_positive,
    check_positive_int,
    check_ratio,
    short_repr,
)

__all__ = ("AIMD", "AdaptiveLimit", "Gradient2")

#: The shortest round trip the cores divide by, in seconds (a zero reading from a coarse
#: clock must not divide by zero).
_MIN_RTT = 1e-9


@runtime_checkable
class AdaptiveLimit(Protocol):
    """What `LoadShedder(limit=...)` accepts besides an `int`: a limit that learns.

    `limit` is the current concurrency limit. `update(now, rtt, in_flight, dropped)` takes
    one finished call (when it ended on the shedder's clock, its round trip in seconds, how
    many calls were in flight when it was admitted, itself included, and whether it was
    dropped: it timed out or was turned away further down) and returns the new limit.
    """

    @property
    def limit(self) -> int:
        """The current limit."""
        ...

    def update(self, now: float, rtt: float, in_flight: int, dropped: bool) -> int:
        """Take one sample; return the new limit."""
        ...


def _check_bounds(initial_limit: int, min_limit: int, max_limit: int) -> tuple[int, int, int]:
    min_limit = check_positive_int("min_limit", min_limit)
    max_limit = check_positive_int("max_limit", max_limit, minimum=min_limit)
    initial_limit = check_positive_int("initial_limit", initial_limit, minimum=min_limit)
    if initial_limit > max_limit:
        raise ValueError(
            f"initial_limit must be a whole number in [{min_limit}, {max_limit}], "
            f"got {initial_limit!r}"
        )
    return initial_limit, min_limit, max_limit


class AIMD:
    """Additive increase, multiplicative decrease: grow by one while calls are healthy,
    back off by a ratio when one is dropped or too slow (Netflix `AIMDLimit`).

    Args:
        initial_limit: the limit before any sample (default 20, Netflix's
            `AIMDLimit.Builder.initialLimit`).
        min_limit: the limit never goes below this (default 20, Netflix's `minLimit`;
            lower it for a service whose true capacity is smaller).
        max_limit: the limit never goes above this (default 200, Netflix's `maxLimit`).
        backoff_ratio: the limit is multiplied by this on a drop, in [0.5, 1) (default
            0.9, Netflix's `backoffRatio`).
        timeout: a call slower than this many seconds counts as a drop (default 5.0,
            Netflix's `DEFAULT_TIMEOUT` of 5 s). Set it a little above the service's
            normal latency (1.25x, say) for the limit to settle near its capacity.
        per_round_trip: False (default, Netflix's rule) grows the limit by one per
            healthy sample and backs off on every drop; True grows it by one per limit's
            worth of healthy samples (about one per round trip) and backs off at most
            once per round trip, as TCP's congestion avoidance does: a drop from a call
            admitted before the last backoff is not counted again. Netflix's rule moves
            fast and swings wide under sustained overload (from `min_limit` to twice the
            capacity); per round trip, the limit settles in a narrow band.

    On each sample: a drop (or a round trip over `timeout`) sets the limit to
    `int(limit * backoff_ratio)`; otherwise, when at least half the limit was in use, the
    limit grows by one (a service that uses less than half its limit is not stretching it,
    so it learns nothing). The result is kept within `[min_limit, max_limit]`.

    Examples:
        ```python
        aimd = AIMD(initial_limit=10, min_limit=1, timeout=0.5)
        assert aimd.update(0.0, 0.02, in_flight=8, dropped=False) == 11
        assert aimd.update(0.1, 0.02, in_flight=8, dropped=True) == 9
        ```
    """

    __slots__ = (
        "_backed_off_at",
        "_estimate",
        "_limit",
        "backoff_ratio",
        "max_limit",
        "min_limit",
        "per_round_trip",
        "timeout",
    )

    def __init__(
        self,
        *,
        initial_limit: int = 20,
        min_limit: int = 20,
        max_limit: int = 200,
        backoff_ratio: float = 0.9,
        timeout: float = 5.0,
        per_round_trip: bool = False,
    ) -> None:
        self._limit, self.min_limit, self.max_limit = _check_bounds(
            initial_limit, min_limit, max_limit
        )
        ratio = check_ratio("backoff_ratio", backoff_ratio)
        if not 0.5 <= ratio < 1.0:
            raise ValueError(f"backoff_ratio must be a number in [0.5, 1), got {backoff_ratio!r}")
        self.backoff_ratio = ratio
        self.timeout = check_positive("timeout", timeout)
        self.per_round_trip = check_bool("per_round_trip", per_round_trip)
        self._estimate = float(self._limit)  # per round trip: the limit, with its fraction
        self._backed_off_at = float("-inf")

    def __repr__(self) -> str:
        return (
            f"AIMD(limit={self._limit}, min_limit={self.min_limit}, "
            f"max_limit={self.max_limit}, backoff_ratio={self.backoff_ratio!r}, "
            f"timeout={self.timeout!r}, per_round_trip={self.per_round_trip!r})"
        )

    @property
    def limit(self) -> int:
        """The current limit."""
        return self._limit

    def update(self, now: float, rtt: float, in_flight: int, dropped: bool) -> int:
        """Take one finished call; return the new limit."""
        if self.per_round_trip:
            return self._update_per_round_trip(now, rtt, in_flight, dropped)
        limit = self._limit
        if dropped or rtt > self.timeout:
            limit = int(limit * self.backoff_ratio)
        elif in_flight * 2 >= limit:
            limit += 1
        self._limit = limit = min(self.max_limit, max(self.min_limit, limit))
        return limit

    def _update_per_round_trip(self, now: float, rtt: float, in_flight: int, dropped: bool) -> int:
        estimate = self._estimate
        if dropped or rtt > self.timeout:
            if now - rtt < self._backed_off_at:
                return self._limit  # admitted before the last backoff: already counted
            self._backed_off_at = now
            estimate *= self.backoff_ratio
        elif in_flight * 2 >= estimate:
            estimate += 1.0 / estimate
        self._estimate = estimate = min(self.max_limit, max(self.min_limit, estimate))
        self._limit = int(estimate)
        return self._limit


class Gradient2:
    """A latency-gradient limit: shrink when the current round trip rises over its
    long-term average, grow by a small queue allowance while it does not (Netflix
    `Gradient2Limit`).

    Args:
        initial_limit: the limit before any sample (default 20, Netflix's
            `Gradient2Limit.Builder.initialLimit`).
        min_limit: the limit never goes below this (default 20, Netflix's `minLimit`;
            lower it for a service whose true capacity is smaller).
        max_limit: the limit never goes above this (default 200, Netflix's
            `maxConcurrency`).
        smoothing: how much of each new estimate replaces the limit, in (0, 1] (default
            0.2, Netflix's `smoothing`).
        queue_size: how far the limit may grow past the estimate while latency holds: a
            number of calls, or a function of the current limit (default 4, Netflix's
            `queueSize`).
        long_window: how many samples the long-term average round trip spans (default
            600, Netflix's `longWindow`); its first 10 samples are a plain average (Netflix's
            warm-up of `ExpAvgMeasurement`).
        rtt_tolerance: how many times the long-term round trip the current one may reach
            before the limit shrinks, >= 1 (default 1.5, Netflix's `rttTolerance`).

    On each sample, with `long` the long-term average round trip and `rtt` this call's:
    `gradient = max(0.5, min(1, rtt_tolerance * long / rtt))` and the new limit is
    `limit * (1 - smoothing) + (limit * gradient + queue_size) * smoothing`, kept within
    `[min_limit, max_limit]`. When the service uses less than half its limit, the limit is
    left as it is. When `long` is more than twice `rtt` (latency back to normal after a
    long overload), `long` decays by 5 % per sample so the limit recovers sooner. As in
    Netflix's, `dropped` does not move this limit: latency alone does.

    Unlike Netflix's, the long-term average learns a slower round trip only from a call
    admitted while less than half the limit was in use (after its first 10 samples); at
    or past half, only faster ones. Netflix's learns every sample, so a sustained overload
    teaches it its own queueing as the norm: the gradient returns to 1 and the limit
    climbs far past the capacity (from 8 to about 40 in a simulation of the overload
    benchmark). With this rule it settles where `limit = queue_size + rtt_tolerance *
    capacity` (Little's law: the service's no-load round trip times its throughput):
    16 for a capacity of 8 with the defaults, 9 with `rtt_tolerance=1.0, queue_size=1`.

    Examples:
        ```python
        gradient = Gradient2(initial_limit=20, min_limit=1)
        for i in range(20):
            gradient.update(i * 0.1, 0.020, in_flight=20, dropped=False)
        before = gradient.limit
        gradient.update(2.0, 0.200, in_flight=20, dropped=False)   # 10x slower
        assert gradient.limit < before
        ```
    """

    __slots__ = (
        "_count",
        "_estimate",
        "_long_rtt",
        "_sum",
        "long_window",
        "max_limit",
        "min_limit",
        "queue_size",
        "rtt_tolerance",
        "smoothing",
    )

    #: Samples averaged plainly before the long-term average turns exponential.
    _WARMUP = 10

    def __init__(
        self,
        *,
        initial_limit: int = 20,
        min_limit: int = 20,
        max_limit: int = 200,
        smoothing: float = 0.2,
        queue_size: int | Callable[[int], float] = 4,
        long_window: int = 600,
        rtt_tolerance: float = 1.5,
    ) -> None:
        initial, self.min_limit, self.max_limit = _check_bounds(initial_limit, min_limit, max_limit)
        self.smoothing = check_ratio("smoothing", smoothing, allow_zero=False)
        if not callable(queue_size):
            check_non_negative("queue_size", queue_size)
        elif isinstance(queue_size, type):
            raise ValueError(
                f"queue_size must be a number or a function, got {short_repr(queue_size)}"
            )
        self.queue_size = queue_size
        self.long_window = check_positive_int("long_window", long_window)
        tolerance = check_positive("rtt_tolerance", rtt_tolerance)
        if tolerance < 1.0:
            raise ValueError(f"rtt_tolerance must be a number >= 1, got {rtt_tolerance!r}")
        self.rtt_tolerance = tolerance
        self._estimate = float(initial)
        self._long_rtt = 0.0
        self._sum = 0.0
        self._count = 0

    def __repr__(self) -> str:
        return (
            f"Gradient2(limit={self.limit}, min_limit={self.min_limit}, "
            f"max_limit={self.max_limit}, smoothing={self.smoothing!r}, "
            f"long_window={self.long_window}, rtt_tolerance={self.rtt_tolerance!r})"
        )

    @property
    def limit(self) -> int:
        """The current limit."""
        return int(self._estimate)

    @property
    def long_rtt(self) -> float:
        """The long-term average round trip, in seconds (0 before the first sample)."""
        return self._long_rtt

    def _average(self, rtt: float) -> float:
        if self._count < self._WARMUP:
            self._count += 1
            self._sum += rtt
            self._long_rtt = self._sum / self._count
        else:
            factor = 2.0 / (self.long_window + 1)
            self._long_rtt = self._long_rtt * (1 - factor) + rtt * factor
        return self._long_rtt

    def update(self, now: float, rtt: float, in_flight: int, dropped: bool) -> int:
        """Take one finished call; return the new limit."""
        estimate = self._estimate
        queue_size = self.queue_size
        allowance = float(queue_size(int(estimate)) if callable(queue_size) else queue_size)
        rtt = max(rtt, _MIN_RTT)
        long_rtt = self._long_rtt
        if rtt < long_rtt or in_flight * 2 < estimate or self._count < self._WARMUP:
            long_rtt = self._average(rtt)
        if long_rtt / rtt > 2:
            self._long_rtt *= 0.95
        if in_flight < estimate / 2:
            return int(estimate)
        gradient = max(0.5, min(1.0, self.rtt_tolerance * long_rtt / rtt))
        smoothing = self.smoothing
        new = estimate * (1 - smoothing) + (estimate * gradient + allowance) * smoothing
        self._estimate = new = max(self.min_limit, min(self.max_limit, new))
        return int(new)
