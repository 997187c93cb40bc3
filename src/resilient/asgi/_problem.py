"""Refusals as RFC 9457 problem details: one `application/problem+json` response, written
once for every middleware that turns a request away (503 for load shedding, 429 for rate
limits)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from http import HTTPStatus

from resilient.asgi._types import Send

__all__ = ("retry_after_seconds", "send_problem")

PROBLEM_JSON = b"application/problem+json"


def retry_after_seconds(retry_after: float | None, *, default: int = 1) -> int:
    """A `Retry-After` value (whole seconds, at least 1) from a wait in seconds; `default`
    when the wait is unknown."""
    if retry_after is None or not math.isfinite(retry_after):
        return default
    return max(1, math.ceil(retry_after))


async def send_problem(
    send: Send,
    status: int,
    *,
    detail: str,
    retry_after: int | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a complete problem response: `status`, its standard title, `detail`, and a
    `Retry-After` header when `retry_after` (whole seconds) is given.

    The body is RFC 9457's minimal problem object: `type` is `about:blank`, so `title` is
    the status code's own phrase.
    """
    body = json.dumps(
        {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        },
        separators=(",", ":"),
    ).encode()
    response_headers = [
        (b"content-type", PROBLEM_JSON),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if retry_after is not None:
        response_headers.append((b"retry-after", str(retry_after).encode()))
    response_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
