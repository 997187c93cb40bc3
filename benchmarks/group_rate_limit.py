"""Group 6, RateLimiter in memory with a permit always available: resilient.RateLimiter
against aiolimiter, limits, pyrate-limiter, throttled-py and nopanic."""

from __future__ import annotations

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

# So high that no limiter ever runs out of permits during a run: only the bookkeeping of a
# granted permit is measured, never a wait.
RATE = 1_000_000_000

AIOLIMITER = "aiolimiter `async with AsyncLimiter`"
LIMITS = "limits.aio fixed window `hit()`"
PYRATE = "pyrate-limiter `try_acquire(blocking=False)`"
THROTTLED = "throttled-py token bucket `async with`"
THROTTLED_DECORATOR = "throttled-py token bucket decorator"
NOPANIC_DECORATOR = "nopanic @rate_limit(rate)"
NOPANIC_WITH = "nopanic `async with limiter.guard()`"
OURS_ACQUIRE = "`await limiter.acquire()`"
OURS_DECORATOR = "RateLimiter decorator"
OURS_WITH = "async with RateLimiter"

# The cheapest way each peer offers to take a permit, face by face: a call that takes a
# permit and returns, a decorator, a block. aiolimiter, limits and pyrate-limiter have no
# decorator; limits and pyrate-limiter no block.
PEER_ACQUIRES = (LIMITS, PYRATE)
PEER_DECORATORS = (THROTTLED_DECORATOR, NOPANIC_DECORATOR)
PEER_BLOCKS = (AIOLIMITER, THROTTLED, NOPANIC_WITH)


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


def _throttled_decorator() -> Runner:
    from throttled.asyncio import MemoryStore, Throttled, per_sec

    throttle = Throttled(
        key="bench", using="token_bucket", quota=per_sec(RATE, burst=RATE), store=MemoryStore()
    )
    return calls(throttle(bare))


def _nopanic_decorator() -> Runner:
    from nopanic import rate_limit

    return calls(rate_limit(RATE)(bare))


def _nopanic_with() -> Runner:
    from nopanic import rate_limit

    limiter = rate_limit(RATE)

    async def run(n: int) -> None:
        for _ in range(n):
            async with limiter.guard():
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


def _ours_with() -> Runner:
    from resilient import RateLimiter

    limiter = RateLimiter(RATE)

    async def run(n: int) -> None:
        for _ in range(n):
            async with limiter:
                await bare()

    return run


GROUP = Group(
    key="rate_limit",
    title="RateLimiter (in memory, permit available)",
    intro=f"A limit of {RATE:,} permits per second, so a permit is always there; one key. "
    "pyrate-limiter's default in-memory bucket is a synchronous sliding-window log. nopanic's "
    "limiter is a token bucket under a threading lock; its block form is "
    "`async with limiter.guard()`.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(AIOLIMITER, _aiolimiter),
        Case(LIMITS, _limits),
        Case(PYRATE, _pyrate),
        Case(THROTTLED, _throttled),
        Case(THROTTLED_DECORATOR, _throttled_decorator),
        Case(NOPANIC_DECORATOR, _nopanic_decorator),
        Case(NOPANIC_WITH, _nopanic_with),
        Case(OURS_ACQUIRE, _ours_acquire, ours=True),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
        Case(OURS_WITH, _ours_with, ours=True),
    ],
    reference=(AIOLIMITER,),
    reference_label="aiolimiter",
    goals=[
        Goal(OURS_ACQUIRE, (AIOLIMITER,), 0.5, "RateLimiter.acquire() <= 0.5x aiolimiter"),
        Goal(OURS_DECORATOR, (AIOLIMITER,), 0.5, "RateLimiter decorator <= 0.5x aiolimiter"),
        Goal(
            OURS_ACQUIRE,
            PEER_ACQUIRES,
            1.0,
            "RateLimiter.acquire() <= 1.0x the fastest peer permit call",
            fastest=True,
        ),
        Goal(
            OURS_DECORATOR,
            PEER_DECORATORS,
            1.0,
            "RateLimiter decorator <= 1.0x the fastest peer decorator",
            fastest=True,
        ),
        Goal(
            OURS_WITH,
            PEER_BLOCKS,
            1.0,
            "async with RateLimiter <= 1.0x the fastest peer block",
            fastest=True,
        ),
        Goal(
            OURS_WITH,
            (OURS_DECORATOR,),
            1.0,
            "async with RateLimiter <= 1.0x RateLimiter decorator",
        ),
    ],
)
