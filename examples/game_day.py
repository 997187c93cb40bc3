"""A small game day: inject faults and slow calls with `Chaos`, and check that the policies
around them (a retry and a hedge sharing one budget, inside a deadline) keep the service
answering.

`GAME_DAY=off` switches the chaos off without touching the code. Run it with
`.venv/bin/python examples/game_day.py`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter

from resilient import Backoff, Chaos, Hedge, Pipeline, Retry, RetryBudget, Timeout
from resilient.telemetry import Event, subscribe


def game_day() -> bool:
    return os.environ.get("GAME_DAY", "on") == "on"


# One in five calls has its connection reset, one in twenty takes 200 ms longer.
resets = Chaos(fault=ConnectionResetError, rate=0.2, enabled=game_day, rng=random.Random(7))
stalls = Chaos(latency=0.2, rate=0.05, enabled=game_day, rng=random.Random(8))

budget = RetryBudget()  # retries and hedges together: 20 % of calls, plus 10/s
prices = Pipeline(
    Timeout(1.0),  # the whole call, every attempt included
    Retry(attempts=4, on=ConnectionResetError, backoff=Backoff(initial=0.005), budget=budget),
    Hedge(0.03, max_hedges=2, budget=budget),  # another attempt every 30 ms without an answer
    stalls,
    resets,
    name="prices",
)

seen: Counter[str] = Counter()


def count(event: Event) -> None:
    if event.name == "resilient.chaos.injected":
        seen[f"injected: {event.attributes['resilient.chaos.kind']}"] += 1
    elif event.name in ("resilient.retry.scheduled", "resilient.hedge.started"):
        seen[event.name] += 1


@prices
async def price(sku: int) -> float:
    """The real call: a price service answering in about 5 ms."""
    await asyncio.sleep(0.005)
    return 10.0 + sku % 7


async def main() -> None:
    latencies: list[float] = []
    failures = 0

    async def client(skus: range) -> None:
        nonlocal failures
        for sku in skus:
            start = time.perf_counter()
            try:
                assert await price(sku) == 10.0 + sku % 7
            except Exception:
                failures += 1
            latencies.append(time.perf_counter() - start)

    with subscribe(count):
        async with asyncio.TaskGroup() as group:
            for i in range(10):
                group.create_task(client(range(i * 30, i * 30 + 30)))

    latencies.sort()
    print(f"game day {'on' if game_day() else 'off'}: {len(latencies)} calls, {failures} failed")
    print(f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    for what, n in sorted(seen.items()):
        print(f"  {what}: {n}")


if __name__ == "__main__":
    asyncio.run(main())
