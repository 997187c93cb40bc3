"""Checked by `mypy --strict` (make typecheck), not run: the public API keeps types."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from resilient import (
    AIMD,
    AdaptiveThrottle,
    Bulkhead,
    Chaos,
    CircuitBreaker,
    Fallback,
    Hedge,
    LoadShedder,
    Pipeline,
    RateLimiter,
    Retry,
    Timeout,
)


async def fetch(user_id: int, *, fresh: bool = False) -> dict[str, int]:
    return {"id": user_id}


async def check_decorator_keeps_the_signature() -> None:
    decorated = Timeout(1)(fetch)
    pending = decorated(1, fresh=True)
    assert_type(pending, Coroutine[Any, Any, dict[str, int]]).close()
    assert_type(await decorated(1), dict[str, int])


async def check_call_is_typed_by_the_function() -> None:
    assert_type(await Timeout(1).call(fetch, 2, fresh=False), dict[str, int])
    assert_type(await Pipeline(Timeout(2), Timeout(1)).call(fetch, 3), dict[str, int])


async def check_async_with_yields_the_policy() -> None:
    async with Timeout(1) as timeout:
        assert_type(timeout, Timeout)


async def check_every_policy_keeps_the_decorated_type() -> None:
    policies = (
        Retry(),
        CircuitBreaker(),
        Bulkhead(4),
        RateLimiter(10),
        Fallback({"id": 0}),
        LoadShedder(8),
        LoadShedder(AIMD()),
        Hedge(0.05),
        AdaptiveThrottle(),
        Chaos(latency=0.1),
        Pipeline(RateLimiter(10), Timeout(2), Retry(), CircuitBreaker(), Bulkhead(4)),
    )
    for policy in policies:
        assert_type(await policy(fetch)(1, fresh=True), dict[str, int])
        assert_type(await policy.call(fetch, 1), dict[str, int])


async def check_single_shot_policies_enter_as_themselves() -> None:
    async with CircuitBreaker() as breaker:
        assert_type(breaker, CircuitBreaker)
    async with Bulkhead(2) as bulkhead:
        assert_type(bulkhead, Bulkhead)
    async with RateLimiter(5) as limiter:
        assert_type(limiter, RateLimiter)
    async with LoadShedder(5) as shedder:
        assert_type(shedder, LoadShedder)
        assert_type(shedder.limit, int)
    async with AdaptiveThrottle() as throttle:
        assert_type(throttle, AdaptiveThrottle)


def check_statistics_and_state_are_typed() -> None:
    assert_type(Retry().statistics.retries, int)
    assert_type(CircuitBreaker().metrics().failure_ratio, float)
    assert_type(Bulkhead(1).in_flight, int)
    assert_type(Hedge().current_delay, float | None)
    assert_type(AdaptiveThrottle().reject_probability, float)


async def check_wrong_arguments_are_type_errors() -> None:
    # Each ignore is needed: with warn_unused_ignores (strict), mypy fails if a decorator
    # ever loses the signature and these calls stop being errors.
    await Retry()(fetch)("not an int")  # type: ignore[arg-type]
    await Timeout(1).call(fetch, 1, stale=True)  # type: ignore[call-arg]
    await Pipeline(Retry(), Timeout(1))(fetch)()  # type: ignore[call-arg]


async def check_the_httpx_transport_is_an_httpx_transport() -> None:
    import httpx

    from resilient.httpx import Host, ResilientTransport

    transport = ResilientTransport(retry=Retry(attempts=2), breaker=None, bulkhead=Bulkhead(5))
    client = httpx.AsyncClient(transport=transport)
    host = transport.host("https://api.example.com")
    assert_type(host, Host)
    assert_type(host.breaker, CircuitBreaker | None)
    await client.aclose()


async def check_the_interop_adapters_keep_types() -> None:
    import pybreaker
    import tenacity

    from resilient.interop.pybreaker import PyBreakerPolicy
    from resilient.interop.tenacity import TenacityBackoff

    backoff = TenacityBackoff(
        tenacity.wait_exponential(max=5) + tenacity.wait_random(0, 1),
        stop=tenacity.stop_after_delay(30) | tenacity.stop_after_attempt(5),
    )
    assert_type(await Retry(attempts=10, backoff=backoff).call(fetch, 1), dict[str, int])
    guarded = PyBreakerPolicy(pybreaker.CircuitBreaker())
    assert_type(await guarded(fetch)(1, fresh=True), dict[str, int])
    assert_type(await Pipeline(guarded, Timeout(1)).call(fetch, 2), dict[str, int])
    async with guarded as policy:
        assert_type(policy, PyBreakerPolicy)
