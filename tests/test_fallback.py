"""Fallback: a substitute value or handler when the call fails."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.trace import StatusCode

from resilient import CircuitOpenError, Fallback

pytestmark = pytest.mark.anyio


async def fails(error: Exception) -> str:
    await anyio.lowlevel.checkpoint()
    raise error


async def returns(value: str) -> str:
    await anyio.lowlevel.checkpoint()
    return value


async def test_a_successful_call_returns_its_own_result() -> None:
    assert await Fallback(value="cached").call(returns, "fresh") == "fresh"


async def test_a_failed_call_returns_the_value() -> None:
    assert await Fallback(value="cached").call(fails, ConnectionError()) == "cached"


async def test_none_is_a_valid_fallback_value() -> None:
    assert await Fallback(None).call(fails, ConnectionError()) is None


async def test_the_handler_receives_the_exception() -> None:
    seen: list[BaseException] = []

    async def handler(exc: Exception) -> str:
        seen.append(exc)
        return f"default after {type(exc).__name__}"

    error = ConnectionError()
    assert await Fallback(handler=handler).call(fails, error) == "default after ConnectionError"
    assert seen == [error]


async def test_rejections_are_handled_by_default() -> None:
    result = await Fallback(value="degraded").call(fails, CircuitOpenError("open", policy="db"))
    assert result == "degraded"


async def test_exceptions_outside_on_propagate_unchanged() -> None:
    fallback = Fallback(value="x", on=ConnectionError)
    with pytest.raises(KeyError):
        await fallback.call(fails, KeyError("id"))


async def test_a_predicate_on_decides() -> None:
    fallback = Fallback(value="x", on=lambda exc: "retryable" in str(exc))
    assert await fallback.call(fails, RuntimeError("retryable glitch")) == "x"
    with pytest.raises(RuntimeError, match="fatal"):
        await fallback.call(fails, RuntimeError("fatal"))


async def test_an_error_in_the_handler_propagates_chained_to_the_original() -> None:
    async def handler(exc: Exception) -> str:
        raise LookupError("cache miss")

    with pytest.raises(LookupError) as caught:
        await Fallback(handler=handler).call(fails, ConnectionError("down"))
    assert isinstance(caught.value.__context__, ConnectionError)


async def test_cancellation_is_never_caught() -> None:
    with anyio.CancelScope() as scope:

        async def cancelled() -> str:
            scope.cancel()
            await anyio.lowlevel.checkpoint()
            return "unreachable"

        await Fallback(value="x").call(cancelled)
    assert scope.cancelled_caught


async def test_decorating_keeps_the_name() -> None:
    @Fallback(value=[])
    async def recommendations(user_id: int) -> list[str]:
        raise ConnectionError

    assert recommendations.__name__ == "recommendations"
    assert await recommendations(1) == []


def test_decorating_a_plain_function_raises_type_error() -> None:
    def sync() -> None: ...

    with pytest.raises(TypeError, match="async def"):
        Fallback(value=1)(sync)  # type: ignore[arg-type]


def test_a_synchronous_handler_raises_type_error() -> None:
    def handler(exc: Exception) -> str:
        return "x"

    with pytest.raises(TypeError, match="handler"):
        Fallback(handler=handler)  # type: ignore[arg-type]


async def test_an_object_with_an_async_call_is_a_valid_handler() -> None:
    class Handler:
        async def __call__(self, exc: Exception) -> str:
            return "from object"

    assert await Fallback(handler=Handler()).call(fails, ConnectionError()) == "from object"


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((), {}, "value and handler"),
        (("x",), {"handler": returns}, "value and handler"),
        (("x",), {"on": "ConnectionError"}, "on"),
        (("x",), {"on": ()}, "on"),
        (("x",), {"on": KeyboardInterrupt}, "on"),
        (("x",), {"name": ""}, "name"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_field(
    args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Fallback(*args, **kwargs)


class TestTelemetry:
    async def test_using_the_fallback_is_a_span_event(self, telemetry: Any) -> None:
        await Fallback(value="x", name="fb-used").call(fails, ConnectionError())
        (span,) = telemetry.spans("resilient.fallback")
        assert span.attributes["resilient.policy.name"] == "fb-used"
        assert span.attributes["resilient.outcome"] == "fallback"
        (event,) = span.events
        assert event.name == "resilient.fallback.used"
        assert event.attributes["error.type"] == "ConnectionError"
        outcome = {"resilient.outcome": "fallback"}
        assert telemetry.metric_total("resilient.calls", policy="fb-used", **outcome) == 1

    async def test_a_success_records_no_event(self, telemetry: Any) -> None:
        await Fallback(value="x", name="fb-ok").call(returns, "fresh")
        (span,) = telemetry.spans("resilient.fallback")
        assert "resilient.outcome" not in span.attributes  # a success leaves it unset
        assert span.events == ()

    async def test_an_unhandled_error_ends_the_span_with_error(self, telemetry: Any) -> None:
        with pytest.raises(KeyError):
            await Fallback(value="x", on=ConnectionError, name="fb-miss").call(fails, KeyError())
        (span,) = telemetry.spans("resilient.fallback")
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["resilient.outcome"] == "failure"

    async def test_telemetry_false_emits_nothing(self, telemetry: Any) -> None:
        await Fallback(value="x", name="fb-quiet", telemetry=False).call(fails, ConnectionError())
        assert telemetry.spans() == []
        assert telemetry.metric_total("resilient.calls", policy="fb-quiet") == 0
