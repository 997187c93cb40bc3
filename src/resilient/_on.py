"""Which exceptions a policy handles: `on=` as exception types or a predicate.

Built once, at construction, into one plain function; the call path never inspects `on`
again. Only `Exception` instances ever reach the function: cancellation (`CancelledError`,
`trio.Cancelled`, `KeyboardInterrupt`, ...) is a `BaseException` and is never handled.

Exception groups (a call that fans out with a task group) follow one rule in every policy
that takes `on=` (Retry, CircuitBreaker, Fallback):

- a group matches `on` when the group itself matches, or when every exception in it
  matches (nested groups likewise): `on=ConnectionError` matches
  `ExceptionGroup([ConnectionError(), ConnectionError()])`, not one that also holds a
  `KeyError`;
- a group that holds a cancellation (or any other `BaseException` that is not an
  `Exception`) is not an `Exception`, so it is treated as a cancellation: never retried,
  never counted as a failure, never replaced by a fallback;
- a group that holds a `RejectedError` is treated as a rejection: `Retry` retries it only
  when `on` names `RejectedError` (or the subclasses it holds), as it would a bare one.

A predicate sees the group first, then each member.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeAlias

from resilient._validate import short_repr
from resilient.exceptions import RejectedError

__all__ = ("Classifier", "On", "exception_filter")

#: What `on=` accepts: an exception type, a tuple of them, or a predicate.
On: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)

#: The built classifier: True when the policy handles the exception.
Classifier: TypeAlias = Callable[[Exception], bool]


def _is_exception_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Exception)


def exception_filter(on: object, *, retry_rejected: bool = True) -> Classifier:
    """Validate `on` and build the function that applies it.

    Args:
        on: an `Exception` subclass, a non-empty tuple of them, or a predicate
            `(exception) -> bool`.
        retry_rejected: `False` (Retry) leaves a `RejectedError` unhandled unless `on` names
            `RejectedError` or one of its subclasses; a predicate always decides for itself.

    Raises:
        ValueError: `on` is none of the above (naming the field and the value).
    """
    if isinstance(on, type | tuple):
        types = on if isinstance(on, tuple) else (on,)
        if not types or not all(_is_exception_type(t) for t in types):
            raise ValueError(
                "on must be an Exception subclass, a non-empty tuple of them, or a "
                f"predicate (exception) -> bool, got {short_repr(on)}"
            )
        return _type_filter(types, retry_rejected)
    if callable(on):
        return _looking_into_groups(on, rejection_aware=False)
    raise ValueError(
        "on must be an Exception subclass, a non-empty tuple of them, or a "
        f"predicate (exception) -> bool, got {short_repr(on)}"
    )


# A filter on exception types holds no state: policies given the same `on` (most take the
# default, `Exception`) share one, rather than each holding its own closures.
@functools.lru_cache(maxsize=256)
def _type_filter(types: tuple[type[BaseException], ...], retry_rejected: bool) -> Classifier:
    if retry_rejected:
        return _looking_into_groups(_isinstance_of(types), rejection_aware=False)
    rejected = tuple(t for t in types if issubclass(t, RejectedError))
    if not rejected:
        return _looking_into_groups(_except_rejected(types), rejection_aware=True)
    return _looking_into_groups(_rejected_only_when_named(types, rejected), rejection_aware=True)


def _holds_rejection(group: BaseExceptionGroup[BaseException]) -> bool:
    return any(
        _holds_rejection(exc)
        if isinstance(exc, BaseExceptionGroup)
        else isinstance(exc, RejectedError)
        for exc in group.exceptions
    )


def _looking_into_groups(
    matches_one: Callable[[Exception], bool], *, rejection_aware: bool
) -> Classifier:
    """Apply the rule for exception groups on top of `matches_one`.

    A group matches when the group itself matches, or when every exception in it matches
    (nested groups likewise). With `rejection_aware` (Retry's type filters), a group that
    holds a `RejectedError` anywhere is a rejection: it is judged by its members only, so
    `on=Exception` does not retry a rejection just because it came wrapped in a group.
    """

    def matches(exc: Exception) -> bool:
        if not isinstance(exc, BaseExceptionGroup):
            return matches_one(exc)
        if matches_one(exc) and not (rejection_aware and _holds_rejection(exc)):
            return True
        # Only an ExceptionGroup gets here (a group holding a BaseException is not an
        # Exception), so every member is an Exception.
        return all(matches(member) for member in exc.exceptions)  # type: ignore[arg-type]

    return matches


def _isinstance_of(types: tuple[type[BaseException], ...]) -> Classifier:
    def matches(exc: Exception) -> bool:
        return isinstance(exc, types)

    return matches


def _except_rejected(types: tuple[type[BaseException], ...]) -> Classifier:
    def matches(exc: Exception) -> bool:
        return isinstance(exc, types) and not isinstance(exc, RejectedError)

    return matches


def _rejected_only_when_named(
    types: tuple[type[BaseException], ...], rejected: tuple[type[BaseException], ...]
) -> Classifier:
    def matches(exc: Exception) -> bool:
        if isinstance(exc, RejectedError):
            return isinstance(exc, rejected)
        return isinstance(exc, types)

    return matches
