from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from resilient import Pipeline, Timeout
from resilient._policy import Policy
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

T = TypeVar("T")


class Recorder(Policy):
    """A policy that records when it enters and leaves, to observe composition order."""

    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log

    async def _run(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        self.log.append(f"enter {self.label}")
        try:
            return await fn(*args, **kwargs)
        finally:
            self.log.append(f"leave {self.label}")


async def test_first_policy_is_outermost() -> None:
    log: list[str] = []

    async def work() -> str:
        log.append("call")
        return "ok"

    pipeline = Pipeline(Recorder("a", log), Recorder("b", log), Recorder("c", log))
    assert await pipeline.call(work) == "ok"
    assert log == ["enter a", "enter b", "enter c", "call", "leave c", "leave b", "leave a"]


async def test_arguments_reach_the_call_unchanged() -> None:
    async def echo(*args: object, **kwargs: object) -> tuple[tuple[object, ...], dict[str, object]]:
        return args, kwargs

    pipeline = Pipeline(Timeout(5), Timeout(4), Timeout(3))
    assert await pipeline.call(echo, 1, "two", three=3) == ((1, "two"), {"three": 3})
    # The same pipeline again: nothing of the first call leaks into the second.
    assert await pipeline.call(echo, four=4) == ((), {"four": 4})


async def test_a_pipeline_nests_inside_another() -> None:
    log: list[str] = []

    async def work() -> int:
        return 1

    inner = Pipeline(Recorder("b", log), Recorder("c", log))
    outer = Pipeline(Recorder("a", log), inner)
    assert await outer.call(work) == 1
    assert log[:3] == ["enter a", "enter b", "enter c"]


async def test_decorated_function_keeps_its_name_and_signature() -> None:
    pipeline = Pipeline(Timeout(5))

    async def lookup(user_id: int, *, fresh: bool = False) -> str:
        """Look a user up."""
        return f"{user_id}:{fresh}"

    original = lookup
    lookup = pipeline(lookup)
    assert lookup.__name__ == "lookup"
    assert lookup.__doc__ == "Look a user up."
    assert inspect.signature(lookup) == inspect.signature(original)
    assert inspect.iscoroutinefunction(lookup)
    assert await lookup(3, fresh=True) == "3:True"


async def test_exceptions_propagate_through_every_stage(clock: FakeClock) -> None:
    async def fail() -> None:
        raise LookupError("missing")

    with pytest.raises(LookupError, match="missing"):
        await Pipeline(Timeout(5, clock=clock), Timeout(1, clock=clock)).call(fail)


def test_an_empty_pipeline_is_rejected() -> None:
    with pytest.raises(ValueError, match="policies must name at least one policy"):
        Pipeline()


def test_something_that_is_not_a_policy_is_rejected_naming_its_position() -> None:
    with pytest.raises(ValueError, match=r"policies\[1\] must be a resilient policy"):
        Pipeline(Timeout(1), "retry")  # type: ignore[arg-type]


def test_policies_are_exposed_outermost_first() -> None:
    first, second = Timeout(2), Timeout(1)
    assert Pipeline(first, second).policies == (first, second)


async def test_pipeline_span_is_the_parent_of_its_policies_spans(telemetry) -> None:  # type: ignore[no-untyped-def]
    async def work() -> int:
        return 1

    await Pipeline(Timeout(5, name="total"), Timeout(1, name="attempt"), name="api").call(work)
    (pipeline_span,) = telemetry.spans("resilient.pipeline")
    timeouts = {
        s.attributes["resilient.policy.name"]: s for s in telemetry.spans("resilient.timeout")
    }
    assert pipeline_span.attributes["resilient.policy.name"] == "api"
    assert timeouts["total"].parent.span_id == pipeline_span.context.span_id
    assert timeouts["attempt"].parent.span_id == timeouts["total"].context.span_id
