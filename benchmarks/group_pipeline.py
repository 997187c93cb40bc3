"""Group 8, Pipeline: the five-policy resilient stack against the best peer for each stage,
both as the sum of their separate added costs and as an actual nested stack, and against
nopanic's `compose` of its own five policies."""

from __future__ import annotations

import asyncio

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

# The same peer runners as in each peer's own group, so both tables measure one thing.
from group_bulkhead import _semaphore
from group_circuit_breaker import _purgatory_with as _purgatory
from group_rate_limit import RATE, _aiolimiter
from group_retry import _backoff
from group_timeout import _asyncio_timeout

AIOLIMITER = "aiolimiter `async with`"
ASYNCIO_TIMEOUT = "asyncio.timeout(10)"
BACKOFF = "backoff decorator"
PURGATORY = "purgatory `async with`"
SEMAPHORE = "asyncio.Semaphore(10)"
NESTED = "nested peer stack (all five)"
NOPANIC = "nopanic compose(rate_limit, timeout, retry, circuit_breaker, bulkhead)"
OURS = "Pipeline(RateLimiter, Timeout, Retry, CircuitBreaker, Bulkhead) decorator"
PEERS = (AIOLIMITER, ASYNCIO_TIMEOUT, BACKOFF, PURGATORY, SEMAPHORE)


async def _nested() -> Runner:
    import backoff
    from aiolimiter import AsyncLimiter
    from purgatory import AsyncCircuitBreakerFactory

    limiter = AsyncLimiter(RATE, 1)
    factory = AsyncCircuitBreakerFactory()
    await factory.initialize()
    semaphore = asyncio.Semaphore(10)

    # Same order as the Pipeline: limiter outermost, then the total timeout, the retry, and
    # per attempt the breaker and the bulkhead.
    @backoff.on_exception(backoff.expo, Exception, max_tries=3)
    async def attempt() -> int:
        async with await factory.get_breaker("x"), semaphore:
            return await bare()

    async def run(n: int) -> None:
        for _ in range(n):
            async with limiter, asyncio.timeout(10):
                await attempt()

    return run


def _nopanic() -> Runner:
    from nopanic import bulkhead, circuit_breaker, compose, rate_limit, retry, timeout

    stack = compose(rate_limit(RATE), timeout(10), retry(), circuit_breaker(), bulkhead(10))
    return calls(stack(bare))


def _ours() -> Runner:
    from resilient import Bulkhead, CircuitBreaker, Pipeline, RateLimiter, Retry, Timeout

    pipeline = Pipeline(RateLimiter(RATE), Timeout(10), Retry(), CircuitBreaker(), Bulkhead(10))
    return calls(pipeline(bare))


GROUP = Group(
    key="pipeline",
    title="Pipeline",
    intro="The standard stack, outermost first: rate limiter, timeout, retry, circuit breaker, "
    "bulkhead, against the peer chosen for each stage in the groups above, measured one by one "
    "(their added costs summed) and nested in the same order; and nopanic's `compose` of its "
    "own five policies, in the same order and with their defaults.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(AIOLIMITER, _aiolimiter),
        Case(ASYNCIO_TIMEOUT, _asyncio_timeout),
        Case(BACKOFF, _backoff),
        Case(PURGATORY, _purgatory),
        Case(SEMAPHORE, _semaphore),
        Case(NESTED, _nested),
        Case(NOPANIC, _nopanic),
        Case(OURS, _ours, ours=True),
    ],
    reference=PEERS,
    reference_label="sum of peers",
    goals=[
        Goal(OURS, PEERS, 0.5, "Pipeline <= 0.5x sum of the five peers"),
        Goal(OURS, (NESTED,), 0.5, "Pipeline <= 0.5x nested peer stack"),
        Goal(OURS, (NOPANIC,), 0.5, "Pipeline <= 0.5x nopanic compose of the same five"),
    ],
)
