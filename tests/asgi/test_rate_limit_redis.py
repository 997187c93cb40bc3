"""RateLimitMiddleware on a real Redis: one limit for every process of an app."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import http_sf
import httpx
import pytest
from asgi_servers import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from redis_servers import free_port
from resilient import RateLimiter
from resilient.asgi import RateLimitMiddleware
from resilient.storage import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

HERE = Path(__file__).resolve().parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn serves on asyncio; the client side runs there too


def limited_app(limiters: list[RateLimiter]) -> Starlette:
    """A one-page Starlette app behind `RateLimitMiddleware(limiters=limiters)`."""

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(RateLimitMiddleware, limiters=limiters)
    return app


def ratelimit(response: httpx.Response) -> dict[str, dict[str, Any]]:
    parsed = http_sf.parse(response.headers["ratelimit"].encode("ascii"), tltype="list")
    return {item: dict(params) for item, params in parsed}


@contextmanager
def worker(redis_url: str, prefix: str) -> Iterator[str]:
    """One uvicorn worker process serving rate_limit_app on its own loopback port."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "RATE_LIMIT_PREFIX": prefix}
    command = [
        sys.executable, "-m", "uvicorn", "rate_limit_app:create_app", "--factory",
        "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port),
        "--no-proxy-headers", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {process.returncode}")
            try:
                # An unlimited path: probing spends nothing.
                httpx.get(url + "/probe", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_two_worker_processes_share_one_limit(redis_url: str, prefix: str) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(worker(redis_url, prefix))
        second = stack.enter_context(worker(redis_url, prefix))
        async with httpx.AsyncClient() as client:
            # The probes made 404s, which count too: read where the bucket stands first.
            start = ratelimit(await client.get(first + "/"))["minute"]["r"]
            responses = []
            for n in range(start + 2):
                responses.append(await client.get((second if n % 2 == 0 else first) + "/"))
    pids = {r.json()["pid"] for r in responses if r.status_code == 200}
    assert len(pids) == 2  # both processes served
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * start + [429, 429]
    assert ratelimit(responses[-1])["minute"]["r"] == 0
    # The day's limit got back the permits of the refused requests, in both processes.
    assert ratelimit(responses[-1])["daily"]["r"] == 1000 - 5


async def test_several_limiters_on_redis_in_one_process(redis_url: str, prefix: str) -> None:
    store = RedisStore(redis_url, prefix=prefix, on_unavailable="deny")

    app = limited_app(
        [
            RateLimiter(100, per=3600, store=store, name="hourly"),
            RateLimiter(2, per=60.0, store=store, name="minute"),
        ]
    )
    with serve(app, proxy_headers=False) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            responses = [await client.get("/") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 429, 429]
    assert ratelimit(responses[-1]) == {
        "hourly": {"r": 98, "t": 72},
        "minute": {"r": 0, "t": 30},
    }
    checker = RedisStore(redis_url, prefix=prefix)
    try:
        hourly = RateLimiter(100, per=3600, store=checker, name="hourly")
        assert await hourly.remaining("127.0.0.1") == 98
    finally:
        await checker.aclose()


async def test_a_store_that_denies_while_down_answers_503() -> None:
    down = RedisStore(f"redis://127.0.0.1:{free_port()}/0", on_unavailable="deny", timeout=0.2)
    local = RateLimiter(10, name="local")

    app = limited_app([local, RateLimiter(10, store=down, name="shared")])
    with serve(app, proxy_headers=False) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert "ratelimit-policy" in response.headers
    assert await local.remaining("127.0.0.1") == 10  # its permit was given back


async def test_concurrent_requests_never_exceed_a_shared_limit(redis_url: str, prefix: str) -> None:
    store = RedisStore(redis_url, prefix=prefix, on_unavailable="deny")

    app = limited_app(
        [
            RateLimiter(100, per=3600, store=store, name="hourly"),
            RateLimiter(5, per=60.0, store=store, name="minute"),
        ]
    )
    with serve(app, proxy_headers=False) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            responses = await asyncio.gather(*(client.get("/") for _ in range(30)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 5
    assert statuses.count(429) == 25
    checker = RedisStore(redis_url, prefix=prefix)
    try:
        hourly = RateLimiter(100, per=3600, store=checker, name="hourly")
        left = await hourly.remaining("127.0.0.1")
    finally:
        await checker.aclose()
    # Each admitted request spent its permit; a refund lost to a concurrent request of the
    # same client is at most one permit per refused request, and comes back with time.
    assert 100 - 5 - 25 <= left <= 100 - 5
