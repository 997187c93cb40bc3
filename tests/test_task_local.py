from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from resilient._task_local import TaskLocalStack

pytestmark = pytest.mark.anyio


async def test_nested_blocks_pop_in_reverse_order() -> None:
    stack: TaskLocalStack[str] = TaskLocalStack("Policy")
    stack.push("outer")
    stack.push("inner")
    assert stack.pop() == "inner"
    assert stack.pop() == "outer"
    assert stack.empty()


async def test_each_task_sees_only_its_own_entries() -> None:
    stack: TaskLocalStack[int] = TaskLocalStack("Policy")
    seen: dict[int, int] = {}

    async def block(i: int) -> None:
        stack.push(i)
        await anyio.lowlevel.checkpoint()  # let the other tasks push meanwhile
        seen[i] = stack.pop()

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(block, i)
    assert seen == {i: i for i in range(20)}


def test_pop_without_push_names_the_policy() -> None:
    with pytest.raises(RuntimeError, match=r"Bulkhead\.__aexit__ without a matching __aenter__"):
        TaskLocalStack[int]("Bulkhead").pop()
