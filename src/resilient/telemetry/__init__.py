"""What every policy reports: OpenTelemetry spans and metrics, and events for listeners.

Policies report what happens (a call ending with its outcome, a retry scheduled with its
delay, a breaker transition, a wait, a rejection) as small `Event` values to one sink. Two
consumers read them: OpenTelemetry (spans, span events and metrics, below), and any
listener subscribed with `subscribe()`, for logging, structlog, Prometheus or tests.

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
| `resilient.load_shed.requests` | counter | {request} | kind, name, reason |
| `resilient.load_shed.admitted` | counter | {request} | kind, name |
| `resilient.load_shed.queued` | counter | {request} | kind, name |
| `resilient.load_shed.in_flight` | up-down counter | {request} | kind, name |
| `resilient.load_shed.limit` | up-down counter | {request} | kind, name |
| `resilient.storage.unavailable` | up-down counter | {store} | kind, name |
| `resilient.storage.fallbacks` | counter | {decision} | kind, name, on_unavailable |
| `resilient.storage.duration` | histogram | s | kind, name, operation |

`resilient.load_shed.requests` counts the requests a `LoadShedder` turns away, by
`resilient.load_shed.reason`; `resilient.load_shed.limit` is its current concurrency limit.
"""

from __future__ import annotations

from types import TracebackType

from resilient._validate import short_repr
from resilient.telemetry._core import Event, Listener, add_listener, remove_listener, settings

__all__ = ("Event", "Listener", "Subscription", "configure", "subscribe")

Event.__module__ = "resilient.telemetry"


class Subscription:
    """A listener's subscription; `close()` (or leaving its `with` block) ends it.

    Examples:
        ```python
        with resilient.telemetry.subscribe(events.append):
            await retry.call(fetch)
        ```
    """

    __slots__ = ("_listener", "_open", "_telemetry")

    def __init__(self, listener: Listener, telemetry: object) -> None:
        self._listener = listener
        self._telemetry = telemetry
        self._open = True

    def close(self) -> None:
        """Stop delivering events to the listener (once; later calls do nothing)."""
        if self._open:
            self._open = False
            remove_listener(self._listener, self._telemetry)  # type: ignore[arg-type]

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def subscribe(listener: Listener, *, policy: object | None = None) -> Subscription:
    """Call `listener(event)` for every `Event` a policy reports, or every policy's.

    Args:
        listener: a callable taking one `Event`. It runs synchronously on the task that
            reported the event, so it should be quick (hand slow work to a queue). An
            exception it raises is logged and swallowed: the call goes on.
        policy: a policy or `Pipeline` to listen to alone (default: every policy).

    Events are delivered whether or not OpenTelemetry is configured, and whatever
    `configure()` says; a policy built with `telemetry=False` reports nothing.

    Returns:
        A `Subscription`; close it (or use it as a context manager) to stop listening.

    Raises:
        ValueError: `listener` is not callable, or `policy` is not a policy.

    Examples:
        ```python
        import logging

        log = logging.getLogger("resilience")


        def log_event(event: resilient.telemetry.Event) -> None:
            if event.name != "resilient.call":
                log.info("%s %s %s", event.policy, event.name, dict(event.attributes))


        subscription = resilient.telemetry.subscribe(log_event)
        ...
        subscription.close()
        ```
    """
    if not callable(listener):
        raise ValueError(f"listener must be a callable (event) -> None, got {short_repr(listener)}")
    telemetry = None
    if policy is not None:
        telemetry = getattr(policy, "_telemetry", None)
        if telemetry is None:
            raise ValueError(f"policy must be a resilient policy, got {short_repr(policy)}")
    add_listener(listener, telemetry)
    return Subscription(listener, telemetry)


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
