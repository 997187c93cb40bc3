"""Backoff: capped exponential delays with jitter, pure and seedable."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient.retry import Backoff

delays = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
multipliers = st.floats(min_value=1.0, max_value=100.0, allow_nan=False)
jitters = st.sampled_from(["full", "equal", "decorrelated", "none"])


def capped(backoff: Backoff, retry: int) -> float:
    """The unjittered delay computed the slow, obvious way (exact big rationals)."""
    from fractions import Fraction

    exact = Fraction(backoff.initial) * Fraction(backoff.multiplier) ** (retry - 1)
    return float(min(exact, Fraction(backoff.max_delay)))


def test_defaults_follow_the_aws_recipe() -> None:
    backoff = Backoff()
    assert (backoff.initial, backoff.multiplier, backoff.max_delay, backoff.jitter) == (
        0.1,
        2.0,
        10.0,
        "full",
    )


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.1, multiplier=2.0, max_delay=1.0, jitter="none")
    assert list(itertools.islice(backoff, 6)) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_iteration_is_endless_and_restarts_for_each_iterator() -> None:
    backoff = Backoff(jitter="none")
    first = list(itertools.islice(backoff, 100))
    assert len(first) == 100
    assert list(itertools.islice(backoff, 3)) == first[:3]


@pytest.mark.parametrize("retry", [1_000, 1_100, 10**6, 10**18])
def test_huge_retry_numbers_do_not_overflow(retry: int) -> None:
    backoff = Backoff(initial=1e-300, multiplier=10.0, max_delay=1e300, jitter="none")
    assert backoff.delay(retry) == 1e300


def test_a_zero_initial_delay_stays_zero_however_many_retries() -> None:
    assert Backoff(initial=0.0, max_delay=1.0, jitter="none").delay(5_000) == 0.0


def test_a_seeded_rng_gives_repeatable_delays() -> None:
    one = Backoff(jitter="decorrelated", rng=random.Random(42))
    two = Backoff(jitter="decorrelated", rng=random.Random(42))
    assert list(itertools.islice(one, 20)) == list(itertools.islice(two, 20))


def test_backoff_is_immutable() -> None:
    backoff = Backoff()
    with pytest.raises(AttributeError, match="immutable"):
        backoff.initial = 1.0


def test_equal_backoffs_compare_equal_and_hash_alike() -> None:
    assert Backoff(0.2, jitter="none") == Backoff(0.2, jitter="none")
    assert hash(Backoff(0.2)) == hash(Backoff(0.2))
    assert Backoff(0.2) != Backoff(0.3)
    assert "initial=0.2" in repr(Backoff(0.2))


@given(
    initial=delays,
    multiplier=multipliers,
    extra=delays,
    jitter=jitters,
    seed=st.integers(0, 2**32),
    retry=st.integers(1, 2_000),
)
def test_every_delay_lies_within_its_jitter_bounds(
    initial: float, multiplier: float, extra: float, jitter: str, seed: int, retry: int
) -> None:
    backoff = Backoff(initial, multiplier, initial + extra, jitter, rng=random.Random(seed))  # type: ignore[arg-type]
    d = capped(backoff, retry)
    got = backoff.delay(retry)
    assert 0.0 <= got <= backoff.max_delay
    # The float power may be a few ulps off the exact value; nothing more.
    high = d * (1 + 1e-12)
    if jitter == "none":
        assert got == pytest.approx(d, rel=1e-12)
    elif jitter == "full":
        assert 0.0 <= got <= high
    elif jitter == "equal":
        assert d / 2 * (1 - 1e-12) <= got <= high


@given(
    initial=delays,
    extra=delays,
    seed=st.integers(0, 2**32),
    count=st.integers(1, 50),
)
def test_decorrelated_delays_stay_between_initial_and_three_times_the_last(
    initial: float, extra: float, seed: int, count: int
) -> None:
    backoff = Backoff(
        initial, max_delay=initial + extra, jitter="decorrelated", rng=random.Random(seed)
    )
    previous = initial
    for got in itertools.islice(backoff, count):
        assert initial <= got <= backoff.max_delay
        assert got <= max(initial, 3 * previous) * (1 + 1e-12)
        previous = got


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": -0.1}, "initial"),
        ({"initial": float("nan")}, "initial"),
        ({"initial": "1"}, "initial"),
        ({"initial": 10**400}, "initial"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": float("inf")}, "multiplier"),
        ({"multiplier": 0}, "multiplier"),
        ({"multiplier": 10**400}, "multiplier"),
        ({"max_delay": 0.05}, "max_delay"),
        ({"max_delay": float("inf")}, "max_delay"),
        ({"max_delay": 10**400}, "max_delay"),
        ({"jitter": "random"}, "jitter"),
        ({"rng": 42}, "rng"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)  # type: ignore[arg-type]
