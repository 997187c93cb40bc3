"""Group 4, CircuitBreaker (closed): resilient.CircuitBreaker against pybreaker, aiobreaker,
purgatory and nopanic."""

from __future__ import annotations

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

PYBREAKER = "pybreaker `with cb.calling()`"
AIOBREAKER = "aiobreaker decorator"
PURGATORY_WITH = 'purgatory `async with await get_breaker("x")`'
PURGATORY_HELD = "purgatory `async with breaker` (fetched once)"
PURGATORY_DECORATOR = 'purgatory `@factory("x")` decorator'
NOPANIC_DECORATOR = "nopanic @circuit_breaker()"
NOPANIC_WITH = "nopanic `async with breaker.guard()`"
OURS_DECORATOR = "CircuitBreaker() decorator"
OURS_WITH = "async with CircuitBreaker()"

# The cheapest way each peer offers to guard a call, face by face. pybreaker's decorator
# never awaits a coroutine (it would count failures as successes), so its block form is its
# only async face; aiobreaker has no block form.
PEER_DECORATORS = (AIOBREAKER, PURGATORY_DECORATOR, NOPANIC_DECORATOR)
PEER_BLOCKS = (PYBREAKER, PURGATORY_WITH, PURGATORY_HELD, NOPANIC_WITH)


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


async def _purgatory_held() -> Runner:
    from purgatory import AsyncCircuitBreakerFactory

    factory = AsyncCircuitBreakerFactory()
    await factory.initialize()
    # What a caller who keeps the breaker in a variable pays: the lookup happens once.
    breaker = await factory.get_breaker("x")

    async def run(n: int) -> None:
        for _ in range(n):
            async with breaker:
                await bare()

    return run


async def _purgatory_decorator() -> Runner:
    from purgatory import AsyncCircuitBreakerFactory

    factory = AsyncCircuitBreakerFactory()
    await factory.initialize()
    return calls(factory("x")(bare))


def _nopanic_decorator() -> Runner:
    from nopanic import circuit_breaker

    return calls(circuit_breaker()(bare))


def _nopanic_with() -> Runner:
    from nopanic import circuit_breaker

    breaker = circuit_breaker()

    async def run(n: int) -> None:
        for _ in range(n):
            async with breaker.guard():
                await bare()

    return run


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
    "the wall clock; purgatory goes through a message bus and a unit of work per call, and is "
    "shown both fetching its breaker per call (as its README does) and holding it in a "
    "variable; nopanic takes a threading lock before and after the call. pybreaker's only "
    "async face is its block form, aiobreaker has no block form; nopanic's is "
    "`async with breaker.guard()`.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(PYBREAKER, _pybreaker),
        Case(AIOBREAKER, _aiobreaker),
        Case(PURGATORY_WITH, _purgatory_with),
        Case(PURGATORY_HELD, _purgatory_held),
        Case(PURGATORY_DECORATOR, _purgatory_decorator),
        Case(NOPANIC_DECORATOR, _nopanic_decorator),
        Case(NOPANIC_WITH, _nopanic_with),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
        Case(OURS_WITH, _ours_with, ours=True),
    ],
    reference=(PURGATORY_WITH,),
    reference_label="purgatory",
    goals=[
        Goal(OURS_DECORATOR, (PURGATORY_WITH,), 1.0, "CircuitBreaker decorator <= 1.0x purgatory"),
        Goal(OURS_WITH, (PURGATORY_WITH,), 1.0, "async with CircuitBreaker <= 1.0x purgatory"),
        Goal(
            OURS_DECORATOR,
            PEER_DECORATORS,
            1.0,
            "CircuitBreaker decorator <= 1.0x the fastest peer decorator",
            fastest=True,
        ),
        Goal(
            OURS_WITH,
            PEER_BLOCKS,
            1.0,
            "async with CircuitBreaker <= 1.0x the fastest peer block",
            fastest=True,
        ),
        Goal(
            OURS_WITH,
            (OURS_DECORATOR,),
            1.0,
            "async with CircuitBreaker <= 1.0x CircuitBreaker decorator",
        ),
    ],
)
