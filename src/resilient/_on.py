"""Which exceptions a policy handles: `on=` as exception types or a predicate.

Built once, at construction, into one plain function; the call path never inspects `on`
again. Only `Exception` instances ever reach the function: cancellation (`CancelledError`,
`trio.Cancelled`, `KeyboardInterrupt`, ...) is a `BaseException` and is never handled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from resilient._validate import short_repr
from resilient.exceptions import RejectedError

__all__ = ("ExceptionFilter", "On", "exception_filter")

#: What `on=` accepts: an exception type, a tuple of them, or a predicate.
On: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)

#: The built classifier: True when the policy handles the exception.
ExceptionFilter: TypeAlias = Callable[[Exception], bool]


def _is_exception_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Exception)


def exception_filter(on: object, *, retry_rejected: bool = True) -> ExceptionFilter:
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
        if retry_rejected:
            return _isinstance_of(types)
        rejected = tuple(t for t in types if issubclass(t, RejectedError))
        if not rejected:
            return _except_rejected(types)
        return _rejected_only_when_named(types, rejected)
    if callable(on):
        predicate: ExceptionFilter = on
        return predicate
    raise ValueError(
        "on must be an Exception subclass, a non-empty tuple of them, or a "
        f"predicate (exception) -> bool, got {short_repr(on)}"
    )


def _isinstance_of(types: tuple[type[BaseException], ...]) -> ExceptionFilter:
    def matches(exc: Exception) -> bool:
        return isinstance(exc, types)

    return matches


def _except_rejected(types: tuple[type[BaseException], ...]) -> ExceptionFilter:
    def matches(exc: Exception) -> bool:
        return isinstance(exc, types) and not isinstance(exc, RejectedError)

    return matches


def _rejected_only_when_named(
    types: tuple[type[BaseException], ...], rejected: tuple[type[BaseException], ...]
) -> ExceptionFilter:
    def matches(exc: Exception) -> bool:
        if isinstance(exc, RejectedError):
            return isinstance(exc, rejected)
        return isinstance(exc, types)

    return matches
