"""One process of the cross-process shared breaker test (run as a script, not collected).

Usage: python breaker_worker.py URL PREFIX FAILURES

Calls a shared CircuitBreaker named "payments" FAILURES times with a call that fails, waits
until every outcome reached Redis, and prints the breaker's state.
"""

from __future__ import annotations

import asyncio
import sys

from resilient import CircuitBreaker
from resilient.storage import RedisStore


async def fail() -> None:
    raise ConnectionError("payments is down")


async def main(url: str, prefix: str, failures: int) -> None:
    async with RedisStore(url, prefix=prefix, on_unavailable="deny", timeout=2.0) as store:
        breaker = CircuitBreaker("payments", minimum_calls=failures, store=store)
        for _ in range(failures):
            try:
                await breaker.call(fail)
            except ConnectionError:
                pass
        print(breaker.state.value)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
