"""What every policy's decorator accepts and refuses, checked once at decoration time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from resilient import Pipeline, Timeout

pytestmark = pytest.mark.anyio


def test_a_plain_function_is_refused_at_decoration_time() -> None:
    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match=r"Timeout decorates `async def` functions only"):
        Timeout(1)(sync)  # type: ignore[arg-type]


def test_an_async_generator_is_refused_at_decoration_time() -> None:
    async def agen() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="cannot decorate the async generator function"):
        Pipeline(Timeout(1))(agen)  # type: ignore[arg-type]


async def test_an_object_with_an_async_call_method_is_accepted() -> None:
    class Client:
        async def __call__(self, x: int) -> int:
            return x + 1

    assert await Timeout(1)(Client())(1) == 2


async def test_an_async_method_is_accepted_and_bound_as_usual() -> None:
    class Service:
        def __init__(self) -> None:
            self.base = 10

        @Timeout(1)
        async def add(self, x: int) -> int:
            return self.base + x

    assert await Service().add(5) == 15


async def test_the_original_function_stays_reachable_through_wrapped() -> None:
    async def f() -> int:
        return 1

    decorated = Timeout(1)(f)
    assert decorated.__wrapped__ is f  # type: ignore[attr-defined]
