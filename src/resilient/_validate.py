"""Constructor argument checks: each raises ValueError naming the field and the value."""

from __future__ import annotations

import math
import reprlib
from typing import Any, Final

from resilient._clock import Clock, monotonic_clock

__all__ = (
    "check_bool",
    "check_clock",
    "check_name",
    "check_non_negative",
    "check_optional_positive",
    "check_positive",
    "check_positive_int",
    "check_ratio",
    "short_repr",
)

#: The longest value shown in an error message, in characters.
_MAX_REPR: Final = 60

_repr = reprlib.Repr()
_repr.maxstring = _MAX_REPR
_repr.maxother = _MAX_REPR


def short_repr(value: object) -> str:
    """`repr(value)` on one line of at most 60 characters, for messages a user reads.

    A value rejected at construction may be any object (a client, a settings object) whose
    own repr runs over many lines; the message names it without pasting all of it.
    """
    try:
        text = _repr.repr(value)
    except ValueError:  # an int with more digits than int-to-str conversion allows
        size = f" of {value.bit_length()} bits" if isinstance(value, int) else ""
        text = f"<{type(value).__name__}{size}>"
    if "\n" in text or "\r" in text:
        text = " ".join(text.split())
    if len(text) > _MAX_REPR:
        head = (_MAX_REPR - 3) // 2
        text = text[:head] + "..." + text[len(text) - (_MAX_REPR - 3 - head) :]
    return text


def _finite(value: Any) -> float | None:
    """`value` as a finite float; None when it is not a real number (bools are not), not
    finite, or an int too large for a float."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _got(value: Any) -> str:
    """How a message names a rejected number."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return f"{short_repr(value)} (too large for a float)"
    return short_repr(value)


def check_positive(field: str, value: Any) -> float:
    """A finite number > 0 (a float, or an int small enough to be one)."""
    number = _finite(value)
    if number is None or number <= 0:
        raise ValueError(f"{field} must be a finite number > 0, got {_got(value)}")
    return number


def check_optional_positive(field: str, value: Any) -> float | None:
    """None (off) or a finite number > 0."""
    return None if value is None else check_positive(field, value)


def check_non_negative(field: str, value: Any) -> float:
    """A finite number >= 0 (a float, or an int small enough to be one)."""
    number = _finite(value)
    if number is None or number < 0:
        raise ValueError(f"{field} must be a finite number >= 0, got {_got(value)}")
    return number


def check_positive_int(
    field: str, value: Any, *, minimum: int = 1, maximum: int | None = None
) -> int:
    """A whole number >= minimum (and <= maximum, when given)."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{field} must be a whole number {bounds}, got {short_repr(value)}")
    return value


def check_ratio(field: str, value: Any, *, allow_zero: bool = True) -> float:
    """A number in [0, 1] (or (0, 1] when allow_zero is False)."""
    number = _finite(value)
    if number is None or number > 1 or (number < 0 if allow_zero else number <= 0):
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{field} must be a number in {bounds}, got {_got(value)}")
    return number


def check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be True or False, got {short_repr(value)}")
    return value


def check_optional_callable(field: str, value: Any, shape: str = "a callable") -> Any:
    """A hook: None, or a callable (`shape` describes it in the error)."""
    if value is not None and not callable(value):
        raise ValueError(f"{field} must be {shape} or None, got {short_repr(value)}")
    return value


def check_clock(clock: Any) -> Clock:
    """The clock a policy reads: `clock`, or the monotonic clock for None.

    Checked at construction, so a wrong `clock=` fails there rather than at the first call
    (or the first wait) that reads it.
    """
    if clock is None:
        return monotonic_clock
    if not isinstance(clock, Clock):
        raise ValueError(f"clock must be a Clock (now() and sleep()), got {short_repr(clock)}")
    return clock


def check_name(value: Any, default: str) -> str:
    """A policy name: None (use the kind) or a non-empty string."""
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"name must be a non-empty string or None, got {short_repr(value)}")
    return value
