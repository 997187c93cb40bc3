"""The OpenTelemetry consumer: spans, span events and metrics from what policies report.

The only module of resilient that imports OpenTelemetry. Policies report through
`CallRecord` and `PolicyTelemetry` (in `_core`); this module turns those reports into
spans (`resilient.<kind>`, made current for the call so that the spans of the call nest
under it), span events, span attributes and metric points, using the `EventSpec` and
`Instrument` descriptions the policies declare.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from time import perf_counter
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import propagate as otel_propagate
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from resilient._version import __version__ as _version
from resilient.telemetry._spec import (
    ATTR_ERROR_TYPE,
    CALLS,
    DURATION,
    Effect,
    EventSpec,
    Instrument,
)

__all__ = (
    "FROM_ENV",
    "OTelCall",
    "OTelPolicy",
    "configured",
    "inject",
    "meter_globals",
    "meter_ready",
    "trace_globals",
    "tracer_ready",
)

_SCOPE: Final = "resilient"

# The context key HTTP client instrumentations read before tracing a request; a
# module-private name of opentelemetry-api, looked up defensively.
_SUPPRESS_HTTP_KEY = getattr(
    otel_context,
    "_SUPPRESS_HTTP_INSTRUMENTATION_KEY",
    otel_context.create_key("suppress_http_instrumentation"),
)

ATTR_KIND: Final = "resilient.policy.kind"
ATTR_NAME: Final = "resilient.policy.name"
ATTR_OUTCOME: Final = "resilient.outcome"

# Whether any provider is set must be known for the price of a few attribute reads, since it
# is asked on every call. opentelemetry-api's public getters answer "not yet" only after an
# os.environ lookup (about 1.5 µs here, more than a whole Retry call), so the check reads the
# globals those getters read, which the API sets exactly once (set_tracer_provider,
# set_meter_provider). Should a later API release move them, the public getters take over:
# slower, never wrong. A provider named by environment variable is loaded through the public
# getter on first use; the environment is read once, at import, as the API's own
# auto-configuration does.
_MISSING: Final = object()
FROM_ENV: Final = bool(
    os.environ.get("OTEL_PYTHON_TRACER_PROVIDER") or os.environ.get("OTEL_PYTHON_METER_PROVIDER")
)


class _Unknown:
    """Stands in for the API's globals if a release ever moves them: "maybe set", so that
    every check goes on to the public getters."""

    _TRACER_PROVIDER = True
    _METER_PROVIDER = True


_PRIVATE_GLOBALS: Final = (
    getattr(otel_trace, "_TRACER_PROVIDER", _MISSING) is not _MISSING
    and getattr(getattr(otel_metrics, "_internal", None), "_METER_PROVIDER", _MISSING)
    is not _MISSING
)
#: Where the API keeps its providers; `_core` reads `._TRACER_PROVIDER` and
#: `._METER_PROVIDER` on them inline, for the price of two attribute reads per call.
trace_globals: Any = otel_trace if _PRIVATE_GLOBALS else _Unknown()
meter_globals: Any = otel_metrics._internal if _PRIVATE_GLOBALS else _Unknown()


def configured() -> bool:
    """True when some OpenTelemetry provider may record (the per-call check)."""
    return (
        trace_globals._TRACER_PROVIDER is not None
        or meter_globals._METER_PROVIDER is not None
        or FROM_ENV
    )


def tracer_ready() -> bool:
    """True when a tracer provider is set (or named by environment variable)."""
    if _PRIVATE_GLOBALS:
        if trace_globals._TRACER_PROVIDER is not None:
            return True
        if not FROM_ENV:
            return False
    provider = otel_trace.get_tracer_provider()
    return not isinstance(provider, otel_trace.ProxyTracerProvider)


def meter_ready() -> bool:
    """True when a meter provider is set (or named by environment variable)."""
    if _PRIVATE_GLOBALS:
        if meter_globals._METER_PROVIDER is not None:
            return True
        if not FROM_ENV:
            return False
    otel_metrics.get_meter_provider()
    return not _PRIVATE_GLOBALS or meter_globals._METER_PROVIDER is not None


class _Meter:
    """The instruments described by `Instrument` values, each created on first use."""

    def __init__(self) -> None:
        self._meter = otel_metrics.get_meter(_SCOPE, _version)
        self._made: dict[str, Any] = {}
        # The two every recorded call moves, looked up once.
        self.calls = self[CALLS]
        self.duration = self[DURATION]

    def __getitem__(self, spec: Instrument) -> Any:
        made = self._made.get(spec.name)
        if made is None:
            create = {
                "counter": self._meter.create_counter,
                "up_down_counter": self._meter.create_up_down_counter,
                "histogram": self._meter.create_histogram,
            }[spec.kind]
            made = self._made[spec.name] = create(
                spec.name, unit=spec.unit, description=spec.description
            )
        return made


_meter: _Meter | None = None


def meter(metrics_on: bool) -> _Meter | None:
    """The shared instruments, or None while no meter provider is set or metrics are off."""
    global _meter
    if not metrics_on:
        return None
    if _meter is None:
        if not meter_ready():
            return None
        _meter = _Meter()
    return _meter


class OTelPolicy:
    """One policy's OpenTelemetry side: its tracer and its attribute dictionaries, built
    once and reused for every call."""

    __slots__ = ("_effect_attrs", "_outcome_attrs", "_tracer", "attrs", "span_attrs", "span_name")

    def __init__(self, kind: str, name: str) -> None:
        self.span_name = f"resilient.{kind}"
        self._tracer: otel_trace.Tracer | None = None
        self.attrs: dict[str, str] = {ATTR_KIND: kind, ATTR_NAME: name}
        # Spans carry only the name: their own name already says the kind, and the SDK
        # charges for every attribute a span is given.
        self.span_attrs: dict[str, str] = {ATTR_NAME: name}
        self._outcome_attrs: dict[str, dict[str, str]] = {}
        self._effect_attrs: dict[tuple[Effect, tuple[Any, ...]], dict[str, Any]] = {}

    def tracer(self, spans_on: bool) -> otel_trace.Tracer | None:
        if not spans_on:
            return None
        tracer = self._tracer
        if tracer is None and tracer_ready():
            tracer = self._tracer = otel_trace.get_tracer(_SCOPE, _version)
        return tracer

    def outcome_attributes(self, outcome: str) -> dict[str, str]:
        attrs = self._outcome_attrs.get(outcome)
        if attrs is None:
            attrs = self._outcome_attrs[outcome] = {**self.attrs, ATTR_OUTCOME: outcome}
        return attrs

    def apply(self, inst: _Meter, spec: EventSpec, attributes: Mapping[str, Any]) -> None:
        """Move the metrics `spec` says the event moves."""
        for effect in spec.effects:
            value = effect.value
            amount = attributes[value] if isinstance(value, str) else value
            if effect.attributes:
                values = tuple(attributes[source] for _, source in effect.attributes)
                key = (effect, values)
                attrs = self._effect_attrs.get(key)
                if attrs is None:
                    attrs = self._effect_attrs[key] = {
                        **self.attrs,
                        **{
                            target: v
                            for (target, _), v in zip(effect.attributes, values, strict=True)
                        },
                    }
            else:
                attrs = self.attrs
            instrument = inst[effect.instrument]
            if effect.instrument.kind == "histogram":
                instrument.record(amount, attrs)
            else:
                instrument.add(amount, attrs)

    def start(self, spans_on: bool, metrics_on: bool, current: bool) -> OTelCall | None:
        tracer = self.tracer(spans_on)
        inst = meter(metrics_on)
        if tracer is None and inst is None:
            return None
        span: Span | None = None
        token: object = None
        if tracer is not None:
            span = tracer.start_span(
                self.span_name, kind=SpanKind.INTERNAL, attributes=self.span_attrs
            )
            if not span.is_recording():
                span = None
            elif current:
                token = otel_context.attach(otel_trace.set_span_in_context(span))
        return OTelCall(self, span, token, inst)

    def emit(
        self, spans_on: bool, metrics_on: bool, spec: EventSpec, attributes: Mapping[str, Any]
    ) -> None:
        """An event outside any recorded call: on the current span, and in the metrics."""
        if spec.span_event and self.tracer(spans_on) is not None:
            span = otel_trace.get_current_span()
            if span.is_recording():
                span.add_event(spec.name, {**self.span_attrs, **attributes})
        inst = meter(metrics_on)
        if inst is not None and spec.effects:
            self.apply(inst, spec, attributes)

    def metrics_ready(self, metrics_on: bool) -> bool:
        return meter(metrics_on) is not None


class OTelCall:
    """One recorded call's span (if any) and its metrics."""

    __slots__ = ("inst", "policy", "span", "started", "token")

    def __init__(self, policy: OTelPolicy, span: Span | None, token: object, inst: _Meter | None):
        self.policy = policy
        self.span = span
        self.token = token
        self.inst = inst
        # Real elapsed time for resilient.call.duration, whatever clock the policy uses.
        self.started = perf_counter() if inst is not None else 0.0

    def event(self, spec: EventSpec, attributes: Mapping[str, Any]) -> None:
        span = self.span
        if span is not None:
            if spec.span_attribute is not None:
                span.set_attribute(spec.span_attribute, attributes[spec.span_attribute])
            elif spec.span_event:
                span.add_event(spec.name, attributes)
        inst = self.inst
        if inst is not None and spec.effects:
            self.policy.apply(inst, spec, attributes)

    def set(self, key: str, value: Any) -> None:
        if self.span is not None:
            self.span.set_attribute(key, value)

    def child(
        self,
        name: str,
        attributes: Mapping[str, Any],
        client: bool = False,
        nested: bool = False,
    ) -> tuple[Span | None, object]:
        """Start a child span of this call's span and make it current (a retry attempt).

        A `client` child is a CLIENT span: one request on the wire (an HTTP attempt).
        While it is current, HTTP client instrumentations (opentelemetry-instrumentation-
        httpx) are told to stay quiet, so that the request is not traced twice. A `nested`
        child's parent is the current span instead (a hedged copy, under the hedge's span).
        """
        if self.span is None:
            return None, None
        tracer = self.policy.tracer(True)
        if tracer is None:
            return None, None
        context = None if nested else otel_trace.set_span_in_context(self.span)
        kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
        span = tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        if not span.is_recording():
            return None, None
        current = otel_trace.set_span_in_context(span)
        if client:
            current = otel_context.set_value(_SUPPRESS_HTTP_KEY, True, current)
        return span, otel_context.attach(current)

    def end_child(self, span: Span | None, token: object, error: Exception | None) -> None:
        if span is None:
            return
        if error is not None:
            span.set_attribute(ATTR_ERROR_TYPE, type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__qualname__))
        otel_context.detach(token)  # type: ignore[arg-type]
        span.end()

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        inst = self.inst
        if inst is not None:
            attributes = self.policy.outcome_attributes(outcome)
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


def inject(carrier: Any) -> None:
    """Write the current trace context into `carrier` (request headers), as the
    configured propagators say (W3C `traceparent` by default)."""
    otel_propagate.inject(carrier)
