"""Pure ASGI applications and middlewares for Starlette, FastAPI and any ASGI app.

`LoadSheddingMiddleware` sheds the requests a service cannot serve in time, with a 503,
`Retry-After` and an RFC 9457 problem body; `priority_from_header` and
`priority_from_routes` rank requests for it. `RateLimitMiddleware` limits each client's
requests (keyed by `client_address`, `header(name)`, `route` or any function of the scope)
and tells clients what they have left in the IETF `RateLimit` fields;
`rate_limit_dependency` does the same for one FastAPI route. `HealthApp` serves `/livez`
and `/readyz` from the service's own checks, breakers, stores and watchdog. Non-HTTP
scopes (lifespan, websocket) pass through the middlewares untouched.

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
from resilient.asgi._keys import client_address as client_address
from resilient.asgi._keys import header as header
from resilient.asgi._keys import route as route
from resilient.asgi._load_shedding import LoadSheddingMiddleware as LoadSheddingMiddleware
from resilient.asgi._priority import priority_from_header as priority_from_header
from resilient.asgi._priority import priority_from_routes as priority_from_routes
from resilient.asgi._rate_limit import RateLimitMiddleware as RateLimitMiddleware
from resilient.asgi._rate_limit import rate_limit_dependency as rate_limit_dependency

__all__ = (
    "HealthApp",
    "LoadSheddingMiddleware",
    "RateLimitMiddleware",
    "client_address",
    "header",
    "priority_from_header",
    "priority_from_routes",
    "rate_limit_dependency",
    "route",
)

HealthApp.__module__ = __name__
LoadSheddingMiddleware.__module__ = __name__
RateLimitMiddleware.__module__ = __name__
