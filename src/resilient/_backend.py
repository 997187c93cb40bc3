"""The one seam between resilient and the running event loop's native primitives.

anyio is used on waiting paths. Hot paths (a timeout around every call) use the backend's
own primitive instead, because an anyio cancel scope on asyncio costs several times
`asyncio.timeout`.
"""

from __future__ import annotations

import _asyncio
import asyncio
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ("asyncio_loop", "current_task", "trio_module")

#: The running asyncio loop, or None when not on asyncio (a C-level call, no exception).
asyncio_loop = asyncio._get_running_loop

#: `current_task(loop)`: the task running on `loop`, or None. asyncio.current_task is
#: Python-level on 3.11, where the C accelerator keeps the same answer in a dict keyed by
#: loop; 3.12 and newer have it in C.
current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    getattr(_asyncio, "current_task", None) or _asyncio._current_tasks.get  # type: ignore[attr-defined]  # 3.11 only
)

_trio: ModuleType | None = None


def trio_module() -> Any:
    """The trio module, imported on first use (only trio users pay for the import)."""
    global _trio
    if _trio is None:
        import trio

        _trio = trio
    return _trio
