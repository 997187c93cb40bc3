"""`asyncio_loop()`: the running loop without asyncio's per-call getpid(), and never a
loop that is not running in the asking thread."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
import trio

from resilient import _backend
from resilient._backend import asyncio_loop


def test_none_outside_any_loop() -> None:
    assert asyncio_loop() is None


def test_the_running_loop_in_a_task_and_in_a_callback() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert asyncio_loop() is loop
        assert asyncio_loop() is loop  # the remembered answer
        seen: list[object] = []
        loop.call_soon(lambda: seen.append(asyncio_loop()))  # outside any task
        await asyncio.sleep(0)
        assert seen == [loop]

    asyncio.run(main())
    assert asyncio_loop() is None  # that loop has stopped


def test_each_new_loop_is_found_in_turn() -> None:
    loops = []

    async def main() -> None:
        loops.append(asyncio_loop())
        assert loops[-1] is asyncio.get_running_loop()

    for _ in range(3):
        asyncio.run(main())
    assert len(set(map(id, loops))) == 3


def test_another_thread_gets_its_own_loop_while_the_first_runs() -> None:
    found: dict[str, object] = {}

    async def other() -> None:
        found["other"] = asyncio_loop()
        found["other-running"] = asyncio.get_running_loop()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert asyncio_loop() is loop  # remembered for this thread
        thread = threading.Thread(target=asyncio.run, args=(other(),))
        thread.start()
        await asyncio.to_thread(thread.join)
        found["main"] = asyncio_loop()
        assert found["main"] is loop

    asyncio.run(main())
    assert found["other"] is found["other-running"]
    assert found["other"] is not found["main"]


def test_a_thread_without_a_loop_gets_none_while_another_runs() -> None:
    async def main() -> None:
        assert asyncio_loop() is not None
        result = await asyncio.to_thread(asyncio_loop)
        assert result is None

    asyncio.run(main())


def test_none_under_trio() -> None:
    async def main() -> None:
        assert asyncio_loop() is None

    asyncio.run(asyncio.sleep(0))  # something remembered first
    trio.run(main)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_forgets_the_parents_loop() -> None:
    read, write = os.pipe()

    async def main() -> int:
        assert asyncio_loop() is not None
        pid = os.fork()
        if pid == 0:  # the child: asyncio says no loop runs here, and so do we
            os.write(write, b"1" if _backend._last_loop is None else b"0")
            os._exit(0)
        return pid

    pid = asyncio.run(main())
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.close(write)
