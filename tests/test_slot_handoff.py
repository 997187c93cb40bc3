"""What the policies that hold slots (Bulkhead, LoadShedder) share: a queue of waiters
handed slots in turn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from gates import settle
from resilient import Bulkhead
from resilient.load_shedding import LoadShedder

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("policy_of", [Bulkhead, LoadShedder])
async def test_waiter_cancelled_just_after_being_handed_a_slot_passes_it_on(
    policy_of: Callable[..., Any],
) -> None:
    policy = policy_of(1, max_waiting=2)
    release = anyio.Event()
    finished: list[str] = []

    async def work(label: str) -> None:
        await anyio.lowlevel.checkpoint()
        finished.append(label)

    async with anyio.create_task_group() as tg:
        victim = anyio.CancelScope()

        async def victim_task() -> None:
            with victim:
                await policy.call(work, "victim")

        async def holder() -> None:
            async with policy:
                await release.wait()
            # The slot now belongs to the victim, which has not resumed yet.
            assert (policy.in_flight, policy.waiting) == (1, 1)
            victim.cancel()

        tg.start_soon(holder)
        await settle()
        tg.start_soon(victim_task)
        await settle()
        tg.start_soon(policy.call, work, "next")
        await settle()
        assert policy.waiting == 2
        release.set()
    assert finished == ["next"]
    assert (policy.in_flight, policy.waiting) == (0, 0)
