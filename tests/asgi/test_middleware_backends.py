"""The middleware's watcher on both backends: called directly with an in-memory exchange."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from resilient.asgi import LoadSheddingMiddleware

pytestmark = pytest.mark.anyio


class Client:
    """The server side of one request: a body, then a disconnect when the test says."""

    def __init__(self) -> None:
        self.gone = anyio.Event()
        self.sent: list[dict[str, Any]] = []
        self.messages = [{"type": "http.request", "body": b"hi", "more_body": False}]

    async def receive(self) -> dict[str, Any]:
        if self.messages:
            return self.messages.pop(0)
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


SCOPE = {"type": "http", "path": "/", "method": "GET", "headers": []}


async def test_disconnect_cancels_the_running_request_and_frees_its_slot() -> None:
    started = anyio.Event()
    bodies: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        bodies.append((await receive())["body"])
        started.set()
        await anyio.sleep_forever()

    middleware = LoadSheddingMiddleware(app, limit=1)
    client = Client()
    async with anyio.create_task_group() as tg:
        tg.start_soon(middleware, dict(SCOPE), client.receive, client.send)
        await started.wait()
        assert middleware.shedder.in_flight == 1
        client.gone.set()
    assert bodies == [b"hi"]
    assert middleware.shedder.in_flight == 0


async def test_response_completed_before_the_disconnect_is_not_cancelled() -> None:
    finished: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        client.gone.set()  # the server reports the end of the exchange as a disconnect
        await anyio.wait_all_tasks_blocked()
        finished.append("background work after the response")

    middleware = LoadSheddingMiddleware(app, limit=1)
    client = Client()
    await middleware(dict(SCOPE), client.receive, client.send)
    assert finished == ["background work after the response"]
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]


async def test_shed_request_gets_a_problem_response() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    middleware = LoadSheddingMiddleware(app, limit=1)
    client = Client()
    async with middleware.shedder:
        await middleware(dict(SCOPE), client.receive, client.send)
    start, body = client.sent
    assert start["status"] == 503
    assert (b"content-type", b"application/problem+json") in start["headers"]
    assert (b"retry-after", b"1") in start["headers"]
    assert b'"status":503' in body["body"]


async def test_recorded_requests_run_and_report_their_shedding(telemetry: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = LoadSheddingMiddleware(app, limit=1)
    client = Client()
    await middleware(dict(SCOPE), client.receive, client.send)
    assert client.sent[0]["status"] == 200
    async with middleware.shedder:
        await middleware(dict(SCOPE), client.receive, client.send)
    assert client.sent[2]["status"] == 503
    reasons = [
        event.attributes["resilient.load_shed.reason"]
        for span in telemetry.spans("resilient.load_shed")
        for event in span.events
        if event.name == "resilient.load_shed.shed"
    ]
    assert reasons == ["limit"]
    assert middleware.shedder.in_flight == 0
