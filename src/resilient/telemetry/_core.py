"""Span and metric emission shared by every policy (opentelemetry-api only).

A policy owns one `PolicyTelemetry`. On each call it asks `start()` for a `CallRecord`;
`None` means nothing would record (no SDK installed, telemetry switched off globally or for
this policy), and the policy then touches nothing else here: that is the fast path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from time import perf_counter
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.metrics import _internal as otel_metrics_internal
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from resilient._version import __version__ as _version

__all__ = ("CallRecord", "PolicyTelemetry", "Settings", "outcome_of", "settings")

_SCOPE: Final = "resilient"

ATTR_KIND: Final = "resilient.policy.kind"
ATTR_NAME: Final = "resilient.policy.name"
ATTR_OUTCOME: Final = "resilient.outcome"
ATTR_ERROR_TYPE: Final = "error.type"


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


# opentelemetry-api resolves its global providers lazily and, until one is set, answers
# get_tracer_provider() with a proxy after an os.environ lookup on every call. That is too
# slow for a per-call check, so the fast path reads the module globals the API itself keeps
# (they are set exactly once, by set_tracer_provider / set_meter_provider). A provider named
# only by environment variable is loaded on first use through the public getter; the
# environment is read once, at import, as opentelemetry's own auto-configuration does.
_TRACER_FROM_ENV = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))
_METER_FROM_ENV = bool(os.environ.get("OTEL_PYTHON_METER_PROVIDER"))
_FROM_ENV = _TRACER_FROM_ENV or _METER_FROM_ENV


def _tracer_provider_ready() -> bool:
    if otel_trace._TRACER_PROVIDER is not None:
        return True
    if _TRACER_FROM_ENV:
        otel_trace.get_tracer_provider()
        return otel_trace._TRACER_PROVIDER is not None
    return False


def _meter_provider_ready() -> bool:
    if otel_metrics_internal._METER_PROVIDER is not None:
        return True
    if _METER_FROM_ENV:
        otel_metrics.get_meter_provider()
        return otel_metrics_internal._METER_PROVIDER is not None
    return False


class _Instruments:
    """Every metric instrument resilient emits, created once per meter provider."""

    def __init__(self) -> None:
        meter = otel_metrics.get_meter(_SCOPE, _version)
        self.calls = meter.create_counter(
            "resilient.calls",
            unit="{call}",
            description="Calls through a policy, by outcome.",
        )
        self.duration = meter.create_histogram(
            "resilient.call.duration",
            unit="s",
            description="Time spent in a policy, including waits and retries.",
        )
        self.retry_attempts = meter.create_counter(
            "resilient.retry.attempts",
            unit="{attempt}",
            description="Attempts made by Retry, the first one included.",
        )
        self.breaker_transitions = meter.create_counter(
            "resilient.circuit_breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state changes, by from and to state.",
        )
        self.breaker_state = meter.create_up_down_counter(
            "resilient.circuit_breaker.state",
            unit="{breaker}",
            description="1 for the state each circuit breaker is in, 0 for the others.",
        )
        self.bulkhead_in_flight = meter.create_up_down_counter(
            "resilient.bulkhead.in_flight",
            unit="{call}",
            description="Calls running inside a bulkhead.",
        )
        self.bulkhead_queued = meter.create_up_down_counter(
            "resilient.bulkhead.queued",
            unit="{call}",
            description="Calls waiting for a bulkhead slot.",
        )
        self.wait = meter.create_histogram(
            "resilient.wait.duration",
            unit="s",
            description="Time a call waited for a permit or slot before it ran.",
        )
        self.rate_limit_decisions = meter.create_counter(
            "resilient.rate_limit.decisions",
            unit="{decision}",
            description="Rate limiter decisions: allowed, delayed or rejected.",
        )
        self.shed = meter.create_counter(
            "resilient.load_shed.requests",
            unit="{request}",
            description="Requests turned away by load shedding.",
        )


_instruments: _Instruments | None = None


def instruments() -> _Instruments | None:
    """The shared instruments, or None while no meter provider is set or metrics are off."""
    global _instruments
    if _instruments is None:
        if not (settings.metrics and _meter_provider_ready()):
            return None
        _instruments = _Instruments()
    elif not settings.metrics:
        return None
    return _instruments


class PolicyTelemetry:
    """One policy's spans and metrics.

    Args:
        kind: the policy kind (`retry`, `timeout`, ...); the span is `resilient.<kind>`.
        name: the policy's name, `resilient.policy.name` on every span and metric.
        enabled: `False` silences this policy whatever the global settings say.
    """

    __slots__ = (
        "_attrs",
        "_outcome_attrs",
        "_span_attrs",
        "_tracer",
        "enabled",
        "kind",
        "name",
        "span_name",
    )

    def __init__(self, kind: str, name: str, *, enabled: bool = True) -> None:
        self.kind = kind
        self.name = name
        self.span_name = f"resilient.{kind}"
        self.enabled = enabled
        self._tracer: otel_trace.Tracer | None = None
        self._attrs: dict[str, str] = {ATTR_KIND: kind, ATTR_NAME: name}
        # Spans carry only the name: their own name already says the kind, and the SDK
        # charges for every attribute a span is given.
        self._span_attrs: dict[str, str] = {ATTR_NAME: name}
        self._outcome_attrs: dict[str, dict[str, str]] = {}

    @property
    def attributes(self) -> Mapping[str, str]:
        """The attributes every metric point of this policy carries (kind and name)."""
        return self._attrs

    def outcome_attributes(self, outcome: str) -> dict[str, str]:
        """The metric attributes for `outcome`, built once per outcome and reused."""
        attrs = self._outcome_attrs.get(outcome)
        if attrs is None:
            attrs = self._outcome_attrs[outcome] = {**self._attrs, ATTR_OUTCOME: outcome}
        return attrs

    def _tracer_or_none(self) -> otel_trace.Tracer | None:
        if not settings.spans:
            return None
        tracer = self._tracer
        if tracer is None and _tracer_provider_ready():
            tracer = self._tracer = otel_trace.get_tracer(_SCOPE, _version)
        return tracer

    def quiet(self) -> bool:
        """True when a call through this policy would record nothing (the `start()` check,
        without starting anything)."""
        return (
            otel_trace._TRACER_PROVIDER is None
            and otel_metrics_internal._METER_PROVIDER is None
            and not _FROM_ENV
        ) or not self.enabled

    def start(self, **attributes: Any) -> CallRecord | None:
        """Begin recording one call; `None` when nothing would record it."""
        # The "no SDK configured" check comes first, so that with no SDK a policy costs the
        # same whether its telemetry is on or off: a few attribute reads.
        if (
            otel_trace._TRACER_PROVIDER is None
            and otel_metrics_internal._METER_PROVIDER is None
            and not _FROM_ENV
        ) or not self.enabled:
            return None
        return self._start(attributes, current=True)

    def start_detached(self) -> CallRecord | None:
        """Like `start()`, but the span is not made the current one.

        For a record that outlives the code that starts it (`Retry.attempts()`, which a
        caller may abandon with `break`): nothing is left attached to the caller's context.
        Give its span to `child(parent=...)` to nest spans under it.
        """
        if self.quiet():
            return None
        return self._start({}, current=False)

    def _start(self, attributes: dict[str, Any], *, current: bool) -> CallRecord | None:
        tracer = self._tracer_or_none()
        inst = instruments()
        if tracer is None and inst is None:
            return None
        span: Span | None = None
        token: object = None
        if tracer is not None:
            span = tracer.start_span(
                self.span_name,
                kind=SpanKind.INTERNAL,
                attributes={**self._span_attrs, **attributes} if attributes else self._span_attrs,
            )
            if not span.is_recording():
                span = None
            elif current:
                token = otel_context.attach(otel_trace.set_span_in_context(span))
        return CallRecord(self, span, token, inst)

    def child(self, name: str, parent: Span | None = None, **attributes: Any) -> Span | None:
        """Start a child span (for example one retry attempt) of `parent`, or of the
        current span when no parent is given."""
        tracer = self._tracer_or_none() if self.enabled else None
        if tracer is None:
            return None
        context = None if parent is None else otel_trace.set_span_in_context(parent)
        span = tracer.start_span(name, context=context, attributes=attributes)
        return span if span.is_recording() else None

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Add an event to the current span, outside any `CallRecord` (for example a breaker
        transition caused by a call that is already over)."""
        if not self.enabled or self._tracer_or_none() is None:
            return
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.add_event(
                name, {**self._span_attrs, **attributes} if attributes else self._span_attrs
            )


class CallRecord:
    """What one call through a policy records: its span (if any) and its metrics."""

    __slots__ = ("instruments", "span", "started", "telemetry", "token")

    def __init__(
        self,
        telemetry: PolicyTelemetry,
        span: Span | None,
        token: object,
        inst: _Instruments | None,
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        self.token = token
        self.instruments = inst
        # Real elapsed time for resilient.call.duration, whatever clock the policy uses.
        self.started = perf_counter() if inst is not None else 0.0

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Add a span event, when a span is recording."""
        if self.span is not None:
            self.span.add_event(name, attributes or {})

    def set(self, key: str, value: Any) -> None:
        """Set a span attribute, when a span is recording."""
        if self.span is not None:
            self.span.set_attribute(key, value)

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Close the span and count the call under `outcome`.

        Any outcome but "success" is set as `resilient.outcome` on the span. An `error` sets
        the span status to ERROR with `error.type`, except for cancellation, which leaves
        the status unset.
        """
        inst = self.instruments
        if inst is not None:
            attributes = self.telemetry.outcome_attributes(outcome)
            inst.calls.add(1, attributes)
            inst.duration.record(perf_counter() - self.started, attributes)
        span = self.span
        if span is None:
            return
        # A successful span carries no outcome attribute (an unset status says it), since
        # every attribute set on a live span costs the SDK a lock and a copy.
        if outcome != "success":
            if error is not None and outcome != "cancelled":
                error_type = type(error).__qualname__
                span.set_attributes({ATTR_OUTCOME: outcome, ATTR_ERROR_TYPE: error_type})
                span.set_status(Status(StatusCode.ERROR, str(error) or error_type))
            else:
                span.set_attribute(ATTR_OUTCOME, outcome)
        if self.token is not None:
            otel_context.detach(self.token)  # type: ignore[arg-type]
        span.end()
