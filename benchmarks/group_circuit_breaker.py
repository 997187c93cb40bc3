"""Group 4, CircuitBreaker (closed): resilient.CircuitBreaker against pybreaker, aiobreaker
and purgatory."""

from __future__ import annotations

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

PYBREAKER = "pybreaker `with cb.calling()`"
AIOBREAKER = "aiobreaker decorator"
PURGATORY_WITH = 'purgatory `async with await get_breaker("x")`'
PURGATORY_DECORATOR = 'purgatory `@factory("x")` decorator'
OURS_DECORATOR = "CircuitBreaker() decorator"
OURS_WITH = "async with CircuitBreaker()"


def _pybreaker() -> Runner:
    import pybreaker

    # `call_async` needs tornado; `calling()` is pybreaker's documented form around an await.
    breaker = pybreaker.CircuitBreaker()

    async def run(n: int) -> None:
        for _ in range(n):
            with breaker.calling():
                await bare()

    return run


def _aiobreaker() -> Runner:
    import aiobreaker

    return calls(aiobreaker.CircuitBreaker()(bare))


async def _purgatory_with() -> Runner:
    from purgatory import AsyncCircuitBreakerFactory

    factory = AsyncCircuitBreakerFactory()
    await factory.initialize()

    async def run(n: int) -> None:
        for _ in range(n):
            async with await factory.get_breaker("x"):
                await bare()

    return run


async def _purgatory_decorator() -> Runner:
    from purgatory import AsyncCircuitBreakerFactory

    factory = AsyncCircuitBreakerFactory()
    await factory.initialize()
    return calls(factory("x")(bare))


def _ours_decorator() -> Runner:
    from resilient import CircuitBreaker

    return calls(CircuitBreaker()(bare))


def _ours_with() -> Runner:
    from resilient import CircuitBreaker

    breaker = CircuitBreaker()

    async def run(n: int) -> None:
        for _ in range(n):
            async with breaker:
                await bare()

    return run


GROUP = Group(
    key="circuit_breaker",
    title="CircuitBreaker (closed)",
    intro="Every call succeeds, so each breaker stays closed and only records successes. "
    "pybreaker holds a threading lock around its bookkeeping; aiobreaker and pybreaker read "
    "the wall clock; purgatory goes through a message bus and a unit of work per call.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(PYBREAKER, _pybreaker),
        Case(AIOBREAKER, _aiobreaker),
        Case(PURGATORY_WITH, _purgatory_with),
        Case(PURGATORY_DECORATOR, _purgatory_decorator),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
        Case(OURS_WITH, _ours_with, ours=True),
    ],
    reference=(PURGATORY_WITH,),
    reference_label="purgatory",
    goals=[
        Goal(OURS_DECORATOR, (PURGATORY_WITH,), 1.0, "CircuitBreaker decorator <= 1.0x purgatory"),
        Goal(OURS_WITH, (PURGATORY_WITH,), 1.0, "async with CircuitBreaker <= 1.0x purgatory"),
    ],
)
