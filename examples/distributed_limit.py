"""One rate limit shared by several processes, on Redis.

Four worker processes each call a "payments API" as fast as they can for three seconds,
through a `RateLimiter` of 20 calls per second (bursts of 10) whose state lives in Redis.
Each process alone would allow 70 calls in that time; together, on one `RedisStore`, they
get about 70 between them, not 280. Then the same run with an in-process limiter, for
contrast: each process enforces the limit on its own.

Needs a Redis: `--redis URL`, else `REDIS_URL`, else redis://127.0.0.1:6379/0.
Run it with `python examples/distributed_limit.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from resilient import RateLimitedError, RateLimiter
from resilient.storage import RedisStore

WORKERS = 4
RATE, BURST, SECONDS = 20, 10, 3.0


async def hammer(url: str | None, prefix: str, start: Barrier) -> int:
    """Call as fast as the limiter allows for SECONDS; the calls it admitted."""
    store = None if url is None else RedisStore(url, prefix=prefix, on_unavailable="deny")
    limiter = RateLimiter(RATE, burst=BURST, store=store, name="payments-api")
    admitted = 0
    try:
        await limiter.remaining()  # connected before the start
        await asyncio.to_thread(start.wait)  # every process ready: go together
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            try:
                await limiter.acquire()
                admitted += 1
            except RateLimitedError as exc:
                await asyncio.sleep(min(exc.retry_after or 0.01, 0.05))
    finally:
        if store is not None:
            await store.aclose()
    return admitted


def worker(url: str | None, prefix: str, start: Barrier, results: Queue[int]) -> None:
    results.put(asyncio.run(hammer(url, prefix, start)))


def run(url: str | None) -> list[int]:
    """Start the workers together; what each admitted."""
    prefix = f"example-{uuid.uuid4().hex[:8]}"  # a fresh bucket for this run
    results: Queue[int] = multiprocessing.Queue()
    start = multiprocessing.Barrier(WORKERS)
    processes = [
        multiprocessing.Process(target=worker, args=(url, prefix, start, results))
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    admitted = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(10)
    return admitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis to share the limit on (default: REDIS_URL, else a local one)",
    )
    args = parser.parse_args()
    allowed = BURST + RATE * SECONDS
    print(f"{WORKERS} processes, {RATE} calls/s with bursts of {BURST}, for {SECONDS:g} s")
    print(f"one process alone may make {allowed:g} calls in that time\n")
    shared = run(args.redis)
    print(f"on Redis:   {sum(shared):>4} calls in all ({' + '.join(map(str, shared))})")
    local = run(None)
    print(f"in process: {sum(local):>4} calls in all ({' + '.join(map(str, local))})")
    print(
        "\nOn Redis the processes share one bucket: together they stay within the limit.\n"
        "In process, each has a bucket of its own: together they make about "
        f"{WORKERS}x as many calls."
    )


if __name__ == "__main__":
    main()
