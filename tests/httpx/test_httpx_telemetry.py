"""The transport's spans follow OpenTelemetry's HTTP conventions: the logical call is an
INTERNAL span, each attempt a CLIENT span; HTTP instrumentations stay quiet inside it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind
from upstream import Upstream

from resilient import Backoff, Retry
from resilient.httpx import ResilientTransport

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recording(httpx.AsyncBaseTransport):
    """The real transport, noting what each request carried and whether HTTP client
    instrumentation was suppressed while it was sent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str | None, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY
        self.seen.append((request.headers.get("traceparent"), otel_context.get_value(key)))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_each_attempt_is_a_client_span_under_the_logical_call(
    upstream: Upstream, path: str, telemetry: Any
) -> None:
    inner = Recording()
    retry = Retry(backoff=Backoff(initial=0.001), name="users-api")
    transport = ResilientTransport(inner, retry=retry)
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        response = await http.get(f"{path}?fail=1&code=503")
    assert response.status_code == 200

    (logical,) = telemetry.spans("resilient.retry")
    assert logical.kind is SpanKind.INTERNAL
    attempts = sorted(
        (s for s in telemetry.spans("resilient.retry.attempt")),
        key=lambda s: s.attributes["resilient.retry.attempt"],
    )
    assert [s.kind for s in attempts] == [SpanKind.CLIENT, SpanKind.CLIENT]
    first, second = (dict(s.attributes or {}) for s in attempts)
    for span in attempts:
        assert span.parent is not None
        assert span.parent.span_id == logical.context.span_id
    assert first["http.request.method"] == "GET"
    assert first["server.address"] == "127.0.0.1"
    assert first["server.port"] == upstream.port
    assert first["http.response.status_code"] == 503
    assert first["error.type"] == "503"
    assert "http.request.resend_count" not in first
    assert second["http.response.status_code"] == 200
    assert second["http.request.resend_count"] == 1
    assert "error.type" not in second

    # Retry's metrics count the transport's attempts as they count its own.
    assert telemetry.metric_total("resilient.retry.attempts", policy="users-api") == 2

    # The trace context went out with each attempt, naming that attempt's span, and HTTP
    # client instrumentations were told to stay quiet: no second span per request.
    for (traceparent, suppressed), span in zip(inner.seen, attempts, strict=True):
        assert traceparent is not None
        assert f"{span.context.span_id:016x}" in traceparent
        assert suppressed is True


async def test_a_failed_attempt_carries_the_error_type(
    upstream: Upstream, path: str, telemetry: Any
) -> None:
    transport = ResilientTransport(retry=Retry(backoff=Backoff(initial=0.001)))
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        assert (await http.get(f"{path}?fail=1&mode=reset")).status_code == 200
    errors = [
        dict(s.attributes or {}).get("error.type")
        for s in telemetry.spans("resilient.retry.attempt")
    ]
    assert "RemoteProtocolError" in errors


async def test_a_silenced_retry_records_no_attempt_spans(
    upstream: Upstream, path: str, telemetry: Any
) -> None:
    inner = Recording()
    transport = ResilientTransport(inner, retry=Retry(telemetry=False))
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        await http.get(path)
    assert telemetry.spans("resilient.retry.attempt") == []
    assert inner.seen == [(None, None)]  # no span of ours: nothing sent, nothing suppressed


async def test_beside_opentelemetry_instrumentation_httpx_each_attempt_is_traced_once(
    upstream: Upstream, path: str, telemetry: Any
) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument()
    try:
        transport = ResilientTransport(retry=Retry(backoff=Backoff(initial=0.001)))
        async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
            assert (await http.get(f"{path}?fail=1")).status_code == 200
        # Without the transport's spans (telemetry off), the instrumentation traces each
        # request as usual.
        quiet = ResilientTransport(retry=Retry(backoff=Backoff(initial=0.001), telemetry=False))
        async with httpx.AsyncClient(transport=quiet, base_url=upstream.url) as http:
            assert (await http.get(f"{path}-quiet?fail=1")).status_code == 200
    finally:
        instrumentor.uninstrument()
    clients = [s for s in telemetry.spans() if s.kind is SpanKind.CLIENT]
    ours = [s for s in clients if "resilient.retry.attempt" in (s.attributes or {})]
    theirs = [s for s in clients if s not in ours]
    assert len(ours) == 2  # one per attempt of the first call, and no second span beside it
    assert len(theirs) == 2  # the quiet call's two attempts, traced by the instrumentation
    for span in theirs:  # the URL attribute is named by the semconv version it follows
        assert any(f"{path}-quiet" in str(value) for value in (span.attributes or {}).values())
