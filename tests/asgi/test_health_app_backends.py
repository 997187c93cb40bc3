"""HealthApp driven directly on each anyio backend, and how it reads its path when mounted."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from resilient.asgi import HealthApp
from resilient.asgi._health import route_path

pytestmark = pytest.mark.anyio


async def hanging() -> bool:
    await anyio.sleep_forever()
    return True


async def passing() -> bool:
    return True


@pytest.mark.parametrize(
    ("scope", "path"),
    [
        ({"path": "/readyz", "root_path": ""}, "/readyz"),
        ({"path": "/health/readyz", "root_path": "/health"}, "/readyz"),
        ({"path": "/readyz", "root_path": "/health"}, "/readyz"),  # already stripped
        ({"path": "/healthz/readyz", "root_path": "/health"}, "/healthz/readyz"),
        ({"path": "/health", "root_path": "/health"}, ""),
    ],
)
def test_paths_are_read_below_the_mount_point(scope: dict[str, Any], path: str) -> None:
    assert route_path(scope) == path


async def test_the_app_serves_on_either_backend_without_a_server() -> None:
    # The server tests run uvicorn's asyncio loop; this drives the app itself on the
    # backend under test (trio included), as any ASGI server for trio would.
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    app = HealthApp(checks={"slow": hanging, "db": passing}, timeout=0.05, details=True)
    scope = {"type": "http", "method": "GET", "path": "/readyz", "root_path": ""}
    await app(scope, receive, send)
    assert sent[0]["status"] == 503
    body = json.loads(sent[1]["body"])
    assert body["checks"]["slow"][0]["output"] == "timed out after 0.05s"


async def test_a_websocket_is_refused() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await HealthApp()({"type": "websocket", "path": "/livez"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
