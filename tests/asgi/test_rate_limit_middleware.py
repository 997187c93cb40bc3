"""RateLimitMiddleware against a real uvicorn server on loopback, with real httpx clients;
the fields are read back with the http-sf parser."""

from __future__ import annotations

import json
from typing import Any

import http_sf
import httpx
import pytest
from asgi_servers import serve as serve_with_uvicorn_proxy_headers
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import resilient.telemetry
from resilient import RateLimiter
from resilient.asgi import (
    RateLimitMiddleware,
    client_address,
    header,
    rate_limit_dependency,
    route,
)
from resilient.asgi._keys import CLIENT_ADDRESS
from resilient.asgi._rate_limit import ATTR_KEY_HASH, key_hash

pytestmark = pytest.mark.anyio


def serve(app: Any) -> Any:
    """uvicorn without its own reading of X-Forwarded-For: the middleware does it here."""
    return serve_with_uvicorn_proxy_headers(app, proxy_headers=False)


LOOPBACK = "127.0.0.1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn serves on asyncio; the client side runs there too


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"client": request.scope.get(CLIENT_ADDRESS)})


def starlette_app(**options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", hello, methods=["GET", "OPTIONS"]),
            Route("/items/{item_id}", hello),
            Route("/health/ready", hello),
        ]
    )
    app.add_middleware(RateLimitMiddleware, **options)
    return app


def fields(response: httpx.Response, name: str) -> dict[str, dict[str, Any]]:
    """A RateLimit or RateLimit-Policy field as http-sf parses it: {policy: params}."""
    value = response.headers[name]
    parsed = http_sf.parse(value.encode("ascii"), tltype="list")
    return {item: dict(params) for item, params in parsed}


async def test_every_response_carries_both_fields_as_structured_field_lists() -> None:
    limiter = RateLimiter(5, per=1.0, name="per-second")
    with serve(starlette_app(limiters=limiter)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            first = await client.get("/")
            second = await client.get("/")
    assert first.status_code == second.status_code == 200
    assert fields(first, "RateLimit-Policy") == {"per-second": {"q": 5, "w": 1}}
    assert fields(first, "RateLimit") == {"per-second": {"r": 4, "t": 1}}
    assert fields(second, "RateLimit")["per-second"]["r"] == 3


async def test_refusal_is_a_429_problem_with_retry_after() -> None:
    limiter = RateLimiter(2, per=10.0, name="slow")
    with serve(starlette_app(limiters=limiter)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            admitted = [await client.get("/") for _ in range(2)]
            refused = await client.get("/")
    assert [r.status_code for r in admitted] == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["status"] == 429
    assert body["title"] == "Too Many Requests"
    # One permit every 5 s: the next is due in just under 5 s.
    assert refused.headers["retry-after"] == "5"
    assert fields(refused, "RateLimit") == {"slow": {"r": 0, "t": 5}}
    assert fields(refused, "RateLimit-Policy") == {"slow": {"q": 2, "w": 10}}


async def test_a_refusal_by_one_limiter_leaves_the_others_tokens() -> None:
    daily = RateLimiter(100, per=86_400, name="daily")
    burst = RateLimiter(2, per=1.0, name="burst")
    with serve(starlette_app(limiters=[daily, burst])) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            responses = [await client.get("/") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 429, 429, 429]
    # The day's limiter granted each refused request first, then got its permit back.
    assert await daily.remaining(LOOPBACK) == 98
    last = fields(responses[-1], "RateLimit")
    assert last["daily"]["r"] == 98
    assert last["burst"]["r"] == 0
    assert list(fields(responses[0], "RateLimit-Policy")) == ["daily", "burst"]


async def test_the_limiters_after_a_refusal_are_not_asked() -> None:
    burst = RateLimiter(1, per=60.0, name="burst")
    daily = RateLimiter(100, per=86_400, name="daily")
    with serve(starlette_app(limiters=[burst, daily])) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            responses = [await client.get("/") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 429, 429, 429]
    assert await daily.remaining(LOOPBACK) == 99
    assert set(fields(responses[-1], "RateLimit")) == {"burst"}


async def test_exempt_paths_and_preflights_are_not_counted() -> None:
    limiter = RateLimiter(1, per=60.0, name="strict")
    app = starlette_app(limiters=limiter, exempt=("/health",), exempt_preflight=True)
    preflight = {"origin": "https://example.com", "access-control-request-method": "GET"}
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            probes = [await client.get("/health/ready") for _ in range(3)]
            preflights = [await client.options("/", headers=preflight) for _ in range(3)]
            counted = await client.get("/")
            plain_options = await client.options("/")
    assert [r.status_code for r in probes + preflights] == [200] * 6
    assert all("ratelimit" not in r.headers for r in probes + preflights)
    assert counted.status_code == 200
    assert plain_options.status_code == 429  # an OPTIONS that is no preflight counts


async def test_a_request_without_a_key_is_not_limited() -> None:
    limiter = RateLimiter(1, per=60.0, name="per-key")
    with serve(starlette_app(limiters=limiter, key=header("x-api-key"))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            anonymous = [await client.get("/") for _ in range(3)]
            first = await client.get("/", headers={"x-api-key": "alice"})
            again = await client.get("/", headers={"X-API-Key": "alice"})
            other = await client.get("/", headers={"x-api-key": "bob"})
    assert [r.status_code for r in anonymous] == [200, 200, 200]
    assert all("ratelimit" not in r.headers for r in anonymous)
    assert (first.status_code, again.status_code, other.status_code) == (200, 429, 200)


async def test_route_key_limits_each_path_whoever_calls() -> None:
    limiter = RateLimiter(1, per=60.0, name="per-route")
    with serve(starlette_app(limiters=limiter, key=route)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            statuses = [
                (await client.get(path)).status_code
                for path in ("/items/1", "/items/1", "/items/2", "/")
            ]
    assert statuses == [200, 429, 200, 200]


async def test_forged_forwarding_headers_from_an_untrusted_peer_are_ignored() -> None:
    limiter = RateLimiter(2, per=60.0, name="per-client")
    app = starlette_app(limiters=limiter, trusted_proxies=("10.0.0.0/8",))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            statuses = []
            for n in range(4):
                forged = {"x-forwarded-for": f"203.0.113.{n}", "forwarded": f"for=198.51.100.{n}"}
                response = await client.get("/", headers=forged)
                statuses.append(response.status_code)
                if n == 0:
                    assert response.json() == {"client": None}
    assert statuses == [200, 200, 429, 429]
    assert await limiter.remaining(LOOPBACK) == 0


async def test_trusted_proxies_are_walked_from_the_right() -> None:
    limiter = RateLimiter(1, per=60.0, name="behind-proxies")
    app = starlette_app(limiters=limiter, trusted_proxies=("127.0.0.1", "10.0.0.0/8"))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            # The client's own say (left of the first untrusted hop) is never read.
            chain = {"x-forwarded-for": "1.2.3.4, 203.0.113.7, 10.1.2.3"}
            first = await client.get("/", headers=chain)
            same_client = await client.get(
                "/", headers={"x-forwarded-for": "9.9.9.9, 203.0.113.7, 10.9.9.9"}
            )
            rfc7239 = await client.get(
                "/", headers={"forwarded": 'for="[2001:db8::1]:4711";proto=https, for=10.0.0.1'}
            )
    assert first.json() == {"client": "203.0.113.7"}
    assert (first.status_code, same_client.status_code) == (200, 429)
    assert rfc7239.status_code == 200
    assert rfc7239.json() == {"client": "2001:db8::1"}


@pytest.mark.parametrize(
    "headers",
    [
        {"x-forwarded-for": "x" * 60_000},
        {"x-forwarded-for": ",,,;;;" * 1000},
        {"forwarded": 'for="unterminated, for=[::1'},
        {"forwarded": "for=" + "9" * 5000},
        {"x-forwarded-for": "unknown"},
        {"x-forwarded-for": "999.1.1.1, 127.0.0.1"},
    ],
)
async def test_malformed_or_huge_forwarding_headers_count_against_the_proxy(
    headers: dict[str, str],
) -> None:
    limiter = RateLimiter(1, per=60.0, name="hostile")
    app = starlette_app(limiters=limiter, trusted_proxies=("127.0.0.1", "10.0.0.0/8"))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            first = await client.get("/", headers=headers)
            second = await client.get("/")
    assert first.status_code == 200
    assert second.status_code == 429  # both counted against the proxy itself


async def test_huge_header_is_answered_not_crashed() -> None:
    limiter = RateLimiter(100, per=60.0, name="big")
    with serve(starlette_app(limiters=limiter, key=header("x-api-key"))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            huge = await client.get("/", headers={"x-api-key": "k" * 60_000})
            again = await client.get("/", headers={"x-api-key": "k" * 60_000})
            ok = await client.get("/")
    # The server may refuse a header that large itself; when it serves it, it is limited.
    if huge.status_code == 200:
        assert fields(huge, "RateLimit")["big"]["r"] == 99
        assert fields(again, "RateLimit")["big"]["r"] == 98
    else:
        assert huge.status_code in (400, 431)
    assert ok.status_code == 200


@pytest.mark.parametrize("size", [0, 1_000_000])
async def test_empty_and_1mb_keys_are_limited_like_any_other(size: int) -> None:
    limiter = RateLimiter(2, per=60.0, name=f"key-{size}")
    app = starlette_app(limiters=limiter, key=lambda scope: "k" * size)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            statuses = [(await client.get("/")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    store = limiter.store
    # A huge key is kept as its digest, not as a megabyte of state.
    assert all(len(k) <= 256 for k in store._tats or {})  # type: ignore[attr-defined]


async def test_fastapi_app_with_the_middleware_and_a_route_dependency() -> None:
    searches = RateLimiter(1, per=60.0, name="search")
    app = FastAPI()

    @app.get("/search", dependencies=[Depends(rate_limit_dependency(searches))])
    async def search(q: str) -> dict[str, str]:
        return {"q": q}

    @app.get("/home")
    async def home() -> dict[str, str]:
        return {"page": "home"}

    app.add_middleware(RateLimitMiddleware, limiters=RateLimiter(10, name="global"))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            first = await client.get("/search", params={"q": "a"})
            refused = await client.get("/search", params={"q": "b"})
            home = await client.get("/home")
    assert first.status_code == 200
    assert first.json() == {"q": "a"}
    # Both fields are lists: the middleware's line and the dependency's line combine.
    assert set(fields(first, "RateLimit")) == {"global", "search"}
    assert set(fields(first, "RateLimit-Policy")) == {"global", "search"}
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert fields(refused, "RateLimit")["search"] == {"r": 0, "t": 60}
    assert home.status_code == 200
    assert fields(home, "RateLimit") == {"global": {"r": 7, "t": 1}}


async def test_starlette_route_with_its_own_middleware() -> None:
    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route(
                "/reports/{name}",
                page,
                middleware=[
                    Middleware(
                        RateLimitMiddleware,
                        limiters=RateLimiter(1, per=60.0, name="reports"),
                        key=lambda scope: f"{client_address(scope)} {route(scope)}",
                    )
                ],
            ),
            Route("/", page),
        ]
    )
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            statuses = [
                (await client.get(path)).status_code
                for path in ("/reports/a", "/reports/b", "/", "/")
            ]
    assert statuses == [200, 429, 200, 200]  # one route template, one bucket


async def test_limited_requests_are_reported_with_a_key_hash_never_the_key() -> None:
    events: list[resilient.telemetry.Event] = []
    limiter = RateLimiter(1, per=60.0, name="telemetry-limited")
    app = starlette_app(limiters=limiter, key=header("x-api-key"))
    with resilient.telemetry.subscribe(events.append, policy=limiter), serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(2):
                await client.get("/", headers={"x-api-key": "secret-key-123"})
    limited = [e for e in events if e.name == "resilient.rate_limit.limited"]
    assert len(limited) == 1
    (event,) = limited
    assert event.policy == "telemetry-limited"
    assert event.attributes[ATTR_KEY_HASH] == key_hash("secret-key-123")
    assert "secret-key-123" not in json.dumps([dict(e.attributes) for e in events], default=str)
    ends = [e.attributes["resilient.outcome"] for e in events if e.name == "resilient.call"]
    assert ends == ["success", "rejected"]


async def test_limited_requests_count_in_the_limiters_metrics(telemetry: Any) -> None:
    limiter = RateLimiter(1, per=60.0, name="metrics-limited")
    with serve(starlette_app(limiters=limiter)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(3):
                await client.get("/")
    total = telemetry.metric_total
    decisions = "resilient.rate_limit.decisions"
    decision = "resilient.rate_limit.decision"
    assert total(decisions, "metrics-limited", **{decision: "allowed"}) == 1
    assert total(decisions, "metrics-limited", **{decision: "rejected"}) == 2
    limited = [
        e
        for s in telemetry.spans("resilient.rate_limit")
        for e in s.events
        if e.name == "resilient.rate_limit.limited"
    ]
    assert len(limited) == 2


async def test_the_dependency_answers_503_when_its_store_denies_while_down() -> None:
    from redis_servers import free_port
    from resilient.storage import RedisStore

    down = RedisStore(f"redis://127.0.0.1:{free_port()}/0", on_unavailable="deny", timeout=0.2)
    app = FastAPI()
    limit = rate_limit_dependency(RateLimiter(5, store=down, name="down"))

    @app.get("/", dependencies=[Depends(limit)])
    async def index() -> dict[str, str]:
        return {"ok": "yes"}

    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert fields(response, "RateLimit-Policy") == {"down": {"q": 5, "w": 1}}
