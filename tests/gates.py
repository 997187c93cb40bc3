"""Helpers for tests of the policies that hold slots (Bulkhead, LoadShedder)."""

from __future__ import annotations

import anyio


class Gate:
    """A call that holds its slot until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = 0
        self.opened = anyio.Event()

    async def __call__(self) -> str:
        self.entered += 1
        await self.opened.wait()
        return "done"


async def settle() -> None:
    """Until every task is blocked: the calls started so far are admitted or queued."""
    await anyio.wait_all_tasks_blocked()
