from __future__ import annotations

import math

import pytest

from resilient._validate import (
    check_non_negative,
    check_positive,
    check_positive_int,
    check_ratio,
)


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
