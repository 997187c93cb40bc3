"""Group 2, Timeout: resilient.Timeout against asyncio.timeout and anyio.fail_after."""

from __future__ import annotations

import asyncio

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

ASYNCIO = "asyncio.timeout(10)"
ANYIO = "anyio.fail_after(10)"
OURS_DECORATOR = "Timeout(10) decorator"
OURS_WITH = "async with Timeout(10)"


def _asyncio_timeout() -> Runner:
    async def run(n: int) -> None:
        for _ in range(n):
            async with asyncio.timeout(10):
                await bare()

    return run


def _anyio_fail_after() -> Runner:
    import anyio

    async def run(n: int) -> None:
        for _ in range(n):
            with anyio.fail_after(10):
                await bare()

    return run


def _ours_decorator() -> Runner:
    from resilient import Timeout

    return calls(Timeout(10)(bare))


def _ours_with() -> Runner:
    from resilient import Timeout

    timeout = Timeout(10)

    async def run(n: int) -> None:
        for _ in range(n):
            async with timeout:
                await bare()

    return run


GROUP = Group(
    key="timeout",
    title="Timeout",
    intro="A deadline of 10 s that never fires. anyio's cancel scope is shown for scale: "
    "`Timeout` uses the running backend's native primitive instead (DESIGN §1.4).",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(ASYNCIO, _asyncio_timeout),
        Case(ANYIO, _anyio_fail_after),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
        Case(OURS_WITH, _ours_with, ours=True),
    ],
    reference=(ASYNCIO,),
    reference_label="asyncio.timeout",
    goals=[
        Goal(OURS_DECORATOR, (ASYNCIO,), 1.0, "Timeout decorator <= 1.0x asyncio.timeout"),
        Goal(OURS_WITH, (ASYNCIO,), 1.0, "async with Timeout <= 1.0x asyncio.timeout"),
    ],
)
