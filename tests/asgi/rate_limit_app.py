"""The app the multi-process rate-limit test runs in each uvicorn worker process: one
limit on a Redis shared by every process (`REDIS_URL`, keys under `RATE_LIMIT_PREFIX`)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resilient import RateLimiter
from resilient.asgi import RateLimitMiddleware
from resilient.storage import RedisStore


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


def create_app() -> Starlette:
    store = RedisStore(
        os.environ["REDIS_URL"], prefix=os.environ["RATE_LIMIT_PREFIX"], on_unavailable="deny"
    )
    app = Starlette(routes=[Route("/", whoami)])
    app.add_middleware(
        RateLimitMiddleware,
        limiters=[
            RateLimiter(1000, per=86_400, store=store, name="daily"),
            RateLimiter(5, per=60.0, store=store, name="minute"),
        ],
    )
    return app
