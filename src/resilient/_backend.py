"""The one seam between resilient and the running event loop's native primitives.

anyio is used on waiting paths. Hot paths (a timeout around every call) use the backend's
own primitive instead, because an anyio cancel scope on asyncio costs several times
`asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

__all__ = ("asyncio_loop", "trio_module")

#: The running asyncio loop, or None when not on asyncio (a C-level call, no exception).
asyncio_loop = asyncio._get_running_loop

_trio: ModuleType | None = None


def trio_module() -> Any:
    """The trio module, imported on first use (only trio users pay for the import)."""
    global _trio
    if _trio is None:
        import trio

        _trio = trio
    return _trio
