"""Whether a shared store's backend answers, as its callers see it, and what a store reports.

A store whose state lives in another process (Redis) can be down. `Availability` is a small
circuit breaker around that backend: after a few failed round trips in a row it declares
the backend down, and from then on callers go straight to the store's `on_unavailable`
policy without paying a timeout each, until a cool-down has passed and one caller probes.
A probe that succeeds brings the store back up; one that fails doubles the cool-down (up to
a cap). Pure bookkeeping on the monotonic clock: the store does the round trips.

It is deliberately not `CircuitBreaker` (a policy, above the stores): a consecutive-failure
count is all a store needs, and every capability of a store (rate-limit buckets and
breaker state) shares one `Availability`, since they share one backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Literal

from resilient.telemetry._core import PolicyTelemetry
from resilient.telemetry._spec import ATTR_ERROR_TYPE, Effect, EventSpec, Instrument
from resilient.telemetry._spec import ATTR_SERVER_ADDRESS as ATTR_SERVER

__all__ = (
    "ATTR_DOWN_DURATION",
    "ATTR_ERROR_TYPE",
    "ATTR_MODE",
    "ATTR_OPERATION",
    "ATTR_ROUND_TRIP",
    "ATTR_SERVER",
    "DOWN",
    "FALLBACK",
    "MODES",
    "ROUND_TRIP",
    "UP",
    "Availability",
    "Mode",
)

#: What a store does with a decision while its backend is unavailable.
Mode = Literal["allow", "deny", "local"]
MODES: Final[tuple[Mode, ...]] = ("allow", "deny", "local")

#: Failed round trips in a row after which the backend is declared down.
FAILURES_TO_OPEN: Final = 3
#: Seconds a down backend is left alone before the first probe; doubled after each failed
#: probe, up to MAX_COOL_DOWN, so a long outage costs one probe every few seconds.
COOL_DOWN: Final = 0.5
MAX_COOL_DOWN: Final = 4.0

ATTR_MODE: Final = "resilient.storage.on_unavailable"
ATTR_OPERATION: Final = "resilient.storage.operation"
ATTR_ROUND_TRIP: Final = "resilient.storage.duration"
ATTR_DOWN_DURATION: Final = "resilient.storage.down_duration"

# -- what a shared store reports (telemetry as data; see resilient.telemetry) ---------------

UNAVAILABLE: Final = Instrument(
    "resilient.storage.unavailable",
    "up_down_counter",
    "{store}",
    "1 while a shared store's backend is down, 0 once it is back.",
)
FALLBACKS: Final = Instrument(
    "resilient.storage.fallbacks",
    "counter",
    "{decision}",
    "Decisions a shared store's on_unavailable policy took because its backend was unavailable.",
)
ROUND_TRIPS: Final = Instrument(
    "resilient.storage.duration",
    "histogram",
    "s",
    "Round-trip time of a shared store's operations that reached the backend.",
)
#: The backend was declared down (`error.type`: the last failure's class name).
DOWN: Final = EventSpec("resilient.storage.down", effects=(Effect(UNAVAILABLE, 1),))
#: A probe reached the backend again (`resilient.storage.down_duration`: seconds it was down).
UP: Final = EventSpec("resilient.storage.up", effects=(Effect(UNAVAILABLE, -1),))
#: A decision was taken by the `on_unavailable` policy (`resilient.storage.on_unavailable`).
FALLBACK: Final = EventSpec(
    "resilient.storage.fallback", effects=(Effect(FALLBACKS, 1, ((ATTR_MODE, ATTR_MODE),)),)
)
#: One operation's round trip (`resilient.storage.operation`, `resilient.storage.duration`).
ROUND_TRIP: Final = EventSpec(
    "resilient.storage.round_trip",
    span_event=False,
    effects=(Effect(ROUND_TRIPS, ATTR_ROUND_TRIP, ((ATTR_OPERATION, ATTR_OPERATION),)),),
)


class Availability:
    """The backend's health: up, or down until `retry_at` (monotonic seconds).

    The store's fast path reads two attributes: `retry_at is None` (up: go ahead), and
    after a round trip that succeeded, `failures` (zero: nothing to record).
    """

    __slots__ = (
        "_cool_down",
        "_down_since",
        "_now",
        "_server",
        "failures",
        "probing",
        "retry_at",
        "telemetry",
    )

    def __init__(
        self,
        telemetry: PolicyTelemetry,
        *,
        now: Callable[[], float] = time.monotonic,
        server: str | None = None,
    ) -> None:
        self.telemetry = telemetry
        self._now = now
        #: The server watched, when a store has several (a cluster's masters): reported
        #: as `server.address` on the down and up events.
        self._server = {} if server is None else {ATTR_SERVER: server}
        #: Failed round trips in a row while up.
        self.failures = 0
        #: None while up; when down, the moment from which one caller may probe.
        self.retry_at: float | None = None
        #: A probe is in flight (only one at a time).
        self.probing = False
        self._cool_down = COOL_DOWN
        self._down_since = 0.0

    def __repr__(self) -> str:
        state = "up" if self.retry_at is None else "down"
        return f"<Availability {state}, failures={self.failures}>"

    def probe_due(self) -> bool:
        """While down: whether a caller would be the probe now (nothing taken)."""
        return not self.probing and self._now() >= (self.retry_at or 0.0)

    def may_probe(self) -> bool:
        """While down: whether this caller should try the backend (then it is the probe)."""
        if self.probing or self._now() < (self.retry_at or 0.0):
            return False
        self.probing = True
        return True

    def succeeded(self) -> None:
        """A round trip reached the backend."""
        self.failures = 0
        self.probing = False
        if self.retry_at is not None:
            self.retry_at = None
            self._cool_down = COOL_DOWN
            down_for = self._now() - self._down_since
            self.telemetry.emit(UP, {ATTR_DOWN_DURATION: down_for, **self._server})

    def failed(self, error: BaseException, *, probe: bool) -> None:
        """A round trip failed with `error` (`probe`: it was this caller's probe)."""
        now = self._now()
        if self.retry_at is None:
            self.failures += 1
            if self.failures >= FAILURES_TO_OPEN:
                self.retry_at = now + self._cool_down
                self._down_since = now
                self.telemetry.emit(
                    DOWN, {ATTR_ERROR_TYPE: type(error).__qualname__, **self._server}
                )
        elif probe:
            self.probing = False
            self._cool_down = min(self._cool_down * 2, MAX_COOL_DOWN)
            self.retry_at = now + self._cool_down
        # Otherwise a call that was in flight when the backend went down: nothing new.

    def abandoned(self, *, probe: bool) -> None:
        """A round trip ended without an answer either way (its caller was cancelled)."""
        if probe:
            self.probing = False
