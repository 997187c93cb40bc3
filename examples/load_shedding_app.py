"""Load shedding in a web app: a Starlette app that serves 4 requests at a time, behind
`LoadSheddingMiddleware`, hit by a burst five times its size.

The app serves what it can at its normal latency and answers the rest at once with a 503,
a `Retry-After` header and a problem+json body; checkout requests outrank the
recommendations in the queue; the health probe is never shed. Run it with
`.venv/bin/python examples/load_shedding_app.py` (it starts uvicorn on a free loopback port,
sends the burst with httpx, prints what happened and stops).
"""

from __future__ import annotations

import asyncio
import collections
import socket

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resilient.asgi import LoadSheddingMiddleware, priority_from_routes
from resilient.load_shedding import current_priority

capacity = asyncio.Semaphore(4)  # what the app can really do at once


async def checkout(request: Request) -> JSONResponse:
    async with capacity:
        await asyncio.sleep(0.05)
    return JSONResponse({"ok": True, "priority": current_priority()})


async def recommendations(request: Request) -> JSONResponse:
    async with capacity:
        await asyncio.sleep(0.05)
    return JSONResponse({"items": [], "priority": current_priority()})


async def livez(request: Request) -> JSONResponse:
    return JSONResponse({"status": "pass"})


app = Starlette(
    routes=[
        Route("/checkout", checkout),
        Route("/recommendations", recommendations),
        Route("/livez", livez),
    ]
)
app.add_middleware(
    LoadSheddingMiddleware,
    limit=4,  # as many as the app serves at once
    max_waiting=4,  # a short queue, never an unbounded one
    max_wait=0.1,  # a request that cannot start within 100 ms is refused unrun
    priority=priority_from_routes({"/checkout": 0, "/recommendations": 1}),
    exempt=("/livez",),  # the health probe is never shed
)


async def burst(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        paths = ["/recommendations", "/checkout"] * 10
        responses = await asyncio.gather(*(client.get(path) for path in paths))
        probe = await client.get("/livez")
    outcome = collections.Counter((r.url.path, r.status_code) for r in responses)
    for (path, status), count in sorted(outcome.items()):
        print(f"{path:<17} {status}: {count}")
    refused = next(r for r in responses if r.status_code == 503)
    print(
        "a refusal:",
        refused.headers["content-type"],
        "Retry-After:",
        refused.headers["retry-after"],
    )
    print("  ", refused.json())
    print("health probe during the burst:", probe.status_code)
    assert outcome[("/checkout", 200)] >= outcome[("/recommendations", 200)]
    assert probe.status_code == 200


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):  # uvicorn says it started with a flag, not an event
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        await burst(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await serving
        sock.close()


if __name__ == "__main__":
    asyncio.run(main())
