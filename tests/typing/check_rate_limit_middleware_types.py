"""Static checks of RateLimitMiddleware and its key functions (run by mypy, never executed)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, assert_type

from resilient import RateLimiter
from resilient.asgi import RateLimitMiddleware, client_address, header, rate_limit_dependency, route


async def app(scope: Any, receive: Any, send: Any) -> None:
    return None


def tenant(scope: MutableMapping[str, Any]) -> str | None:
    return scope.get("tenant")


def check_rate_limit_middleware_is_typed() -> None:
    by_key = header("x-api-key")
    assert_type(by_key, Callable[[MutableMapping[str, Any]], str | None])
    assert_type(client_address({}), str | None)
    assert_type(route({}), str)
    middleware = RateLimitMiddleware(app, limiters=RateLimiter(10), key=tenant)
    assert_type(middleware.limiters, tuple[RateLimiter, ...])
    RateLimitMiddleware(
        app,
        limiters=[RateLimiter(10, name="a"), RateLimiter(100, per=60, name="b")],
        key=lambda scope: by_key(scope) or client_address(scope),
        exempt=("/livez",),
        trusted_proxies=("10.0.0.0/8",),
    )
    assert_type(rate_limit_dependency(RateLimiter(1)), Callable[..., Any])
