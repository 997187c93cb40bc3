"""What one decision of `RedisStore` costs on each side, on one Redis and on a Redis Cluster
of three masters: the figures docs/distributed.md plans a deployment from.

Usage (from the repository root; needs `redis-server` and `redis-cli` on PATH):

    python benchmarks/redis_capacity.py           # a few seconds per setup
    python benchmarks/redis_capacity.py --quick   # shorter

Not part of `run.py`'s groups: it measures capacity, not a ratio against peers. For each
setup it reports decisions per second from one Python process (one at a time, and 64 tasks
at once), the client's CPU per decision (the process's CPU time over the decisions), and the
server's CPU per decision (Redis's own `usec_per_call` for `EVALSHA`, summed over the
masters' calls), which is what bounds how many decisions one Redis core can take.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from redis_servers import RedisCluster, RedisServer  # noqa: E402

KEYS = [f"client-{i}" for i in range(1_000)]
RATE = 1_000
CONCURRENCY = 64


async def _server_usec(clients: list[Any]) -> tuple[int, float]:
    calls, usec = 0, 0.0
    for client in clients:
        stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        calls += int(stats.get("calls", 0))
        usec += float(stats.get("usec", 0))
    return calls, usec


async def _measure(store: Any, nodes: list[Any], decisions: int, rounds: int) -> dict[str, float]:
    from resilient import RateLimiter

    acquire = RateLimiter(RATE, store=store).acquire

    async def one_by_one(n: int) -> None:
        for i in range(n):
            await acquire(KEYS[i % len(KEYS)])

    async def at_once(n: int) -> None:
        async def task(start: int) -> None:
            for i in range(start, n, CONCURRENCY):
                await acquire(KEYS[i % len(KEYS)])

        await asyncio.gather(*(task(start) for start in range(CONCURRENCY)))

    # Warm-up: scripts loaded one at a time (on a cluster, on every master), then pools filled.
    await one_by_one(len(KEYS))
    await at_once(2_000)
    found: dict[str, float] = {}
    for name, run in (("sequential", one_by_one), (f"{CONCURRENCY} concurrent", at_once)):
        rates, cpu = [], []
        for client in nodes:
            await client.config_resetstat()
        for _ in range(rounds):
            wall, process = time.perf_counter(), time.process_time()
            await run(decisions)
            rates.append(decisions / (time.perf_counter() - wall))
            cpu.append((time.process_time() - process) / decisions * 1e6)
        calls, usec = await _server_usec(nodes)
        found[f"{name}: decisions/s"] = statistics.median(rates)
        found[f"{name}: client CPU µs/decision"] = statistics.median(cpu)
        found[f"{name}: server µs/decision"] = usec / max(calls, 1)
    return found


async def _single(decisions: int, rounds: int) -> dict[str, float]:
    import redis.asyncio

    from resilient.storage import RedisStore

    server = RedisServer().start()
    try:
        node = redis.asyncio.Redis(port=server.port)
        async with RedisStore(server.url, prefix="capacity") as store:
            return await _measure(store, [node], decisions, rounds)
    finally:
        server.stop()


async def _cluster(decisions: int, rounds: int) -> dict[str, float]:
    import redis.asyncio

    from resilient.storage import RedisStore

    cluster = RedisCluster().start()
    try:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        nodes = [redis.asyncio.Redis(port=node.port) for node in cluster.nodes]
        found = await _measure(RedisStore(client, prefix="capacity"), nodes, decisions, rounds)
        await client.aclose()
        return found
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    decisions, rounds = (2_000, 3) if args.quick else (10_000, 5)
    results = {
        "one Redis": asyncio.run(_single(decisions, rounds)),
        "Redis Cluster, 3 masters": asyncio.run(_cluster(decisions, rounds)),
    }
    figures = list(next(iter(results.values())))
    print("| figure | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for figure in figures:
        cells = " | ".join(f"{found[figure]:,.1f}" for found in results.values())
        print(f"| {figure} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
