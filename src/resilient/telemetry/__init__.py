"""OpenTelemetry spans and metrics for every policy.

resilient depends only on `opentelemetry-api`. With no SDK configured, every policy skips
telemetry after a cheap check; install and configure `opentelemetry-sdk` (or any
distribution) and spans and metrics appear without further setup.

Spans are named `resilient.<kind>` (`resilient.retry`, `resilient.timeout`, ...) and carry
`resilient.policy.name`, and `resilient.outcome` when the call did not succeed; every metric
point carries `resilient.policy.kind` and `resilient.policy.name`. Metrics:

| instrument | type | unit | attributes |
|---|---|---|---|
| `resilient.calls` | counter | {call} | kind, name, outcome |
| `resilient.call.duration` | histogram | s | kind, name, outcome |
| `resilient.retry.attempts` | counter | {attempt} | kind, name |
| `resilient.circuit_breaker.transitions` | counter | {transition} | kind, name, from, to |
| `resilient.circuit_breaker.state` | up-down counter | {breaker} | kind, name, state |
| `resilient.bulkhead.in_flight` | up-down counter | {call} | kind, name |
| `resilient.bulkhead.queued` | up-down counter | {call} | kind, name |
| `resilient.wait.duration` | histogram | s | kind, name |
| `resilient.rate_limit.decisions` | counter | {decision} | kind, name, decision |
| `resilient.load_shed.requests` | counter | {request} | kind, name (coming) |

`resilient.load_shed.requests` will count the requests that load shedding turns away. Load
shedding is coming in a later release; until then nothing records it.
"""

from __future__ import annotations

from resilient.telemetry._core import settings

__all__ = ("configure",)


def configure(*, spans: bool | None = None, metrics: bool | None = None) -> None:
    """Switch spans and metrics on or off for every policy in the process.

    Args:
        spans: emit spans (default on). `None` leaves the setting as it is.
        metrics: record metrics (default on). `None` leaves the setting as it is.

    Each policy also takes `telemetry=False` to silence only itself.

    Examples:
        >>> import resilient.telemetry
        >>> resilient.telemetry.configure(spans=False)
        >>> resilient.telemetry.configure(spans=True)
    """
    if spans is not None:
        if not isinstance(spans, bool):
            raise ValueError(f"spans must be a bool, got {spans!r}")
        settings.spans = spans
    if metrics is not None:
        if not isinstance(metrics, bool):
            raise ValueError(f"metrics must be a bool, got {metrics!r}")
        settings.metrics = metrics
