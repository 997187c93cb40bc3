"""Health endpoints for a FastAPI service: liveness, readiness and the event-loop watchdog.

The service mounts `HealthApp` under /health with a database check, the breaker that guards
its payments provider and a watchdog started in the lifespan. The script serves it with
uvicorn on a loopback port and probes it the way an orchestrator would, while the service
goes through a bad minute: the payments provider fails (its breaker opens: `warn`, still
ready), then a handler blocks the event loop with a synchronous call (the watchdog sees it:
`fail`, 503), then everything recovers. Run it with
`.venv/bin/python examples/health_endpoints.py`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from resilient import CircuitBreaker, CircuitOpenError
from resilient.asgi import HealthApp
from resilient.health import Watchdog

payments = CircuitBreaker(name="payments", minimum_calls=3, break_duration=30.0)
watchdog = Watchdog(max_loop_lag=0.2, interval=0.05)


async def database() -> bool:
    """A readiness check: in a real service, `await pool.execute("SELECT 1")`."""
    await asyncio.sleep(0.001)
    return True


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with watchdog:
        yield


app = FastAPI(lifespan=lifespan)
app.mount(
    "/health",
    HealthApp(
        checks={"database": database},
        breakers=[payments],
        watchdog=watchdog,
        details=True,  # for this demo; keep it off where outsiders can reach the endpoint
    ),
)


class ProviderDown(Exception):
    """The payments provider is failing."""


async def charge() -> str:
    raise ProviderDown("502 from the payments provider")


@app.post("/pay")
async def pay() -> dict[str, str]:
    try:
        return {"result": await payments.call(charge)}
    except (ProviderDown, CircuitOpenError) as error:
        return {"result": f"queued for later ({type(error).__name__})"}


@app.get("/report")
async def report() -> dict[str, str]:
    time.sleep(0.5)  # the bug: a synchronous call holds the event loop  # noqa: ASYNC251
    return {"report": "done"}


async def probe(client: httpx.AsyncClient, moment: str) -> None:
    response = await client.get("/health/readyz")
    body = response.json()
    parts = []
    for key, (entry, *_) in body.get("checks", {}).items():
        if key == "memory:residentSize":
            continue
        value = entry.get("observedValue")
        if isinstance(value, float):
            value = f"{value * 1000:.0f} ms"
        shown = "" if value is None else f" ({value})"
        parts.append(f"{key}={entry['status']}{shown}")
    print(f"{moment:<34} {response.status_code} {body['status']:<5} {', '.join(parts)}")


async def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # Built before the server starts: building a client loads TLS certificates, a
    # synchronous step that would itself show up as loop lag on the first probe.
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, not an event
        await asyncio.sleep(0.01)
    async with client:
        live = await client.get("/health/livez")
        print(f"{'liveness':<34} {live.status_code} {live.json()['status']}")
        await probe(client, "healthy")
        for _ in range(3):
            await client.post("/pay")
        await probe(client, "payments provider failing")
        # A probe sent while a handler blocks the loop waits for it, then sees the lag.
        blocked = asyncio.create_task(client.get("/report"))
        await asyncio.sleep(0.05)
        await probe(client, "a handler blocks the event loop")
        await blocked
        await asyncio.sleep(0.2)
        payments.reset()
        await probe(client, "recovered")
    server.should_exit = True
    await serving
    listener.close()


if __name__ == "__main__":
    asyncio.run(main())
