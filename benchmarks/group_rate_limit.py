"""Group 6, RateLimiter in memory with a permit always available: resilient.RateLimiter
against aiolimiter, limits, pyrate-limiter and throttled-py."""

from __future__ import annotations

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

# So high that no limiter ever runs out of permits during a run: only the bookkeeping of a
# granted permit is measured, never a wait.
RATE = 1_000_000_000

AIOLIMITER = "aiolimiter `async with AsyncLimiter`"
LIMITS = "limits.aio fixed window `hit()`"
PYRATE = "pyrate-limiter `try_acquire(blocking=False)`"
THROTTLED = "throttled-py token bucket `async with`"
OURS_ACQUIRE = "`await limiter.acquire()`"
OURS_DECORATOR = "RateLimiter decorator"


def _aiolimiter() -> Runner:
    from aiolimiter import AsyncLimiter

    limiter = AsyncLimiter(RATE, 1)

    async def run(n: int) -> None:
        for _ in range(n):
            async with limiter:
                await bare()

    return run


def _limits() -> Runner:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import FixedWindowRateLimiter

    # The fixed window: the moving window keeps one timestamp per permit, which at this
    # rate measures a growing list rather than the library.
    strategy = FixedWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(RATE)

    async def run(n: int) -> None:
        for _ in range(n):
            if not await strategy.hit(item, "bench"):
                raise RuntimeError("limits refused a permit")
            await bare()

    return run


def _pyrate() -> Runner:
    from pyrate_limiter import Duration, Limiter, Rate

    limiter = Limiter(Rate(RATE, Duration.SECOND))

    async def run(n: int) -> None:
        for _ in range(n):
            if not limiter.try_acquire("bench", blocking=False):
                raise RuntimeError("pyrate-limiter refused a permit")
            await bare()

    return run


def _throttled() -> Runner:
    from throttled.asyncio import MemoryStore, Throttled, per_sec

    throttle = Throttled(
        key="bench", using="token_bucket", quota=per_sec(RATE, burst=RATE), store=MemoryStore()
    )

    async def run(n: int) -> None:
        for _ in range(n):
            async with throttle:
                await bare()

    return run


def _ours_acquire() -> Runner:
    from resilient import RateLimiter

    limiter = RateLimiter(RATE)

    async def run(n: int) -> None:
        for _ in range(n):
            await limiter.acquire()
            await bare()

    return run


def _ours_decorator() -> Runner:
    from resilient import RateLimiter

    return calls(RateLimiter(RATE)(bare))


GROUP = Group(
    key="rate_limit",
    title="RateLimiter (in memory, permit available)",
    intro=f"A limit of {RATE:,} permits per second, so a permit is always there; one key. "
    "pyrate-limiter's default in-memory bucket is a synchronous sliding-window log.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(AIOLIMITER, _aiolimiter),
        Case(LIMITS, _limits),
        Case(PYRATE, _pyrate),
        Case(THROTTLED, _throttled),
        Case(OURS_ACQUIRE, _ours_acquire, ours=True),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
    ],
    reference=(AIOLIMITER,),
    reference_label="aiolimiter",
    goals=[
        Goal(OURS_ACQUIRE, (AIOLIMITER,), 0.5, "RateLimiter.acquire() <= 0.5x aiolimiter"),
        Goal(OURS_DECORATOR, (AIOLIMITER,), 0.5, "RateLimiter decorator <= 0.5x aiolimiter"),
    ],
)
