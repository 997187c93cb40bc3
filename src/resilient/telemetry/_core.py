"""The one sink every policy reports to, and its two consumers.

A policy owns one `PolicyTelemetry`. On each call it asks `start()` for a `CallRecord`;
`None` means nothing would consume the call (no OpenTelemetry provider set and no listener
subscribed, or telemetry switched off for this policy), and the policy then touches nothing
else here: that is the fast path, a few attribute reads. The one `None` check is made where
the call begins; from there on the policy hands its hooks either the record or `QUIET`, the
record that drops every report, so that no reporting code checks again.

What happened during the call is reported as data: `record.event(SPEC, attributes)` for an
event the policy declared as an `EventSpec`, `record.end(outcome, error)` when the call is
over. Each report goes to the OpenTelemetry consumer (`_otel`: spans, span events, metrics)
and, as an `Event` value, to the listeners subscribed with `resilient.telemetry.subscribe`.
No policy imports OpenTelemetry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Final, Protocol

from resilient.telemetry import _otel
from resilient.telemetry._spec import EventSpec

__all__ = (
    "QUIET",
    "CallRecord",
    "Event",
    "Listener",
    "PolicyTelemetry",
    "Settings",
    "outcome_of",
    "settings",
)

_logger = logging.getLogger("resilient.telemetry")

_tracing = _otel.trace_globals
_metering = _otel.meter_globals
_FROM_ENV = _otel.FROM_ENV

#: The name of the event a listener receives when a recorded call ends.
CALL_ENDED: Final = "resilient.call"
ATTR_OUTCOME: Final = "resilient.outcome"
ATTR_DURATION: Final = "resilient.call.duration"


def outcome_of(error: BaseException) -> str:
    """The outcome of a call that raised `error`: "failure", or "cancelled" for
    cancellation and every other BaseException that is not an Exception."""
    return "failure" if isinstance(error, Exception) else "cancelled"


class Settings:
    """The global switches, flipped by `resilient.telemetry.configure`."""

    __slots__ = ("metrics", "spans")

    def __init__(self) -> None:
        self.spans = True
        self.metrics = True


settings = Settings()


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a policy reported, as a listener receives it.

    Attributes:
        name: what happened: a span event's name (`"resilient.retry.scheduled"`,
            `"resilient.circuit_breaker.transition"`, ...), or `"resilient.call"` when a
            recorded call ends.
        kind: the policy's kind (`"retry"`, `"circuit_breaker"`, ...).
        policy: the policy's name.
        attributes: the details, by OpenTelemetry-style attribute name; a call's end carries
            `resilient.outcome` (`"success"`, `"failure"`, `"rejected"`, `"timeout"`,
            `"cancelled"`, ...) and `resilient.call.duration` in seconds.
        error: the exception a call ended with, if any.

    Examples:
        ```python
        Event("resilient.retry.scheduled", "retry", "users",
              {"resilient.retry.attempt": 2, "resilient.retry.delay": 0.1})
        ```
    """

    name: str
    kind: str
    policy: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


#: A listener: called with each `Event`, synchronously, on the task that reported it.
Listener = Callable[[Event], object]

#: Listeners subscribed for every policy.
_global_listeners: tuple[Listener, ...] = ()


def _deliver(listeners: tuple[Listener, ...], event: Event) -> None:
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            _logger.exception("a resilient telemetry listener raised; the call went on")


class PolicyTelemetry:
    """One policy's reports.

    Args:
        kind: the policy kind (`retry`, `timeout`, ...); its span is `resilient.<kind>`.
        name: the policy's name, `resilient.policy.name` on every span and metric.
        enabled: `False` silences this policy whatever the global settings say, listeners
            included.
    """

    __slots__ = ("_otel", "enabled", "kind", "listeners", "name")

    def __init__(self, kind: str, name: str, *, enabled: bool = True) -> None:
        self.kind = kind
        self.name = name
        self.enabled = enabled
        # Built on first use, once an OpenTelemetry provider is set: thousands of policies
        # (a breaker per upstream host) carry no attribute dictionaries nobody records.
        self._otel: _otel.OTelPolicy | None = None
        #: Listeners subscribed to this policy alone.
        self.listeners: tuple[Listener, ...] = ()

    @property
    def otel(self) -> _otel.OTelPolicy:
        """This policy's OpenTelemetry side (its tracer and attribute dictionaries)."""
        otel = self._otel
        if otel is None:
            otel = self._otel = _otel.OTelPolicy(self.kind, self.name)
        return otel

    def _listeners(self) -> tuple[Listener, ...] | None:
        listeners = self.listeners + _global_listeners if self.listeners else _global_listeners
        return listeners or None

    def quiet(self) -> bool:
        """True when a call through this policy would record nothing (the `start()` check,
        without starting anything)."""
        return (
            _tracing._TRACER_PROVIDER is None
            and _metering._METER_PROVIDER is None
            and not _FROM_ENV
            and not _global_listeners
            and not self.listeners
        ) or not self.enabled

    def start(self) -> CallRecord | None:
        """Begin recording one call; `None` when nothing would consume it.

        With no listener the OpenTelemetry call itself is the record (it has the same
        methods), one object and one indirection fewer per recorded call.
        """
        # The "nothing configured" check comes first, so that with no SDK and no listener a
        # policy costs the same whether its telemetry is on or off: a few attribute reads,
        # written out here rather than behind a function call.
        if (
            _tracing._TRACER_PROVIDER is None
            and _metering._METER_PROVIDER is None
            and not _FROM_ENV
            and not _global_listeners
            and not self.listeners
        ) or not self.enabled:
            return None
        return self._start(current=True)

    def start_detached(self) -> CallRecord | None:
        """Like `start()`, but the span is not made the current one.

        For a record that outlives the code that starts it (`Retry.attempts()`, which a
        caller may abandon with `break`): nothing is left attached to the caller's context.
        """
        if self.quiet():
            return None
        return self._start(current=False)

    def _start(self, *, current: bool) -> CallRecord | None:
        otel = (
            self.otel.start(settings.spans, settings.metrics, current)
            if _otel.configured()
            else None
        )
        listeners = self._listeners()
        if listeners is None:
            return otel
        return _ListenedCall(self, otel, listeners)

    def emit(self, spec: EventSpec, attributes: Mapping[str, Any]) -> None:
        """Report an event outside any recorded call (a breaker transition caused by a
        call that is already over, a state at construction)."""
        if not self.enabled:
            return
        if _otel.configured():
            self.otel.emit(settings.spans, settings.metrics, spec, attributes)
        listeners = self._listeners()
        if listeners is not None:
            _deliver(listeners, Event(spec.name, self.kind, self.name, dict(attributes)))

    def metrics_ready(self) -> bool:
        """True when metrics reported now would be recorded by an OpenTelemetry provider."""
        return self.enabled and _otel.configured() and self.otel.metrics_ready(settings.metrics)


class CallRecord(Protocol):
    """What one call through a policy reports: the interface policies see.

    With listeners subscribed it is a `_ListenedCall` that hands every report on to both
    consumers; with OpenTelemetry alone it is the OpenTelemetry consumer's own call.
    """

    @property
    def span(self) -> Any:
        """The call's OpenTelemetry span, or None when no span is recording."""
        ...

    def event(self, spec: EventSpec, attributes: Mapping[str, Any]) -> None:
        """Report one event of the call."""
        ...

    def set(self, key: str, value: Any) -> None:
        """Report a detail of the whole call (a span attribute, and on the end event)."""
        ...

    def child(
        self,
        name: str,
        attributes: Mapping[str, Any],
        client: bool = False,
        nested: bool = False,
    ) -> tuple[Any, object]:
        """Open a child span, current until `end_child` (a retry attempt); a CLIENT span
        when `client` (an HTTP request on the wire). The call's span is its parent, or
        with `nested` the current span (a hedged copy of a request, under the hedge)."""
        ...

    def end_child(self, span: Any, token: object, error: Exception | None) -> None:
        """Close a child span."""
        ...

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Close the call under `outcome`."""
        ...


class _Quiet:
    """The record of a call nothing consumes: every report is dropped.

    A policy's fast path asks `start()` once and, given None, passes `QUIET` to the code
    that reports, which then reports unconditionally instead of checking every time.
    """

    __slots__ = ()

    span = None

    def __repr__(self) -> str:
        return "QUIET"

    def event(self, spec: EventSpec, attributes: Mapping[str, Any]) -> None:
        """Dropped."""

    def set(self, key: str, value: Any) -> None:
        """Dropped."""

    def child(
        self,
        name: str,
        attributes: Mapping[str, Any],
        client: bool = False,
        nested: bool = False,
    ) -> tuple[Any, object]:
        """No span: (None, None)."""
        return None, None

    def end_child(self, span: Any, token: object, error: Exception | None) -> None:
        """Nothing to close."""

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Dropped."""


#: The record of a call nothing consumes (see `_Quiet`).
QUIET: Final[CallRecord] = _Quiet()


class _ListenedCall:
    """A recorded call with listeners: every report goes on to each consumer."""

    __slots__ = ("_attrs", "_started", "listeners", "otel", "telemetry")

    def __init__(
        self,
        telemetry: PolicyTelemetry,
        otel: _otel.OTelCall | None,
        listeners: tuple[Listener, ...] | None,
    ) -> None:
        self.telemetry = telemetry
        self.otel = otel
        self.listeners = listeners
        self._attrs: dict[str, Any] | None = None
        self._started = perf_counter() if listeners is not None else 0.0

    @property
    def span(self) -> Any:
        """The call's OpenTelemetry span, or None when no span is recording."""
        return None if self.otel is None else self.otel.span

    def event(self, spec: EventSpec, attributes: Mapping[str, Any]) -> None:
        """Report one event of the call."""
        if self.otel is not None:
            self.otel.event(spec, attributes)
        if self.listeners is not None:
            telemetry = self.telemetry
            _deliver(
                self.listeners, Event(spec.name, telemetry.kind, telemetry.name, dict(attributes))
            )

    def set(self, key: str, value: Any) -> None:
        """Report a detail of the whole call (a span attribute, and on the end event)."""
        if self.otel is not None:
            self.otel.set(key, value)
        if self.listeners is not None:
            if self._attrs is None:
                self._attrs = {}
            self._attrs[key] = value

    def child(
        self,
        name: str,
        attributes: Mapping[str, Any],
        client: bool = False,
        nested: bool = False,
    ) -> tuple[Any, object]:
        """Open a child span, current until `end_child` (a retry attempt)."""
        if self.otel is None:
            return None, None
        return self.otel.child(name, attributes, client, nested)

    def end_child(self, span: Any, token: object, error: Exception | None) -> None:
        if self.otel is not None:
            self.otel.end_child(span, token, error)

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Close the call under `outcome`.

        Any outcome but "success" is set as `resilient.outcome` on the span. An `error` sets
        the span status to ERROR with `error.type`, except for cancellation, which leaves
        the status unset.
        """
        if self.otel is not None:
            self.otel.end(outcome, error)
        listeners = self.listeners
        if listeners is not None:
            attributes = {ATTR_OUTCOME: outcome, ATTR_DURATION: perf_counter() - self._started}
            if self._attrs:
                attributes.update(self._attrs)
            telemetry = self.telemetry
            _deliver(
                listeners, Event(CALL_ENDED, telemetry.kind, telemetry.name, attributes, error)
            )


def add_listener(listener: Listener, telemetry: PolicyTelemetry | None) -> None:
    global _global_listeners
    if telemetry is None:
        _global_listeners = (*_global_listeners, listener)
    else:
        telemetry.listeners = (*telemetry.listeners, listener)


def remove_listener(listener: Listener, telemetry: PolicyTelemetry | None) -> None:
    global _global_listeners
    if telemetry is None:
        _global_listeners = _without(_global_listeners, listener)
    else:
        telemetry.listeners = _without(telemetry.listeners, listener)


def _without(listeners: tuple[Listener, ...], listener: Listener) -> tuple[Listener, ...]:
    found = list(listeners)
    for index, candidate in enumerate(found):
        if candidate is listener:
            del found[index]
            break
    return tuple(found)
