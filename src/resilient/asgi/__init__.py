"""Pure ASGI middlewares for Starlette, FastAPI and any ASGI app.

`LoadSheddingMiddleware` sheds the requests a service cannot serve in time, with a 503,
`Retry-After` and an RFC 9457 problem body; `priority_from_header` and
`priority_from_routes` rank requests for it. Non-HTTP scopes (lifespan, websocket) pass
through untouched.

Examples:
    ```python
    from starlette.applications import Starlette
    from resilient.asgi import LoadSheddingMiddleware

    app = Starlette()
    app.add_middleware(LoadSheddingMiddleware, limit=64, exempt=("/livez",))
    ```
"""

from __future__ import annotations

from resilient.asgi._load_shedding import LoadSheddingMiddleware as LoadSheddingMiddleware
from resilient.asgi._priority import priority_from_header as priority_from_header
from resilient.asgi._priority import priority_from_routes as priority_from_routes

__all__ = ("LoadSheddingMiddleware", "priority_from_header", "priority_from_routes")

LoadSheddingMiddleware.__module__ = __name__
