"""A FastAPI service with load shedding, per-client rate limits and health endpoints together.

- `RateLimitMiddleware` gives each client 5 requests per minute and 1,000 per day, and tells
  it what is left in the IETF `RateLimit-Policy` and `RateLimit` fields; one route has a
  tighter limit of its own, as a dependency.
- `LoadSheddingMiddleware` caps the work in progress at 8 requests.
- `HealthApp` serves `/health/livez` and `/health/readyz`, fed by a watchdog started in the
  app's lifespan; both middlewares leave `/health` alone.

Run it with `.venv/bin/python examples/rate_limited_api.py`: it starts uvicorn on a free
loopback port, sends requests with httpx, prints what the client was told, and stops.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import http_sf
import httpx
import uvicorn
from fastapi import Depends, FastAPI

from resilient import RateLimiter
from resilient.asgi import (
    HealthApp,
    LoadSheddingMiddleware,
    RateLimitMiddleware,
    rate_limit_dependency,
)
from resilient.health import Watchdog

watchdog = Watchdog(max_loop_lag=0.5)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with watchdog:
        yield


app = FastAPI(lifespan=lifespan)
app.mount("/health", HealthApp(watchdog=watchdog))
exports = rate_limit_dependency(RateLimiter(1, per=10.0, name="export"))


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/export", dependencies=[Depends(exports)])
async def export() -> dict[str, str]:
    return {"export": "started"}


# The last added runs first: shed before spending anyone's quota.
app.add_middleware(
    RateLimitMiddleware,
    limiters=[
        RateLimiter(5, per=60.0, name="minute"),
        RateLimiter(1_000, per=86_400, name="daily"),
    ],
    exempt=("/health",),
)
app.add_middleware(LoadSheddingMiddleware, limit=8, exempt=("/health",))


async def client_side(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        # Two exports spend two of the client's 5 a minute, and the second is over the
        # export route's own limit.
        first_export = await client.get("/export")
        second_export = await client.get("/export")
        responses = [await client.get(f"/items/{n}") for n in range(5)]
        ready = await client.get("/health/readyz")
    print("GET /export twice:", first_export.status_code, second_export.status_code)
    print("RateLimit-Policy:", responses[0].headers["ratelimit-policy"])
    for n, response in enumerate(responses):
        field = http_sf.parse(response.headers["ratelimit"].encode(), tltype="list")
        left = {policy: params["r"] for policy, params in field}
        print(f"GET /items/{n}: {response.status_code}  left: {left}")
    refused = next(r for r in responses if r.status_code == 429)
    print(
        "a refusal:",
        refused.headers["content-type"],
        "Retry-After:",
        refused.headers["retry-after"],
    )
    print("  ", refused.json())
    print("GET /health/readyz:", ready.status_code, ready.json())
    assert [r.status_code for r in responses] == [200] * 3 + [429] * 2
    assert (first_export.status_code, second_export.status_code) == (200, 429)
    assert ready.status_code == 200


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", proxy_headers=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):  # uvicorn says it started with a flag, not an event
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        await client_side(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await serving
        sock.close()


if __name__ == "__main__":
    asyncio.run(main())
