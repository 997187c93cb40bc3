"""Group 5, Bulkhead: resilient.Bulkhead against asyncio.Semaphore, a slot always free."""

from __future__ import annotations

import asyncio

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

SEMAPHORE = "async with asyncio.Semaphore(10)"
OURS_DECORATOR = "Bulkhead(10) decorator"
OURS_WITH = "async with Bulkhead(10)"


def _semaphore() -> Runner:
    semaphore = asyncio.Semaphore(10)

    async def run(n: int) -> None:
        for _ in range(n):
            async with semaphore:
                await bare()

    return run


def _ours_decorator() -> Runner:
    from resilient import Bulkhead

    return calls(Bulkhead(10)(bare))


def _ours_with() -> Runner:
    from resilient import Bulkhead

    bulkhead = Bulkhead(10)

    async def run(n: int) -> None:
        for _ in range(n):
            async with bulkhead:
                await bare()

    return run


GROUP = Group(
    key="bulkhead",
    title="Bulkhead",
    intro="Ten slots, one call at a time, so a slot is always free. A semaphore is the floor: "
    "a bulkhead adds a bounded queue, a maximum wait, counters and telemetry on top of it.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(SEMAPHORE, _semaphore),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
        Case(OURS_WITH, _ours_with, ours=True),
    ],
    reference=(SEMAPHORE,),
    reference_label="Semaphore",
    goals=[
        Goal(OURS_DECORATOR, (SEMAPHORE,), 1.2, "Bulkhead decorator <= 1.2x asyncio.Semaphore"),
        Goal(OURS_WITH, (SEMAPHORE,), 1.2, "async with Bulkhead <= 1.2x asyncio.Semaphore"),
    ],
)
