from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from resilient import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    Fallback,
    Pipeline,
    RateLimiter,
    Retry,
    RetryBudget,
    Timeout,
)
from resilient._clock import monotonic_clock
from resilient._validate import (
    check_clock,
    check_non_negative,
    check_positive,
    check_positive_int,
    check_ratio,
    short_repr,
)
from resilient.storage import MemoryStore
from resilient.testing import FakeClock


@pytest.mark.parametrize("value", ["0.5", None, True, math.nan, math.inf, -0.1, 1.5])
def test_ratio_rejects_anything_but_a_number_in_range(value: object) -> None:
    with pytest.raises(ValueError, match=r"failure_ratio must be a number in \[0, 1\], got"):
        check_ratio("failure_ratio", value)


def test_ratio_can_exclude_zero() -> None:
    assert check_ratio("r", 0.0) == 0.0
    with pytest.raises(ValueError, match=r"r must be a number in \(0, 1\]"):
        check_ratio("r", 0.0, allow_zero=False)


@pytest.mark.parametrize("value", ["1", None, False, math.nan, math.inf, 0, -1])
def test_positive_rejects_non_numbers_and_zero(value: object) -> None:
    with pytest.raises(ValueError, match="seconds must be a finite number > 0"):
        check_positive("seconds", value)


@pytest.mark.parametrize("value", ["0", math.nan, -0.5])
def test_non_negative_rejects_bad_values(value: object) -> None:
    with pytest.raises(ValueError, match="max_wait must be a finite number >= 0"):
        check_non_negative("max_wait", value)


@pytest.mark.parametrize("value", [0, 1.0, "2", True])
def test_positive_int_rejects_non_integers(value: object) -> None:
    with pytest.raises(ValueError, match="attempts must be a whole number >= 1"):
        check_positive_int("attempts", value)


@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["10**400", "-10**400"])
@pytest.mark.parametrize(
    "check",
    [check_positive, check_non_negative, check_ratio],
    ids=["positive", "non_negative", "ratio"],
)
def test_an_int_too_large_for_a_float_is_rejected_naming_the_field(
    check: Callable[[str, object], float], value: int
) -> None:
    with pytest.raises(ValueError, match=r"^window must be .*too large for a float"):
        check("window", value)


def test_the_largest_float_and_ints_that_fit_one_are_accepted() -> None:
    assert check_positive("seconds", sys.float_info.max) == sys.float_info.max
    assert check_non_negative("seconds", 10**300) == 1e300
    assert check_positive("seconds", 5e-324) == 5e-324


class _LongRepr:
    """An object whose repr is two kilobytes over many lines, as some clients' are."""

    def __repr__(self) -> str:
        return "<LongRepr\n" + "\n".join(f"  field_{i} = {'x' * 40}" for i in range(40)) + "\n>"


def test_short_repr_keeps_small_values_as_repr_shows_them() -> None:
    for value in (0, -1.5, math.nan, True, None, "", "  ", "30", (ValueError, "x")):
        assert short_repr(value) == repr(value)


@pytest.mark.parametrize(
    "value",
    [_LongRepr(), "y" * 500, 10**400, 10**5000, [_LongRepr()] * 6, {"k": _LongRepr()}],
    ids=["multi-line", "long-str", "10**400", "10**5000", "list", "dict"],
)
def test_short_repr_fits_on_one_short_line(value: object) -> None:
    text = short_repr(value)
    assert len(text) <= 60
    assert "\n" not in text


async def _handler(exc: Exception) -> None:
    return None


LONG: Any = _LongRepr()

#: A constructor call with one wrong argument, whose value has a long multi-line repr: the
#: field the message must name, and the call.
REJECTS_LONG: list[tuple[str, str, Callable[[], object]]] = [
    ("Timeout", "seconds", lambda: Timeout(LONG)),
    ("Retry", "backoff", lambda: Retry(backoff=LONG)),
    ("Retry", "on", lambda: Retry(on=LONG)),
    ("Retry", "on_result", lambda: Retry(on_result=LONG)),
    ("Retry", "budget", lambda: Retry(budget=LONG)),
    ("Retry", "max_duration", lambda: Retry(max_duration=LONG)),
    ("Retry", "clock", lambda: Retry(clock=LONG)),
    ("Backoff", "initial", lambda: Backoff(initial=LONG)),
    ("Backoff", "multiplier", lambda: Backoff(multiplier=LONG)),
    ("Backoff", "jitter", lambda: Backoff(jitter=LONG)),
    ("Backoff", "rng", lambda: Backoff(rng=LONG)),
    ("RetryBudget", "ratio", lambda: RetryBudget(ratio=LONG)),
    ("RetryBudget", "window", lambda: RetryBudget(window=LONG)),
    ("CircuitBreaker", "name", lambda: CircuitBreaker(LONG)),
    ("CircuitBreaker", "failure_ratio", lambda: CircuitBreaker(failure_ratio=LONG)),
    ("CircuitBreaker", "window_calls", lambda: CircuitBreaker(window_calls=LONG)),
    ("CircuitBreaker", "on", lambda: CircuitBreaker(on=LONG)),
    ("CircuitBreaker", "on_result", lambda: CircuitBreaker(on_result=LONG)),
    ("CircuitBreaker", "on_state_change", lambda: CircuitBreaker(on_state_change=LONG)),
    ("CircuitBreaker", "store", lambda: CircuitBreaker(store=LONG)),
    ("CircuitBreaker", "clock", lambda: CircuitBreaker(clock=LONG)),
    ("CircuitBreaker", "telemetry", lambda: CircuitBreaker(telemetry=LONG)),
    ("Bulkhead", "max_concurrent", lambda: Bulkhead(LONG)),
    ("Bulkhead", "max_wait", lambda: Bulkhead(1, max_wait=LONG)),
    ("RateLimiter", "rate", lambda: RateLimiter(LONG)),
    ("RateLimiter", "burst", lambda: RateLimiter(1, burst=LONG)),
    ("RateLimiter", "store", lambda: RateLimiter(1, store=LONG)),
    ("RateLimiter", "key", lambda: RateLimiter(1, key=LONG)),
    ("Fallback", "value and handler", lambda: Fallback(LONG, handler=_handler)),
    ("Fallback", "on", lambda: Fallback(1, on=LONG)),
    ("Pipeline", "policies", lambda: Pipeline(LONG)),
    ("MemoryStore", "max_keys", lambda: MemoryStore(max_keys=LONG)),
]


@pytest.mark.parametrize(
    ("field", "build"),
    [(field, build) for _, field, build in REJECTS_LONG],
    ids=[f"{policy}({field})" for policy, field, _ in REJECTS_LONG],
)
def test_a_rejected_value_is_named_in_a_short_one_line_message(
    field: str, build: Callable[[], object]
) -> None:
    with pytest.raises(ValueError, match=field) as caught:
        build()
    message = str(caught.value)
    assert "\n" not in message
    assert "<LongRepr field_0" in message
    assert len(message) < 200


def test_positive_int_can_have_a_maximum() -> None:
    assert check_positive_int("window_calls", 10, maximum=10) == 10
    with pytest.raises(
        ValueError, match=r"window_calls must be a whole number in \[1, 10\], got 11"
    ):
        check_positive_int("window_calls", 11, maximum=10)


#: Every constructor that takes `telemetry=` and `clock=`, given only those (and what is
#: required).
BUILD_WITH: dict[str, Callable[..., object]] = {
    "Timeout": lambda **kw: Timeout(1, **kw),
    "Retry": lambda **kw: Retry(**kw),
    "CircuitBreaker": lambda **kw: CircuitBreaker(**kw),
    "Bulkhead": lambda **kw: Bulkhead(1, **kw),
    "RateLimiter": lambda **kw: RateLimiter(1, **kw),
    "Fallback": lambda **kw: Fallback(1, **kw),
    "Pipeline": lambda **kw: Pipeline(Timeout(1), **kw),
}


@pytest.mark.parametrize("value", [0, 1, None, "no", "False"])
@pytest.mark.parametrize("policy", sorted(BUILD_WITH))
def test_telemetry_must_be_a_bool(policy: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^telemetry must be True or False, got {value!r}$"):
        BUILD_WITH[policy](telemetry=value)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("policy", sorted(BUILD_WITH))
def test_telemetry_accepts_true_and_false(policy: str, value: bool) -> None:
    BUILD_WITH[policy](telemetry=value)


#: Every constructor that takes `clock=`, given only that (and what is required).
BUILD_WITH_CLOCK: dict[str, Callable[..., object]] = {
    "Timeout": lambda **kw: Timeout(1, **kw),
    "Retry": lambda **kw: Retry(**kw),
    "CircuitBreaker": lambda **kw: CircuitBreaker(**kw),
    "Bulkhead": lambda **kw: Bulkhead(1, **kw),
    "RateLimiter": lambda **kw: RateLimiter(1, **kw),
    "MemoryStore": lambda **kw: MemoryStore(**kw),
}


@pytest.mark.parametrize(
    "value",
    [object(), "monotonic", time.monotonic, 0.0],
    ids=["object", "str", "function", "float"],
)
@pytest.mark.parametrize("policy", sorted(BUILD_WITH_CLOCK))
def test_a_clock_without_now_and_sleep_is_rejected_at_construction(
    policy: str, value: object
) -> None:
    with pytest.raises(ValueError, match=r"^clock must be a Clock \(now\(\) and sleep\(\)\), got"):
        BUILD_WITH_CLOCK[policy](clock=value)


@pytest.mark.parametrize(
    "value", [None, FakeClock(), monotonic_clock], ids=["None", "FakeClock", "monotonic_clock"]
)
@pytest.mark.parametrize("policy", sorted(BUILD_WITH_CLOCK))
def test_a_clock_is_accepted(policy: str, value: object) -> None:
    BUILD_WITH_CLOCK[policy](clock=value)


def test_check_clock_defaults_to_the_monotonic_clock() -> None:
    clock = FakeClock()
    assert check_clock(None) is monotonic_clock
    assert check_clock(clock) is clock
