"""The transport's spans follow OpenTelemetry's HTTP conventions: the logical call is an
INTERNAL span, each attempt a CLIENT span; HTTP instrumentations stay quiet inside it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind
from upstream import Upstream

from resilient import Backoff, Hedge, Retry
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


async def test_each_hedged_copy_is_a_client_span_with_its_resend_count(
    upstream: Upstream, path: str, telemetry: Any
) -> None:
    # The first request hangs, the hedge sent 0.05 s later answers: two requests on the
    # wire, two CLIENT spans under the hedge's span, each carrying its own trace context.
    inner = Recording()
    transport = ResilientTransport(inner, hedge=Hedge(0.05, name="users-hedge"))
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        response = await http.get(f"{path}?fail=1&mode=hang&delay=3")
    assert response.text == "ok 2"

    # retry > circuit breaker (the attempt admitted once) > hedge > the two copies.
    (logical,) = telemetry.spans("resilient.retry")
    (breaker,) = telemetry.spans("resilient.circuit_breaker")
    (hedge,) = telemetry.spans("resilient.hedge")
    assert breaker.parent is not None
    assert breaker.parent.span_id == logical.context.span_id
    assert hedge.parent is not None
    assert hedge.parent.span_id == breaker.context.span_id
    copies = telemetry.spans("resilient.retry.attempt")
    assert [s.kind for s in copies] == [SpanKind.CLIENT, SpanKind.CLIENT]
    assert len(inner.seen) == 2  # one span per request sent, and no other attempt span
    by_resend = {dict(s.attributes or {}).get("http.request.resend_count"): s for s in copies}
    primary, hedged = by_resend[None], by_resend[1]
    for span in copies:
        assert span.parent is not None
        assert span.parent.span_id == hedge.context.span_id
        attributes = dict(span.attributes or {})
        assert attributes["resilient.retry.attempt"] == 1
        assert attributes["http.request.method"] == "GET"
        assert attributes["server.port"] == upstream.port
    assert dict(hedged.attributes or {})["http.response.status_code"] == 200
    assert "http.response.status_code" not in dict(primary.attributes or {})  # cancelled

    # Each copy went out with the trace context naming its own span.
    sent = sorted(traceparent or "" for traceparent, _ in inner.seen)
    expected = sorted(f"{s.context.span_id:016x}" for s in copies)
    assert [any(e in t for t in sent) for e in expected] == [True, True]
    assert sent[0] != sent[1]


async def test_resend_counts_run_on_across_hedged_attempts(
    upstream: Upstream, path: str, telemetry: Any
) -> None:
    # Attempt 1: the primary hangs past its attempt timeout, its hedge does too; attempt 2
    # answers at once. Four requests were sent: resend counts 0 (none), 1, 2 and 3.
    transport = ResilientTransport(
        retry=Retry(backoff=Backoff(initial=0.001)),
        hedge=Hedge(0.05, budget=None),
        attempt_timeout=0.3,
    )
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        response = await http.get(f"{path}?fail=2&mode=hang&delay=3")
    assert response.status_code == 200
    assert upstream.hits[path] == 3  # the third request answered before a fourth was due
    counts = sorted(
        dict(s.attributes or {}).get("http.request.resend_count", 0)
        for s in telemetry.spans("resilient.retry.attempt")
    )
    assert counts == [0, 1, 2]
    attempts = sorted(
        dict(s.attributes or {})["resilient.retry.attempt"]
        for s in telemetry.spans("resilient.retry.attempt")
    )
    assert attempts == [1, 1, 2]


async def test_an_unhedged_request_keeps_its_single_attempt_span(
    upstream: Upstream, path: str, telemetry: Any
) -> None:
    # A POST without an Idempotency-Key is never hedged: one attempt span, as without a hedge.
    transport = ResilientTransport(hedge=Hedge(0.01))
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        response = await http.post(f"{path}?mode=hang&delay=0.1", content=b"x")
    assert response.status_code == 200
    assert telemetry.spans("resilient.hedge") == []
    (attempt,) = telemetry.spans("resilient.retry.attempt")
    assert attempt.kind is SpanKind.CLIENT
