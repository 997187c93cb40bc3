"""Group 2, Timeout: resilient.Timeout against asyncio.timeout, anyio.fail_after and nopanic."""

from __future__ import annotations

import asyncio

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

ASYNCIO = "asyncio.timeout(10)"
ANYIO = "anyio.fail_after(10)"
NOPANIC_DECORATOR = "nopanic @timeout(10)"
NOPANIC_WITH = "nopanic `async with policy.guard()`"
OURS_DECORATOR = "Timeout(10) decorator"
OURS_WITH = "async with Timeout(10)"

# The cheapest way each peer offers to bound a call, face by face: asyncio and anyio have
# no decorator, so only nopanic's is a peer of ours.
PEER_DECORATORS = (NOPANIC_DECORATOR,)
PEER_BLOCKS = (ASYNCIO, ANYIO, NOPANIC_WITH)


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


def _nopanic_decorator() -> Runner:
    from nopanic import timeout

    return calls(timeout(10)(bare))


def _nopanic_with() -> Runner:
    from nopanic import timeout

    # The policy is built once; `guard()` makes the small per-block object nopanic's
    # documented block form needs.
    policy = timeout(10)

    async def run(n: int) -> None:
        for _ in range(n):
            async with policy.guard():
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
    "`Timeout` uses the running backend's native primitive instead (DESIGN §1.4). "
    "asyncio.timeout and anyio.fail_after have no decorator; nopanic's block form is "
    "`async with policy.guard()`. The fastest-peer goals compare each face of ours with the "
    "cheapest peer offering the same face.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(ASYNCIO, _asyncio_timeout),
        Case(ANYIO, _anyio_fail_after),
        Case(NOPANIC_DECORATOR, _nopanic_decorator),
        Case(NOPANIC_WITH, _nopanic_with),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
        Case(OURS_WITH, _ours_with, ours=True),
    ],
    reference=(ASYNCIO,),
    reference_label="asyncio.timeout",
    goals=[
        Goal(OURS_DECORATOR, (ASYNCIO,), 1.0, "Timeout decorator <= 1.0x asyncio.timeout"),
        Goal(OURS_WITH, (ASYNCIO,), 1.0, "async with Timeout <= 1.0x asyncio.timeout"),
        Goal(
            OURS_DECORATOR,
            PEER_DECORATORS,
            1.0,
            "Timeout decorator <= 1.0x the fastest peer decorator",
            fastest=True,
        ),
        Goal(
            OURS_WITH,
            PEER_BLOCKS,
            1.0,
            "async with Timeout <= 1.0x the fastest peer block",
            fastest=True,
        ),
        Goal(OURS_WITH, (OURS_DECORATOR,), 1.0, "async with Timeout <= 1.0x Timeout decorator"),
    ],
)
