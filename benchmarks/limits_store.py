"""What a decision costs through `resilient.interop.limits.LimitsStore`, next to limits' own
`hit()` on the same storage, for each strategy: in memory, and on Redis when given one.

Usage (from the repository root):

    python benchmarks/limits_store.py                                  # in memory
    python benchmarks/limits_store.py --redis redis://127.0.0.1:6379   # and on that Redis
    python benchmarks/limits_store.py --quick                          # a short run

Not part of `run.py`'s groups: it measures an adapter against the library it adapts, not
against peers. Each limiter decision takes a permit from one of many keys in turn, at 10
permits per second per key, so that a permit is always there and no key's moving window
grows long. The ratio column compares each row with limits' `hit()` of the same strategy
and storage.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from typing import Any

from _harness import BARE, Case, Group, Runner, Settings, bare, calls, markdown_table, run_group

STRATEGIES = ("fixed-window", "moving-window", "sliding-window-counter")

#: Keys taken in turn; with RATE permits per second each, no key runs out.
KEYS = [f"client-{i}" for i in range(20_000)]
RATE = 10


def _limits_storage(redis_url: str | None) -> Any:
    from limits.aio.storage import MemoryStorage, RedisStorage

    if redis_url is None:
        return MemoryStorage()
    return RedisStorage(f"async+{redis_url}", implementation="redispy")


def _limits_hit(strategy: str, redis_url: str | None) -> Callable[[], Runner]:
    def build() -> Runner:
        from limits import RateLimitItemPerSecond
        from limits.aio import strategies

        kinds: dict[str, Callable[[Any], strategies.RateLimiter]] = {
            "fixed-window": strategies.FixedWindowRateLimiter,
            "moving-window": strategies.MovingWindowRateLimiter,
            "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
        }
        limiter = kinds[strategy](_limits_storage(redis_url))
        item = RateLimitItemPerSecond(RATE, namespace=f"bench-{uuid.uuid4().hex}")
        turn = 0

        async def run(n: int) -> None:
            nonlocal turn
            for _ in range(n):
                turn = (turn + 1) % len(KEYS)
                if not await limiter.hit(item, KEYS[turn]):
                    raise RuntimeError("limits refused a permit")
                await bare()

        return run

    return build


def _ours(strategy: str, redis_url: str | None) -> Callable[[], Runner]:
    def build() -> Runner:
        from resilient import RateLimiter
        from resilient.interop.limits import LimitsStore

        store = LimitsStore(
            _limits_storage(redis_url),
            strategy=strategy,
            prefix=f"bench-{uuid.uuid4().hex}",
        )
        return _cycling_keys(RateLimiter(RATE, store=store))

    return build


def _memory_store() -> Runner:
    from resilient import RateLimiter

    return _cycling_keys(RateLimiter(RATE))


def _cycling_keys(limiter: Any) -> Runner:
    """`n` calls, each taking a permit from the next of KEYS in turn, then the bare call."""
    turn = 0

    async def run(n: int) -> None:
        nonlocal turn
        for _ in range(n):
            turn = (turn + 1) % len(KEYS)
            await limiter.acquire(KEYS[turn])
            await bare()

    return run


def group(redis_url: str | None) -> Group:
    cases = [Case(BARE, lambda: calls(bare))]
    backends = [("memory", None)] + ([("Redis", redis_url)] if redis_url else [])
    for where, url in backends:
        for strategy in STRATEGIES:
            peer = f"limits {strategy} `hit()`, {where}"
            cases.append(Case(peer, _limits_hit(strategy, url), reference=(peer,)))
            cases.append(
                Case(
                    f"RateLimiter on LimitsStore({strategy}), {where}",
                    _ours(strategy, url),
                    ours=True,
                    reference=(peer,),
                )
            )
    first = f"limits {STRATEGIES[0]} `hit()`, memory"
    cases.append(
        Case("RateLimiter on its own MemoryStore", _memory_store, ours=True, reference=(first,))
    )
    return Group(
        key="limits_store",
        title="LimitsStore against limits' own hit()",
        cases=cases,
        reference=(first,),
        goals=[],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", metavar="URL", help="also measure on this Redis")
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    settings = Settings.quick_run() if args.quick else Settings.full()
    result = run_group(group(args.redis), settings)
    print(markdown_table(result.headers, result.rows))
    for line in result.skipped + result.notes:
        print(line)
    if result.failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
