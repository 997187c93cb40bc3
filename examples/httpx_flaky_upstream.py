"""An httpx client over ResilientTransport calling a flaky local server.

The server (uvicorn on a free loopback port, in a thread of this process) fails on purpose:
`/orders` answers 503 to two requests in three, `/busy` answers 429 with `Retry-After: 1`
once, `/down` is always 503. Run it with `python examples/httpx_flaky_upstream.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from resilient import CircuitBreaker, CircuitOpenError, Retry
from resilient.httpx import ResilientTransport

_orders = itertools.count()
_busy = itertools.count()


async def flaky_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path, status, headers = scope["path"], 200, []
    if path == "/orders" and next(_orders) % 3 != 2:
        status = 503
    elif path == "/busy" and next(_busy) == 0:
        status, headers = 429, [(b"retry-after", b"1")]
    elif path == "/down":
        status = 503
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": f"{path}: {status}".encode()})


def start_server() -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(flaky_app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, url


async def main(url: str) -> None:
    retry = Retry(name="flaky-upstream")
    transport = ResilientTransport(
        retry=retry,
        breaker=CircuitBreaker(minimum_calls=10, failure_ratio=0.5, break_duration=30),
        attempt_timeout=2.0,
    )
    async with httpx.AsyncClient(transport=transport, base_url=url) as client:
        # Two 503s, then a 200: the client sees only the 200.
        response = await client.get("/orders")
        print(f"GET /orders   -> {response.status_code} after {retry.statistics.attempts} attempts")

        # A POST without an Idempotency-Key is never sent twice...
        response = await client.post("/orders", json={"item": "book"})
        print(f"POST /orders  -> {response.status_code} (sent once: no Idempotency-Key)")
        # ...with one, it is retried like a GET.
        response = await client.post(
            "/orders", json={"item": "book"}, headers={"Idempotency-Key": "order-42"}
        )
        print(f"POST /orders  -> {response.status_code} (with an Idempotency-Key)")

        # 429 with Retry-After: 1: the retry waits at least that long.
        started = time.monotonic()
        response = await client.get("/busy")
        waited = time.monotonic() - started
        print(
            f"GET /busy     -> {response.status_code} after waiting {waited:.1f}s (Retry-After: 1)"
        )

        # The host keeps failing: once half of at least 10 attempts failed, its breaker
        # opens, and calls fail at once without going out.
        for _ in range(3):
            try:
                response = await client.get("/down")
                print(f"GET /down     -> {response.status_code}")
            except CircuitOpenError as exc:
                print(f"GET /down     -> CircuitOpenError, retry after {exc.retry_after:.0f}s")
        host = transport.host(url)
        assert host.breaker is not None
        print(f"breaker {host.breaker.name!r} is {host.breaker.state.value}")


if __name__ == "__main__":
    server, thread, url = start_server()
    try:
        asyncio.run(main(url))
    finally:
        server.should_exit = True
        thread.join(10)
