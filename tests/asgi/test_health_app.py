"""HealthApp on a real uvicorn server: top-level, mounted in Starlette and FastAPI."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from uvicorn_server import running

from redis_servers import free_port
from resilient import CircuitBreaker, RateLimiter
from resilient.asgi import HealthApp
from resilient.health import Watchdog
from resilient.storage import RedisStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The server runs uvicorn's asyncio loop whatever the client runs on, so these tests
    drive it from asyncio alone; test_health_app_backends.py runs the app on trio too."""
    return "asyncio"


HEALTH_JSON = "application/health+json"


class Counting:
    """A check counting its calls; each call takes `delay` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        await anyio.sleep(self.delay)
        return True


async def hanging() -> bool:
    await anyio.sleep_forever()
    return True


async def refused() -> str:
    return "connection refused by db:5432"


async def get(client: httpx.AsyncClient, url: str) -> tuple[int, Any]:
    response = await client.get(url)
    if response.headers.get("content-type") == HEALTH_JSON:
        return response.status_code, response.json()
    return response.status_code, response.text


async def test_livez_passes_even_when_readiness_fails() -> None:
    with running(HealthApp(checks={"db": refused})) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            live = await client.get("/livez")
            ready = await client.get("/readyz")
    assert live.status_code == 200
    assert live.headers["content-type"] == HEALTH_JSON
    assert live.headers["cache-control"] == "no-store"
    assert live.json() == {"status": "pass"}
    assert ready.status_code == 503
    assert ready.json() == {"status": "fail"}  # no names, no error text


async def test_details_show_checks_and_error_text() -> None:
    with running(HealthApp(checks={"db": refused, "cache": Counting()}, details=True)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            status, body = await get(client, "/readyz")
    assert status == 503
    assert body == {
        "status": "fail",
        "checks": {
            "db": [
                {
                    "status": "fail",
                    "componentType": "component",
                    "output": "connection refused by db:5432",
                }
            ],
            "cache": [{"status": "pass", "componentType": "component"}],
        },
    }


async def test_a_hanging_check_is_cut_at_the_timeout() -> None:
    app = HealthApp(checks={"stuck": hanging, "db": Counting()}, timeout=0.2, details=True)
    with running(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            started = time.monotonic()
            status, body = await get(client, "/readyz")
            elapsed = time.monotonic() - started
    assert status == 503
    assert body["checks"]["stuck"] == [
        {"status": "fail", "componentType": "component", "output": "timed out after 0.2s"}
    ]
    assert body["checks"]["db"][0]["status"] == "pass"
    assert elapsed < 5  # answered, rather than left for the client to give up


async def test_many_concurrent_probes_run_a_check_once() -> None:
    check = Counting(delay=0.2)
    with running(HealthApp(checks={"db": check}, cache=30)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            statuses: list[int] = []

            async def probe() -> None:
                statuses.append((await client.get("/readyz")).status_code)

            async with anyio.create_task_group() as group:
                for _ in range(40):
                    group.start_soon(probe)
            # Cached: later probes within `cache` seconds do not call it either.
            for _ in range(5):
                await probe()
    assert statuses == [200] * 45
    assert check.calls == 1


async def test_cache_expires() -> None:
    check = Counting()
    with running(HealthApp(checks={"db": check}, cache=0.05)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await client.get("/readyz")
            await anyio.sleep(0.1)
            await client.get("/readyz")
    assert check.calls == 2


async def test_an_open_breaker_is_warn_with_200() -> None:
    breaker = CircuitBreaker("payments")
    breaker.force_open()
    with running(HealthApp(breakers=[breaker], details=True)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            status, body = await get(client, "/readyz")
    assert status == 200
    assert body == {
        "status": "warn",
        "checks": {
            "payments:circuitBreaker": [
                {
                    "status": "warn",
                    "componentType": "component",
                    "observedValue": "forced_open",
                }
            ]
        },
    }


async def test_a_store_that_counts_redis_down_is_fail_with_503() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.1)
    limiter = RateLimiter(10, per=1.0, store=store)
    with running(HealthApp(stores=[store])) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/readyz")).status_code == 200
            with anyio.fail_after(10):
                while store.available:
                    await limiter.acquire()  # allowed: on_unavailable="allow"
            status, body = await get(client, "/readyz")
    await store.aclose()
    assert status == 503
    assert body == {"status": "fail"}


async def test_other_paths_are_404_and_other_methods_405() -> None:
    with running(HealthApp()) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/")).status_code == 404
            assert (await client.get("/readyz/")).status_code == 404
            assert (await client.get("/health")).status_code == 404
            posted = await client.post("/readyz")
            head = await client.head("/readyz")
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET, HEAD"
    assert head.status_code == 200
    assert head.headers["content-type"] == HEALTH_JSON
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(b'{"status":"pass"}')


async def test_as_the_top_level_app_it_completes_the_lifespan() -> None:
    # lifespan="on" makes uvicorn fail to start if startup is not completed.
    with running(HealthApp(), lifespan="on") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/livez")).status_code == 200


async def test_mounted_in_starlette_with_a_watchdog_a_blocked_loop_fails_readiness() -> None:
    watchdog = Watchdog(max_loop_lag=0.2, interval=0.02)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with watchdog:
            yield

    async def block(request: Request) -> PlainTextResponse:
        time.sleep(0.6)  # noqa: ASYNC251 - the bug the watchdog is there to catch
        return PlainTextResponse("done")

    async def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/block", block),
            Mount("/health", HealthApp(watchdog=watchdog, details=True)),
        ],
        lifespan=lifespan,
    )
    with running(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/")).text == "hello"
            status, body = await get(client, "/health/readyz")
            assert status == 200
            assert body["checks"]["eventLoop:lag"][0]["status"] == "pass"
            async with anyio.create_task_group() as group:
                group.start_soon(client.get, "/block")
                await anyio.sleep(0.1)  # the block is under way when the probe is sent
                status, body = await get(client, "/health/readyz")
            assert status == 503
            (lag,) = body["checks"]["eventLoop:lag"]
            assert lag["status"] == "fail"
            assert lag["observedValue"] > 0.2
            with anyio.fail_after(5):
                while (await client.get("/health/readyz")).status_code != 200:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert (await client.get("/health/livez")).status_code == 200


async def test_mounted_in_fastapi() -> None:
    check = Counting()
    app = FastAPI()

    @app.get("/items")
    async def items() -> list[int]:
        return [1, 2]

    app.mount("/ops/health", HealthApp(checks={"db": check}))
    with running(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/items")).json() == [1, 2]
            ready = await client.get("/ops/health/readyz")
            live = await client.get("/ops/health/livez")
            missing = await client.get("/ops/health/other")
    assert ready.status_code == 200
    assert ready.json() == {"status": "pass"}
    assert live.json() == {"status": "pass"}
    assert missing.status_code == 404
    assert check.calls == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"details": 1}, "details"),
        ({"timeout": -1}, "timeout"),
        ({"cache": "1"}, "cache"),
        ({"checks": {"db": None}}, "checks"),
        ({"watchdog": "yes"}, "watchdog"),
    ],
)
def test_arguments_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HealthApp(**kwargs)


async def test_as_the_top_level_app_it_runs_its_watchdog_from_startup_to_shutdown() -> None:
    watchdog = Watchdog(interval=0.01)
    with running(HealthApp(watchdog=watchdog, details=True), lifespan="on") as url:
        assert watchdog.status().running
        async with httpx.AsyncClient(base_url=url) as client:
            status, body = await get(client, "/readyz")
    assert not watchdog.status().running
    assert status == 200
    (lag,) = body["checks"]["eventLoop:lag"]
    assert lag["observedUnit"] == "s"
    assert lag["observedValue"] >= 0
    assert body["checks"]["memory:residentSize"][0]["observedValue"] > 0


async def test_behind_a_proxy_that_strips_a_prefix_it_serves_below_root_path() -> None:
    # uvicorn --root-path /api: the proxy removed /api, uvicorn puts it back in the scope.
    with running(HealthApp(), root_path="/api") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/api/readyz")).status_code == 404
