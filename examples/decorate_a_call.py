"""Decorating service calls: the first way into resilient.

Three faces of the same policies: `@policy` on an `async def`, `await policy.call(fn, ...)`
for a function you do not own, and `async with` for a block. Run it with
`.venv/bin/python examples/decorate_a_call.py`.
"""

from __future__ import annotations

import asyncio
import random

from resilient import Pipeline, Retry, Timeout, TimeoutExceeded

rng = random.Random(1)


class Unavailable(Exception):
    """The inventory service is having a bad moment."""


# Built once and shared by every call: 1 s in total, 3 attempts, 0.2 s for each attempt.
inventory_policy = Pipeline(Timeout(1.0), Retry(attempts=3), Timeout(0.2), name="inventory")


@inventory_policy
async def stock_level(sku: str) -> int:
    """A call to another service that fails now and then."""
    if rng.random() < 0.4:
        raise Unavailable(sku)
    await asyncio.sleep(0.01)
    return 12


async def third_party_lookup(sku: str) -> str:
    """A function from a library you cannot decorate."""
    await asyncio.sleep(0.01)
    return f"{sku}: blue kettle"


async def main() -> None:
    # 1. A decorated function: every call goes through the pipeline.
    for sku in ("A-1", "B-2", "C-3"):
        print(f"stock of {sku}: {await stock_level(sku)}")

    # 2. One call through a policy, without decorating anything.
    print(await inventory_policy.call(third_party_lookup, "A-1"))

    # 3. A block under a single-shot policy.
    try:
        async with Timeout(0.05):
            await asyncio.sleep(1)
    except TimeoutExceeded as exc:
        print(f"block cut off: {exc}")


if __name__ == "__main__":
    asyncio.run(main())
