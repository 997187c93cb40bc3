"""The bounded latency-quantile estimator, checked against exact quantiles."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient.hedge import QuantileEstimator

values = st.floats(min_value=1e-5, max_value=1000.0, allow_nan=False, allow_infinity=False)


def exact_quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@settings(max_examples=300, deadline=None)
@given(
    samples=st.lists(values, min_size=20, max_size=900),
    q=st.floats(min_value=0.01, max_value=0.99),
)
def test_estimate_is_within_one_bucket_above_the_exact_quantile(
    samples: list[float], q: float
) -> None:
    estimator = QuantileEstimator(q, refresh=1)
    for value in samples:
        estimator.add(value)
    exact = exact_quantile(samples, q)
    estimate = estimator.estimate()
    assert estimate is not None
    assert exact <= estimate < exact * 1.05 * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(samples=st.lists(values, min_size=40, max_size=300), q=st.sampled_from([0.5, 0.95]))
def test_after_rotation_it_covers_the_most_recent_generations(
    samples: list[float], q: float
) -> None:
    estimator = QuantileEstimator(q, generation=20, refresh=1)
    for value in samples:
        estimator.add(value)
    # At least two full generations went by: it covers the samples since the last
    # rotation and the generation before them.
    kept = len(samples) % 20 + 20
    recent = samples[-kept:]
    exact = exact_quantile(recent, q)
    estimate = estimator.estimate()
    assert estimate is not None
    assert exact <= estimate < exact * 1.05 * (1 + 1e-9)


def test_no_estimate_before_min_samples() -> None:
    estimator = QuantileEstimator(0.95)
    for _ in range(19):
        estimator.add(0.1)
    assert estimator.estimate() is None
    estimator.add(0.1)
    assert estimator.estimate() == pytest.approx(0.1, rel=0.05)


def test_it_follows_a_change_of_distribution_within_two_generations() -> None:
    estimator = QuantileEstimator(0.5, generation=100)
    for _ in range(500):
        estimator.add(1.0)
    for _ in range(200):
        estimator.add(0.01)
    assert estimator.estimate() == pytest.approx(0.01, rel=0.05)


def test_values_out_of_range_are_clamped() -> None:
    estimator = QuantileEstimator(0.5, low=0.001, high=10.0, refresh=1)
    for _ in range(30):
        estimator.add(0.0)
    assert estimator.estimate() == 0.001
    estimator.reset()
    for _ in range(30):
        estimator.add(1e6)
    assert estimator.estimate() == pytest.approx(10.0, rel=0.05)


def test_memory_is_fixed_whatever_the_number_of_samples() -> None:
    estimator = QuantileEstimator(0.9, generation=50)
    sizes = {len(estimator._counts), len(estimator._older)}
    for i in range(10_000):
        estimator.add(0.001 * (i % 97 + 1))
    assert {len(estimator._counts), len(estimator._older)} == sizes
    assert estimator.total < 100


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"quantile": 0.0}, "quantile"),
        ({"quantile": 1.0}, "quantile"),
        ({"quantile": 0.5, "low": 0}, "low"),
        ({"quantile": 0.5, "low": 1.0, "high": 0.5}, "high"),
        ({"quantile": 0.5, "growth": 1.0}, "growth"),
        ({"quantile": 0.5, "generation": 0}, "generation"),
        ({"quantile": 0.5, "refresh": 0}, "refresh"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        QuantileEstimator(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(samples=st.lists(values, min_size=20, max_size=500), q=st.sampled_from([0.5, 0.9, 0.95]))
def test_with_spread_the_estimate_is_a_lower_bound_within_its_rank(
    samples: list[float], q: float
) -> None:
    estimator = QuantileEstimator(q, refresh=1, spread=2.0)
    for value in samples:
        estimator.add(value)
    n = len(samples)
    rank = max(1, math.ceil(q * n - 2.0 * math.sqrt(n * q * (1 - q))))
    exact = sorted(samples)[rank - 1]
    estimate = estimator.estimate()
    assert estimate is not None
    assert exact <= estimate < exact * 1.05 * (1 + 1e-9)
    assert estimate < exact_quantile(samples, q) * 1.05 * (1 + 1e-9)


def test_with_spread_a_tail_of_one_minus_quantile_stays_out_of_the_estimate() -> None:
    import random

    rng = random.Random(4)
    in_tail = 0
    for _ in range(200):
        estimator = QuantileEstimator(0.95, spread=2.0)
        for _ in range(100):
            estimator.add(0.2 if rng.random() < 0.05 else rng.uniform(0.008, 0.012))
        estimate = estimator.estimate()
        assert estimate is not None
        in_tail += estimate > 0.1
    assert in_tail <= 10  # about 2 % of the time; the exact quantile: about 40 %
