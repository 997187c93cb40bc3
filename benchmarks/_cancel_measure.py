"""Cancelling queued waiters: Bulkhead beside asyncio.Semaphore, newest-first and oldest-first.

One slot is held; `n` tasks queue for it; then every queued task is cancelled, newest first
or oldest first, and the time until all of them have finished is measured. A queue whose
removal scans from the front grows quadratically newest-first.

Usage (from the repository root):

    python benchmarks/_cancel_measure.py                 # 10k, 20k and 40k waiters, best of 3
    python benchmarks/_cancel_measure.py --sizes 1000,2000 --repeat 9
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

#: A case builds the thing to queue on: an async context manager entered once per task.
Make = Callable[[int], AbstractAsyncContextManager[Any]]


def _semaphore(n: int) -> AbstractAsyncContextManager[Any]:
    return asyncio.Semaphore(1)


def _bulkhead(n: int) -> AbstractAsyncContextManager[Any]:
    from resilient import Bulkhead

    return Bulkhead(1, max_waiting=n, telemetry=False)


CASES: dict[str, Make] = {"asyncio.Semaphore": _semaphore, "Bulkhead": _bulkhead}


async def cancel_queued(make: Make, n: int, newest_first: bool) -> float:
    """Seconds to cancel `n` queued waiters in the given order, until all have finished."""
    cm = make(n)
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with cm:
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with cm:
            pass

    hold = asyncio.create_task(holder())
    await held.wait()
    tasks = [asyncio.create_task(waiter()) for _ in range(n)]
    for _ in range(3):  # every task runs up to its wait
        await asyncio.sleep(0)
    waiting = getattr(cm, "waiting", None)
    assert waiting in (None, n), waiting
    order = tasks[::-1] if newest_first else tasks
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for task in order:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    assert all(task.cancelled() for task in tasks)
    assert getattr(cm, "waiting", 0) == 0
    release.set()
    await hold
    return elapsed


async def main(sizes: list[int], repeat: int) -> None:
    """Best of `repeat` runs per case, the cases interleaved run by run (a shared machine's
    noise only ever adds time), and our time as a ratio of the semaphore's."""
    print(f"{'order':<14}{'waiters':>8}" + "".join(f"{name:>20}" for name in CASES) + "   ratio")
    for newest_first in (True, False):
        label = "newest-first" if newest_first else "oldest-first"
        for n in sizes:
            times: dict[str, list[float]] = {name: [] for name in CASES}
            for _ in range(repeat):
                for name, make in CASES.items():
                    times[name].append(await cancel_queued(make, n, newest_first))
            best = {name: min(found) for name, found in times.items()}
            ratio = best["Bulkhead"] / best["asyncio.Semaphore"]
            cells = "".join(f"{best[name] * 1e3:>18.1f}ms" for name in CASES)
            print(f"{label:<14}{n:>8,}{cells}{ratio:>7.2f}x", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,20000,40000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.repeat))
