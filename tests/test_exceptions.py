from __future__ import annotations

import pickle

import pytest

import resilient
from resilient import (
    BulkheadFullError,
    CircuitOpenError,
    LoadShedError,
    RateLimitedError,
    RejectedError,
    ResilienceError,
    StorageUnavailableError,
    ThrottledError,
    TimeoutExceeded,
)


@pytest.mark.parametrize(
    "cls", [CircuitOpenError, BulkheadFullError, RateLimitedError, LoadShedError, ThrottledError]
)
def test_every_rejection_is_a_rejected_error(cls: type[RejectedError]) -> None:
    error = cls("no", policy="payments", retry_after=1.5)
    assert isinstance(error, RejectedError)
    assert isinstance(error, ResilienceError)
    assert (error.policy, error.retry_after) == ("payments", 1.5)


def test_timeout_exceeded_is_also_a_builtin_timeout_error() -> None:
    error = TimeoutExceeded("late", timeout=2.0)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, ResilienceError)
    assert not isinstance(error, RejectedError)


def test_storage_unavailable_is_a_resilience_error() -> None:
    assert issubclass(StorageUnavailableError, ResilienceError)


@pytest.mark.parametrize(
    "error",
    [
        RateLimitedError("slow down", policy="api", retry_after=0.25),
        CircuitOpenError("open", policy="db", retry_after=None),
        TimeoutExceeded("late", timeout=3.0),
    ],
)
def test_exceptions_survive_pickling_with_their_context(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_the_docstring_tree_names_every_exception() -> None:
    doc = resilient.exceptions.__doc__ or ""
    for name in resilient.exceptions.__all__:
        assert name in doc
