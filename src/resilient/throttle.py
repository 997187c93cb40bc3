"""AdaptiveThrottle: client-side adaptive throttling (Google SRE, "Handling Overload").

A client that sees its upstream refuse most of its calls starts refusing calls itself,
locally and in proportion, before they cost the upstream anything: the client-side twin
of a server that sheds load. The decision is the SRE book's formula over a sliding window
of the calls this client attempted (`requests`) and those the upstream accepted
(`accepts`), each counted when the call ends:

    reject with probability  max(0, (requests - k * accepts) / (requests + 1))

capped at `max_reject`, so that some calls always go through and notice the upstream's
recovery. The counting is the library's one sliding window (`resilient._window`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, Final

from resilient._admission import AdmissionPolicy
from resilient._clock import Clock
from resilient._on import On, exception_filter
from resilient._policy import given_arguments
from resilient._task_local import TaskLocalStack
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_optional_callable,
    check_positive_int,
    check_ratio,
    short_repr,
)
from resilient._window import RollingCounts, check_window
from resilient.exceptions import RejectedError, ThrottledError
from resilient.telemetry._core import CallRecord, PolicyTelemetry
from resilient.telemetry._spec import Effect, EventSpec, Instrument

__all__ = ("AdaptiveThrottle", "ThrottleCore")

_REQUESTS: Final = 0
_REFUSED: Final = 1
_BUCKETS: Final = 10

# -- what AdaptiveThrottle reports (telemetry as data; see resilient.telemetry) --------------

REJECTIONS: Final = Instrument(
    "resilient.throttle.rejections",
    "counter",
    "{call}",
    "Calls an adaptive throttle refused locally, before sending them.",
)
#: The throttle refused a call locally.
REJECTED: Final = EventSpec("resilient.throttle.rejected", effects=(Effect(REJECTIONS),))
_NO_ATTRIBUTES: Final[dict[str, object]] = {}


class ThrottleCore:
    """The ledger and the formula of an adaptive throttle: pure, every method takes `now`.

    Args:
        k: the multiplier (>= 1): the client keeps sending about `k` times what the
            upstream accepts.
        window: the sliding window, in seconds.
        min_requests: no call is refused while fewer requests than this were counted in
            the window.
        max_reject: the highest rejection probability, in [0, 1].

    A call is counted when it ends: as accepted (`accept`), or as not accepted
    (`refuse`: the upstream refused it, or the throttle did). Calls still in flight are
    in neither count, so a burst of slow calls to a healthy upstream is never mistaken
    for refusals. While nothing was refused for a whole window, the probability is 0
    without reading the window at all.

    Examples:
        >>> core = ThrottleCore(k=2.0, window=60.0, min_requests=0, max_reject=0.9)
        >>> for _ in range(10):
        ...     core.accept(now=1.0)
        >>> for _ in range(90):
        ...     core.refuse(now=1.0)
        >>> round(core.reject_probability(now=2.0), 3)  # (100 - 2 * 10) / 101
        0.792
    """

    __slots__ = ("_counts", "_quiet_after", "_span", "k", "max_reject", "min_requests")

    def __init__(self, *, k: float, window: float, min_requests: int, max_reject: float) -> None:
        self.k = k
        self.min_requests = min_requests
        self.max_reject = max_reject
        # Accepted calls, the hot path, are tallied: a comparison and an increment.
        self._counts = RollingCounts(window, 2, _BUCKETS, tallied=_REQUESTS)
        # A refusal stays in the window's counts for at most a window and a bucket.
        self._span = window + window / _BUCKETS
        self._quiet_after = -math.inf

    def accept(self, now: float) -> None:
        """Count one call the upstream accepted (answered, whatever the answer)."""
        self._counts.tally(now)

    def refuse(self, now: float) -> None:
        """Count one call that was not accepted: refused by the upstream, or locally."""
        self._counts.add_each(now, (_REQUESTS, _REFUSED))
        self._quiet_after = now + self._span

    def totals(self, now: float) -> tuple[int, int]:
        """(requests, accepts) in the window at `now`."""
        requests, refused = self._counts.totals(now)
        return requests, requests - refused

    def reject_probability(self, now: float) -> float:
        """The probability of refusing the next call locally, in [0, `max_reject`]."""
        if now >= self._quiet_after:
            return 0.0  # nothing refused for a whole window: requests == accepts
        requests, refused = self._counts.totals(now)
        if requests < self.min_requests:
            return 0.0
        p = (requests - self.k * (requests - refused)) / (requests + 1)
        if p <= 0.0:
            return 0.0
        return p if p < self.max_reject else self.max_reject

    def reset(self) -> None:
        """Forget every request and accept."""
        self._counts.reset()
        self._quiet_after = -math.inf


class AdaptiveThrottle(AdmissionPolicy):
    """Refuse calls locally, in proportion, while the upstream refuses most of them.

    Client-side adaptive throttling from the Google SRE book ("Handling Overload"). Over a
    sliding `window` the throttle counts the calls it was asked to make (`requests`, those
    it refused itself included) and those the upstream accepted (`accepts`), each when it
    ends, and refuses each new call with probability

        max(0, (requests - k * accepts) / (requests + 1)), capped at max_reject.

    While the upstream accepts everything the probability is 0 and the throttle costs a few
    counter updates. When the upstream can only take a fraction `a` of what the client
    wants to send, the client settles at sending about `min(1, k * a)` of its calls: `k`
    times what gets accepted, the rest refused locally without a round trip. As the
    upstream recovers, accepts grow and the share sent climbs back to 1.

    Args:
        k: the multiplier (a finite number >= 1; default 2.0, the SRE book's value). Lower
            throttles harder; 1.0 sends only what the upstream accepted.
        window: the sliding window, in seconds (at least 0.001; default 120.0, two
            minutes, as in the SRE book). Outcomes leave it a tenth of it at a time.
        min_requests: no call is refused while fewer than this many were attempted in the
            window (a whole number >= 0; default 20).
        max_reject: the highest probability of refusing a call (in [0, 1]; default 0.9):
            at least a tenth of the calls still go out and notice a recovery.
        on: what counts as *not accepted*: an `Exception` subclass, a tuple of them, or a
            predicate `(exception) -> bool` (default `RejectedError`: a rejection by a
            policy further down, e.g. an open breaker, or an overloaded upstream's refusal
            turned into an exception). Any other exception means the upstream accepted and
            answered the call (a 404 is an answer, not a refusal). A cancelled call is not
            counted at all: its answer is unknown.
        on_result: `(result) -> bool`, True when a returned result is a refusal (default
            `None`: every result is accepted). For an HTTP client:
            `on_result=lambda r: r.status_code in (429, 503)`.
        name: names the policy in telemetry and errors (default `"throttle"`).
        clock: the time source of the window (default: the monotonic clock).
        rng: the `random.Random` the refusals are drawn from (default: a new unseeded one);
            pass a seeded one for reproducible tests.
        telemetry: `False` silences this policy's spans and metrics.

    Raises `ThrottledError` (a `RejectedError`) when it refuses a call; the call was not
    made. `retry_after` is a tenth of `window`, the soonest its counts move on.

    Examples:
        ```python
        throttle = AdaptiveThrottle(k=2.0, on=(RejectedError, ConnectionRefusedError))

        @throttle
        async def fetch_quote(symbol: str) -> float: ...

        async with throttle:
            await publish_event()
        ```
    """

    __slots__ = (
        "_clock",
        "_core",
        "_entries",
        "_given",
        "_now",
        "_random",
        "_refused",
        "_retry_after",
        "_telemetry",
        "k",
        "max_reject",
        "min_requests",
        "name",
        "on",
        "on_result",
        "window",
    )

    _ticketless = True
    _rejected_event = (REJECTED, _NO_ATTRIBUTES)

    def __init__(
        self,
        k: float = 2.0,
        *,
        window: float = 120.0,
        min_requests: int = 20,
        max_reject: float = 0.9,
        on: On = RejectedError,
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        telemetry: bool = True,
    ) -> None:
        self._given = given_arguments(AdaptiveThrottle.__init__, locals())
        if (
            not isinstance(k, int | float)
            or isinstance(k, bool)
            or not 1.0 <= float(k) < float("inf")
        ):
            raise ValueError(f"k must be a finite number >= 1, got {short_repr(k)}")
        self.k = float(k)
        self.window = check_window("window", window)
        self.min_requests = check_positive_int("min_requests", min_requests, minimum=0)
        self.max_reject = check_ratio("max_reject", max_reject)
        self._refused = exception_filter(on)
        self.on = on
        self.on_result = check_optional_callable(
            "on_result", on_result, "a callable (result) -> bool"
        )
        self.name = check_name(name, "throttle")
        self._clock = check_clock(clock)
        self._now = self._clock.now
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise ValueError(f"rng must be a random.Random or None, got {short_repr(rng)}")
        self._random = rng.random
        self._telemetry = PolicyTelemetry(
            "throttle", self.name, enabled=check_bool("telemetry", telemetry)
        )
        self._core = ThrottleCore(
            k=self.k, window=self.window, min_requests=self.min_requests, max_reject=self.max_reject
        )
        self._retry_after = self.window / _BUCKETS
        self._entries: TaskLocalStack[tuple[Any, CallRecord | None]] = TaskLocalStack(
            "AdaptiveThrottle"
        )

    def __repr__(self) -> str:
        return (
            f"AdaptiveThrottle(k={self.k!r}, window={self.window!r}, "
            f"min_requests={self.min_requests!r}, max_reject={self.max_reject!r}, "
            f"name={self.name!r})"
        )

    @property
    def reject_probability(self) -> float:
        """The probability that the next call is refused locally, right now.

        Examples:
            >>> AdaptiveThrottle().reject_probability
            0.0
        """
        return self._core.reject_probability(self._now())

    @property
    def core(self) -> ThrottleCore:
        """The pure ledger behind this throttle (for dashboards and tests)."""
        return self._core

    def reset(self) -> None:
        """Forget every request and accept: the throttle sends everything again."""
        self._core.reset()

    # -- the admission hooks (the shell is resilient._admission) --------------------------

    def _admit(self) -> Any:
        core = self._core
        now = self._now()
        if now < core._quiet_after:
            p = core.reject_probability(now)
            if p and self._random() < p:
                core.refuse(now)
                raise self._throttled(p)
        return None

    def _throttled(self, p: float) -> ThrottledError:
        return ThrottledError(
            f"{self.name} refused the call locally: the upstream accepted too few of "
            f"the recent calls (refusing {p:.0%} of calls)",
            policy=self.name,
            retry_after=self._retry_after,
        )

    async def _wait(self, record: CallRecord) -> Any:  # pragma: no cover - _admit never waits
        raise AssertionError("AdaptiveThrottle never asks to wait")

    def _settle(self, ticket: Any, error: BaseException | None) -> None:
        if error is None:
            self._core.accept(self._now())
        elif isinstance(error, Exception):
            if self._refused(error):
                self._core.refuse(self._now())
            else:
                self._core.accept(self._now())
        # Cancelled: the upstream's answer is unknown; the call is not counted.

    def _settle_result(self, ticket: Any, result: object) -> bool:
        on_result = self.on_result
        if on_result is not None and on_result(result):
            self._core.refuse(self._now())
            return True
        self._core.accept(self._now())
        return False
