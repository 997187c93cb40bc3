"""Pure ASGI applications and middlewares for Starlette, FastAPI and any ASGI app.

`LoadSheddingMiddleware` sheds the requests a service cannot serve in time, with a 503,
`Retry-After` and an RFC 9457 problem body; `priority_from_header` and
`priority_from_routes` rank requests for it. `HealthApp` serves `/livez` and `/readyz`
from the service's own checks, breakers, stores and watchdog. Non-HTTP scopes (lifespan,
websocket) pass through the middlewares untouched.

Examples:
    ```python
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from resilient.asgi import HealthApp, LoadSheddingMiddleware

    app = Starlette(routes=[Mount("/health", HealthApp())])
    app.add_middleware(LoadSheddingMiddleware, limit=64, exempt=("/health",))
    ```
"""

from __future__ import annotations

from resilient.asgi._health import HealthApp as HealthApp
from resilient.asgi._load_shedding import LoadSheddingMiddleware as LoadSheddingMiddleware
from resilient.asgi._priority import priority_from_header as priority_from_header
from resilient.asgi._priority import priority_from_routes as priority_from_routes

__all__ = ("HealthApp", "LoadSheddingMiddleware", "priority_from_header", "priority_from_routes")

HealthApp.__module__ = __name__
LoadSheddingMiddleware.__module__ = __name__
