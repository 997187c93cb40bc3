"""Ready-made `priority(scope) -> int` functions for `LoadSheddingMiddleware`."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping

from resilient._validate import check_positive_int, short_repr
from resilient.asgi._types import Scope

__all__ = ("priority_from_header", "priority_from_routes")


def priority_from_header(
    name: str, *, values: Mapping[str, int] | None = None, default: int = 0
) -> Callable[[Scope], int]:
    """Read a request's priority from a header.

    Args:
        name: the header (any case), e.g. `"x-priority"`.
        values: header values and their levels, e.g. `{"critical": 0, "sheddable": 2}`;
            `None` (the default) reads the header as a whole number >= 0.
        default: the level of a request without the header or with a value not understood
            (default 0: the most important).

    Trust the header only where something you control sets it (a gateway, your own
    clients): a client that may set it can make every request critical.

    Examples:
        ```python
        app.add_middleware(
            LoadSheddingMiddleware,
            priority=priority_from_header("x-criticality", values={"critical": 0, "batch": 1}),
        )
        ```
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty header name, got {short_repr(name)}")
    header = name.lower().encode("latin-1")
    check_positive_int("default", default, minimum=0)
    table: dict[bytes, int] | None = None
    if values is not None:
        table = {
            key.encode("latin-1"): check_positive_int(f"values[{key!r}]", level, minimum=0)
            for key, level in values.items()
        }

    def header_priority(scope: Scope) -> int:
        for key, value in scope.get("headers", ()):
            if key.lower() == header:
                value = value.strip()
                if table is not None:
                    return table.get(value, default)
                return int(value) if value.isdigit() else default
        return default

    return header_priority


def priority_from_routes(routes: Mapping[str, int], *, default: int = 0) -> Callable[[Scope], int]:
    """Give requests their priority by path: the first pattern that matches decides.

    Args:
        routes: path patterns and their levels, in order; a pattern is a glob (`*` matches
            anything, slashes included; `?` one character), e.g. `{"/api/checkout*": 0,
            "/api/recommendations*": 2}`.
        default: the level of a path no pattern matches (default 0).

    Examples:
        ```python
        app.add_middleware(
            LoadSheddingMiddleware,
            priority=priority_from_routes({"/reports/*": 2, "/search*": 1}),
        )
        ```
    """
    check_positive_int("default", default, minimum=0)
    compiled = [
        (
            re.compile(fnmatch.translate(pattern)),
            check_positive_int(f"routes[{pattern!r}]", level, minimum=0),
        )
        for pattern, level in routes.items()
    ]

    def route_priority(scope: Scope) -> int:
        path = scope.get("path", "")
        for pattern, level in compiled:
            if pattern.match(path):
                return level
        return default

    return route_priority
