"""`policy.call(fn, ...)` binds a plain function's engine once, and keeps nothing else."""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass
from typing import Any

import pytest

from resilient import Backoff, Fallback, Pipeline, Retry, Timeout
from resilient._policy import _MAX_BOUND

pytestmark = pytest.mark.anyio

attempts = 0


async def flaky() -> str:
    global attempts
    attempts += 1
    if attempts % 2:
        raise ConnectionError("first try")
    return "ok"


async def answer(value: int, *, plus: int = 0) -> int:
    return value + plus


async def test_a_plain_function_is_bound_once_and_still_retried() -> None:
    retry = Retry(backoff=Backoff(initial=0.0))
    assert await retry.call(flaky) == "ok"  # failed once, retried
    assert await retry.call(flaky) == "ok"
    assert list(retry._bound_fns) == [flaky]
    assert await retry.call(answer, 1, plus=2) == 3
    assert list(retry._bound_fns) == [flaky, answer]


@pytest.mark.parametrize(
    "policy", [Retry(), Timeout(5.0), Fallback(0), Pipeline(Timeout(5.0), Retry())]
)
async def test_every_wrapping_policy_keeps_plain_functions(policy: Any) -> None:
    assert await policy.call(answer, 40, plus=2) == 42
    assert answer in policy._bound_fns


async def test_closures_lambdas_and_methods_are_not_kept_alive() -> None:
    retry = Retry()

    class Client:
        async def fetch(self) -> int:
            return 7

    client = Client()
    captured = [1, 2, 3]

    async def closure() -> int:
        return len(captured)

    assert await retry.call(client.fetch) == 7
    assert await retry.call(closure) == 3
    assert await retry.call(lambda: answer(len(captured))) == 3
    assert not getattr(retry, "_bound_fns", {})
    gone = weakref.ref(client)
    del client
    gc.collect()
    assert gone() is None


async def test_a_callable_object_that_cannot_be_hashed_still_runs() -> None:
    @dataclass
    class Job:  # eq=True: unhashable
        value: int

        async def __call__(self) -> int:
            return self.value

    assert await Retry().call(Job(5)) == 5


async def test_the_cache_is_bounded() -> None:
    retry = Retry()
    for i in range(_MAX_BOUND + 50):
        namespace: dict[str, Any] = {}
        exec(f"async def fn_{i}():\n    return {i}", namespace)  # no closure: cacheable
        assert await retry.call(namespace[f"fn_{i}"]) == i
    assert len(retry._bound_fns) == _MAX_BOUND
