"""Bad configuration raises ValueError naming the field and the value, at construction."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resilient import CircuitBreaker
from resilient.testing import FakeClock

BAD: list[tuple[str, Any]] = [
    ("name", ""),
    ("name", 3),
    ("failure_ratio", 0),
    ("failure_ratio", 1.5),
    ("failure_ratio", -0.1),
    ("failure_ratio", math.nan),
    ("failure_ratio", True),
    ("minimum_calls", 0),
    ("minimum_calls", 2.5),
    ("minimum_calls", True),
    ("window", 0),
    ("window", -1.0),
    ("window", math.inf),
    ("window", "30"),
    ("window", 1e-308),
    ("window", 0.000999),
    ("window_calls", 0),
    ("window_calls", 10.0),
    ("window_calls", 1_000_001),
    ("window_calls", 10**11),
    ("break_duration", 0),
    ("break_duration", math.inf),
    ("max_break_duration", 0),
    ("max_break_duration", 4.0),  # below the default break_duration of 5 s
    ("half_open_calls", 0),
    ("half_open_calls", 1.0),
    ("slow_call_duration", 0),
    ("slow_call_duration", -1),
    ("slow_call_ratio", 0),
    ("slow_call_ratio", 2),
    ("on", ()),
    ("on", BaseException),
    ("on", (ValueError, KeyboardInterrupt)),
    ("on", (ValueError, "TypeError")),
    ("on", 42),
    ("on_result", 42),
    ("on_state_change", "print"),
    ("store", object()),
    ("clock", object()),
    ("telemetry", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}={v!r}" for f, v in BAD])
def test_bad_argument_raises_value_error_naming_the_field(field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {field: value}
    if field == "name":
        with pytest.raises(ValueError, match=field):
            CircuitBreaker(value)
        return
    with pytest.raises(ValueError, match=field) as caught:
        CircuitBreaker(**kwargs)
    if field not in ("on", "store", "clock"):
        assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    "field",
    [
        "failure_ratio",
        "window",
        "break_duration",
        "max_break_duration",
        "slow_call_duration",
        "slow_call_ratio",
    ],
)
def test_an_int_too_large_for_a_float_raises_value_error_naming_the_field(field: str) -> None:
    kwargs: dict[str, Any] = {field: 10**400}
    with pytest.raises(ValueError, match=f"^{field} must be"):
        CircuitBreaker(**kwargs)


def test_window_calls_may_be_a_million() -> None:
    CircuitBreaker(window_calls=1_000_000)


@pytest.mark.anyio
async def test_a_millisecond_window_is_the_shortest_and_works() -> None:
    clock = FakeClock(start=1e6)
    breaker = CircuitBreaker(window=0.001, clock=clock)

    async def ok() -> int:
        return 1

    assert await breaker.call(ok) == 1
    assert breaker.metrics().calls == 1
    clock.advance(0.002)
    assert breaker.metrics().calls == 0


def test_max_break_duration_may_equal_break_duration() -> None:
    CircuitBreaker(break_duration=7, max_break_duration=7)


def test_defaults_follow_the_design() -> None:
    breaker = CircuitBreaker()
    core = breaker._core
    assert breaker.name == "circuit_breaker"
    assert (core.failure_ratio, core.minimum_calls) == (0.5, 20)
    assert (core.break_duration, core.max_break_duration) == (5.0, 60.0)
    assert (core.half_open_calls, core.slow_call_ratio) == (1, 1.0)
    assert breaker._slow_after is None
    assert breaker._core.window._counts.window == 30.0  # type: ignore[attr-defined]


def test_store_must_be_able_to_share_breaker_state() -> None:
    from resilient.storage import MemoryStore

    with pytest.raises(ValueError, match="store must be None or a store that can share"):
        CircuitBreaker(store=MemoryStore())  # type: ignore[arg-type]
