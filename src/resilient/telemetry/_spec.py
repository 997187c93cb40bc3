"""What a policy can report, as data: event kinds and the metrics they move.

Policies describe their telemetry here and report what happened through `CallRecord` and
`PolicyTelemetry`; they never touch OpenTelemetry. The OpenTelemetry consumer reads these
descriptions to build its instruments and span events, and listeners receive the same
events as `Event` values. A policy's own specs live beside the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = (
    "ATTR_ERROR_TYPE",
    "ATTR_SERVER_ADDRESS",
    "ATTR_SERVER_PORT",
    "CALLS",
    "DURATION",
    "WAIT_DURATION",
    "Effect",
    "EventSpec",
    "Instrument",
)

# OpenTelemetry's semantic-convention attributes that the library's spans and events carry
# (stable names).
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_SERVER_ADDRESS: Final = "server.address"
ATTR_SERVER_PORT: Final = "server.port"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One OpenTelemetry instrument, created once per meter provider from this description."""

    name: str
    kind: Literal["counter", "up_down_counter", "histogram"]
    unit: str
    description: str


@dataclass(frozen=True, slots=True)
class Effect:
    """How one event moves one instrument.

    Attributes:
        instrument: what it moves.
        value: a constant, or the name of the event attribute that holds the value.
        attributes: `(metric attribute, event attribute)` pairs added to the policy's own
            metric attributes (kind and name).
    """

    instrument: Instrument
    value: float | str = 1
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One kind of event a policy reports.

    Attributes:
        name: the event's name, also the span event's (`resilient.retry.scheduled`).
        span_event: add it to the call's span as an event.
        span_attribute: instead, set this one event attribute on the call's span.
        effects: the metrics it moves.
    """

    name: str
    span_event: bool = True
    span_attribute: str | None = None
    effects: tuple[Effect, ...] = ()


#: Every recorded call, by outcome.
CALLS = Instrument("resilient.calls", "counter", "{call}", "Calls through a policy, by outcome.")
DURATION = Instrument(
    "resilient.call.duration",
    "histogram",
    "s",
    "Time spent in a policy, including waits and retries.",
)
#: Time a call waited for a slot or permit (bulkheads and rate limiters).
WAIT_DURATION = Instrument(
    "resilient.wait.duration",
    "histogram",
    "s",
    "Time a call waited for a permit or slot before it ran.",
)
