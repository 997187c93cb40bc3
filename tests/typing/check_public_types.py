"""Checked by `mypy --strict` (make typecheck), not run: the public API keeps types."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from resilient import Pipeline, Timeout


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
