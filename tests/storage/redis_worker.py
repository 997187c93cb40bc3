"""One process of the cross-process accuracy test (run as a script, not collected).

Usage: python redis_worker.py URL PREFIX DURATION TASKS

Prints "ready" once connected, then reads the wall-clock start time from stdin. From then,
TASKS tasks call one shared RateLimiter (100 per second, bursts
of 100) on one key for DURATION seconds, each trying again soon after a rejection. Prints,
as JSON, how many permits were granted and the wall-clock times of the first request sent,
the first answer received, the last request sent and the last answer received.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from resilient import RateLimitedError, RateLimiter
from resilient.storage import RedisStore


async def main(url: str, prefix: str, duration: float, tasks: int) -> None:
    async with RedisStore(url, prefix=prefix, on_unavailable="deny", timeout=2.0) as store:
        limiter = RateLimiter(100, burst=100, store=store, name="shared")
        granted = 0
        times = {"first_sent": 0.0, "first_answer": 0.0, "last_sent": 0.0, "last_answer": 0.0}
        # Connect before the start, so that the start measures decisions.
        await asyncio.gather(*(limiter.remaining("warm-up") for _ in range(tasks)))
        print("ready", flush=True)
        start_at = float(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = start_at + duration

        async def hammer() -> None:
            nonlocal granted
            while time.time() < end:
                sent = times["last_sent"] = time.time()
                times["first_sent"] = times["first_sent"] or sent
                try:
                    await limiter.acquire(key="hot")
                    granted += 1
                    pause = 0.0
                except RateLimitedError as exc:
                    pause = min(exc.retry_after or 0.0, 0.005)
                answered = times["last_answer"] = time.time()
                times["first_answer"] = times["first_answer"] or answered
                await asyncio.sleep(pause)

        await asyncio.gather(*(hammer() for _ in range(tasks)))
    print(json.dumps({"granted": granted, **times}))


if __name__ == "__main__":
    url, prefix, duration, tasks = sys.argv[1:]
    asyncio.run(main(url, prefix, float(duration), int(tasks)))
