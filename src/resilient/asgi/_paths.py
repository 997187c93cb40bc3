"""Paths a middleware leaves alone (health probes): the `exempt=` of every middleware."""

from __future__ import annotations

from collections.abc import Iterable

from resilient._validate import short_repr
from resilient.asgi._types import Scope

__all__ = ("ExemptPaths",)


class ExemptPaths:
    """Paths, each covering the paths under it (`"/health"` covers `/health/ready`)."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, exempt: Iterable[str]) -> None:
        if isinstance(exempt, str):
            raise ValueError(f"exempt must be a collection of paths, got {short_repr(exempt)}")
        paths = tuple(exempt)
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"exempt paths must start with '/', got {short_repr(path)}")
        self._exact = frozenset(path.rstrip("/") or "/" for path in paths)
        self._prefixes = tuple(path.rstrip("/") + "/" for path in paths)

    def __bool__(self) -> bool:
        return bool(self._exact)

    def __contains__(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return path in self._exact or path.startswith(self._prefixes)
