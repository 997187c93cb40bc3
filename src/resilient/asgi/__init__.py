"""Pure ASGI applications and middlewares for Starlette, FastAPI and any ASGI app.

`HealthApp` serves `/livez` and `/readyz` from the service's own checks, breakers, stores
and watchdog.

Examples:
    ```python
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from resilient.asgi import HealthApp

    app = Starlette(routes=[Mount("/health", HealthApp())])
    ```
"""

from __future__ import annotations

from resilient.asgi._health import HealthApp as HealthApp

__all__ = ("HealthApp",)

HealthApp.__module__ = __name__
