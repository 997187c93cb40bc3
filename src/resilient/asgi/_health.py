"""HealthApp: `/livez` and `/readyz` as a pure ASGI application."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Final

from resilient._validate import check_bool
from resilient.circuit_breaker import CircuitBreaker
from resilient.health import _NO_CHECKS, Check, HealthChecks, HealthReport, Watchdog
from resilient.storage._base import BreakerStore, Store

__all__ = ("HealthApp",)

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]

_LIVE: Final = HealthReport("pass")
_HEALTH_JSON: Final = b"application/health+json"
_METHODS: Final = frozenset({"GET", "HEAD"})


def route_path(scope: _Scope) -> str:
    """The request's path below where the app is mounted.

    Servers and frameworks differ: some strip the mount point from `path` (and set
    `root_path`), others keep the full path in `path` and say in `root_path` how much of it
    is the mount point. Both come out the same here.
    """
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


def _encode(report: HealthReport, details: bool) -> bytes:
    return json.dumps(report.to_json(details=details), separators=(",", ":")).encode()


class HealthApp:
    """Liveness and readiness endpoints, as a pure ASGI application.

    - `GET /livez`: the process answers. Always `{"status": "pass"}` with 200; it checks
      nothing outside the process, so that a dependency that is down never gets every
      instance restarted at once.
    - `GET /readyz`: whether this instance should receive traffic, from a `HealthChecks`
      built with the same arguments: every check run concurrently with `timeout`, results
      cached for `cache` seconds and shared by concurrent probes; an open (or half-open)
      breaker is `warn`, a store that counts its backend as down `fail`, a watchdog past
      its thresholds `fail`. 200 for `pass` and `warn`, 503 for `fail`.

    Bodies are `application/health+json` (draft-inadarei-api-health-check), sent with
    `Cache-Control: no-store`. Without `details`, a body is only the status: check names
    and error text tell an outsider what the service runs on and how it fails, and probes
    need nothing more than the status code. `HEAD` answers as `GET` without the body; any
    other method is 405, any other path 404.

    Mount it anywhere: the paths are read below the mount point (`root_path`), so
    `app.mount("/health", HealthApp())` serves `/health/livez` and `/health/readyz`. Mounted,
    it receives no lifespan events: start its watchdog in the parent application's
    lifespan, with `async with watchdog:`. As the top-level application (served on a port
    of its own, say) it completes the lifespan protocol and runs its watchdog from startup
    to shutdown, unless the watchdog is already running. A WebSocket connection is refused.

    Args:
        checks: readiness checks by name, each `async () -> bool | str | None` (`True` or
            `None` pass, `False` fails, a string fails with that reason; default none).
        breakers: `CircuitBreaker`s whose state counts (default none).
        stores: stores whose availability counts, e.g. a `RedisStore` (default none).
        watchdog: a `resilient.health.Watchdog` whose status counts, or None (default).
        timeout: seconds each check may take (default 1.0).
        cache: seconds a run of the checks is reused (default 1.0).
        details: show each component's status, name and error text (default False).

    Raises:
        ValueError: an argument is out of range (the message names it and its value).

    Examples:
        ```python
        from fastapi import FastAPI
        from resilient import CircuitBreaker
        from resilient.asgi import HealthApp

        payments = CircuitBreaker(name="payments")


        async def database() -> bool:
            return True  # e.g. `await pool.execute("SELECT 1")` answered


        app = FastAPI()
        app.mount("/health", HealthApp(checks={"database": database}, breakers=[payments]))
        ```
    """

    __slots__ = ("details", "health")

    def __init__(
        self,
        *,
        checks: Mapping[str, Check] = _NO_CHECKS,
        breakers: Iterable[CircuitBreaker] = (),
        stores: Iterable[Store | BreakerStore] = (),
        watchdog: Watchdog | None = None,
        timeout: float = 1.0,
        cache: float = 1.0,
        details: bool = False,
    ) -> None:
        #: What `/readyz` runs.
        self.health = HealthChecks(
            checks=checks,
            breakers=breakers,
            stores=stores,
            watchdog=watchdog,
            timeout=timeout,
            cache=cache,
        )
        self.details = check_bool("details", details)

    def __repr__(self) -> str:
        return f"HealthApp({self.health!r}, details={self.details!r})"

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: _Scope, send: _Send) -> None:
        path = route_path(scope)
        if path == "/livez":
            report = _LIVE
        elif path == "/readyz":
            report = None
        else:
            await _plain(send, 404, b"Not Found")
            return
        method = scope.get("method", "GET")
        if method not in _METHODS:
            await _plain(send, 405, b"Method Not Allowed", ((b"allow", b"GET, HEAD"),))
            return
        if report is None:
            report = await self.health.run()
        body = _encode(report, self.details)
        await send(
            {
                "type": "http.response.start",
                "status": 503 if report.status == "fail" else 200,
                "headers": [
                    (b"content-type", _HEALTH_JSON),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _lifespan(self, receive: _Receive, send: _Send) -> None:
        """Complete startup and shutdown; in between, run the watchdog unless something
        else (the application that mounts this one) already runs it."""
        while (await receive())["type"] != "lifespan.startup":
            pass
        watchdog = self.health.watchdog
        if watchdog is not None and not watchdog.status().running:
            async with watchdog:
                await send({"type": "lifespan.startup.complete"})
                await _until_shutdown(receive)
        else:
            await send({"type": "lifespan.startup.complete"})
            await _until_shutdown(receive)
        await send({"type": "lifespan.shutdown.complete"})


async def _plain(
    send: _Send, status: int, text: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(text)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": text})


async def _until_shutdown(receive: _Receive) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        pass
