"""A policy used as a template is copied with its settings and a state of its own."""

from __future__ import annotations

import pytest

from resilient import Bulkhead, CircuitBreaker, RateLimiter, Retry


def test_a_breaker_copy_keeps_the_settings_and_takes_the_name() -> None:
    template = CircuitBreaker("t", failure_ratio=0.3, minimum_calls=4, break_duration=2.0)
    template.force_open()
    copy = template._replicate("api.example.com")
    assert copy.name == "api.example.com"
    assert copy._core.failure_ratio == 0.3
    assert copy._core.minimum_calls == 4
    assert copy.state == "closed"  # fresh state


def test_a_copy_may_override_settings() -> None:
    copy = CircuitBreaker()._replicate("h", minimum_calls=2)
    assert copy._core.minimum_calls == 2


def test_bulkhead_and_limiter_copies() -> None:
    bulkhead = Bulkhead(3, max_waiting=2)._replicate("h")
    assert (bulkhead.max_concurrent, bulkhead.max_waiting, bulkhead.name) == (3, 2, "h")
    limiter = RateLimiter(5, burst=2, max_wait=1.0)._replicate("h")
    assert (limiter.rate, limiter.burst, limiter.max_wait, limiter.name) == (5, 2, 1.0, "h")


def test_a_policy_that_keeps_no_settings_is_no_template() -> None:
    with pytest.raises(TypeError, match="Retry cannot be copied"):
        Retry()._replicate("h")


def test_policies_built_with_defaults_share_one_empty_record() -> None:
    assert CircuitBreaker()._given is CircuitBreaker()._given
