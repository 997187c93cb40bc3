"""Group 5, Bulkhead: resilient.Bulkhead against asyncio.Semaphore and nopanic, a slot always
free."""

from __future__ import annotations

import asyncio

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

SEMAPHORE = "async with asyncio.Semaphore(10)"
OURS_DECORATOR = "Bulkhead(10) decorator"
NOPANIC_DECORATOR = "nopanic @bulkhead(10)"
NOPANIC_WITH = "nopanic `async with policy.guard()`"
OURS_WITH = "async with Bulkhead(10)"

# The cheapest way each peer offers to hold a slot, face by face: a semaphore has no
# decorator.
PEER_DECORATORS = (NOPANIC_DECORATOR,)
PEER_BLOCKS = (SEMAPHORE, NOPANIC_WITH)


def _semaphore() -> Runner:
    semaphore = asyncio.Semaphore(10)

    async def run(n: int) -> None:
        for _ in range(n):
            async with semaphore:
                await bare()

    return run


def _nopanic_decorator() -> Runner:
    from nopanic import bulkhead

    return calls(bulkhead(10)(bare))


def _nopanic_with() -> Runner:
    from nopanic import bulkhead

    policy = bulkhead(10)

    async def run(n: int) -> None:
        for _ in range(n):
            async with policy.guard():
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
    "a bulkhead adds a bounded queue, a maximum wait, counters and telemetry on top of it. "
    "nopanic's bulkhead (no `max_wait` by default: it waits for ever) keeps one asyncio "
    "semaphore per event loop; its block form is `async with policy.guard()`.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(SEMAPHORE, _semaphore),
        Case(NOPANIC_DECORATOR, _nopanic_decorator),
        Case(NOPANIC_WITH, _nopanic_with),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
        Case(OURS_WITH, _ours_with, ours=True),
    ],
    reference=(SEMAPHORE,),
    reference_label="Semaphore",
    goals=[
        Goal(OURS_DECORATOR, (SEMAPHORE,), 1.2, "Bulkhead decorator <= 1.2x asyncio.Semaphore"),
        Goal(OURS_WITH, (SEMAPHORE,), 1.2, "async with Bulkhead <= 1.2x asyncio.Semaphore"),
        Goal(
            OURS_DECORATOR,
            PEER_DECORATORS,
            1.0,
            "Bulkhead decorator <= 1.0x the fastest peer decorator",
            fastest=True,
        ),
        Goal(
            OURS_WITH,
            PEER_BLOCKS,
            1.0,
            "async with Bulkhead <= 1.0x the fastest peer block",
            fastest=True,
        ),
        Goal(OURS_WITH, (OURS_DECORATOR,), 1.0, "async with Bulkhead <= 1.0x Bulkhead decorator"),
    ],
)
