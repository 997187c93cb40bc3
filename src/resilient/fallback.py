"""Fallback: answer with a substitute when the call fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

from resilient._on import On, exception_filter
from resilient._policy import Policy, is_async_callable
from resilient._validate import check_bool, check_name, short_repr
from resilient.telemetry._core import CallRecord, PolicyTelemetry, outcome_of
from resilient.telemetry._spec import ATTR_ERROR_TYPE, EventSpec

__all__ = ("Fallback",)

T = TypeVar("T")

#: The fallback answered instead of the call (`error.type`: what the call raised).
USED: Final = EventSpec("resilient.fallback.used")


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()


class Fallback(Policy):
    """Return a substitute when the call fails with an exception `on` matches.

    Args:
        value: the substitute result (any value, `None` included). Give exactly one of
            `value` and `handler`.
        handler: an `async def` taking the exception and returning the substitute, for
            answers that depend on the error or need I/O (a cache, a default profile).
        on: what to fall back on: an `Exception` subclass, a tuple of them, or a predicate
            `(exception) -> bool` (default `Exception`, which includes `RejectedError`:
            an open breaker or a full bulkhead is a good reason to fall back).
            Cancellation is never caught.
        name: names the policy in telemetry (default `"fallback"`).
        telemetry: `False` silences this policy's spans and metrics.

    Raises:
        ValueError: neither or both of `value` and `handler`, or a bad `on` or `name`.
        TypeError: `handler` is not an `async` callable.

    An exception `on` does not match, or one raised by `handler`, propagates unchanged.

    Examples:
        ```python
        @Fallback(value=[])
        async def recommendations(user_id: int) -> list[str]: ...

        async def cached_profile(exc: Exception) -> dict:
            return await cache.get("profile-default")

        profile = await Fallback(handler=cached_profile, on=ConnectionError).call(fetch_profile)
        ```
    """

    __slots__ = ("_handler", "_matches", "_telemetry", "_value", "name", "on")

    def __init__(
        self,
        value: Any = _UNSET,
        *,
        handler: Callable[[Exception], Awaitable[Any]] | None = None,
        on: On = Exception,
        name: str | None = None,
        telemetry: bool = True,
    ) -> None:
        if (value is _UNSET) == (handler is None):
            both = f"both (value={short_repr(value)}, handler={short_repr(handler)})"
            raise ValueError(
                "give exactly one of value and handler, got "
                + ("neither" if handler is None else both)
            )
        if handler is not None and not is_async_callable(handler):
            raise TypeError(
                "handler must be an async callable (exception) -> result, "
                f"got {short_repr(handler)}"
            )
        self._value = value
        self._handler = handler
        self._matches = exception_filter(on)
        self.on = on
        self.name = check_name(name, "fallback")
        self._telemetry = PolicyTelemetry(
            "fallback", self.name, enabled=check_bool("telemetry", telemetry)
        )

    def __repr__(self) -> str:
        what = f"handler={self._handler!r}" if self._handler is not None else repr(self._value)
        return f"Fallback({what}, name={self.name!r})"

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        fallback, start = self, self._telemetry.start
        matches, recover_recorded = self._matches, self._recover_recorded

        async def bound(*args: Any, **kwargs: Any) -> T:
            record = start()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                # Recovered inside the except block: an error of the handler (or of the
                # predicate) chains to `exc`.
                if record is not None:
                    recovered: T = await recover_recorded(exc, record)
                    return recovered
                if not matches(exc):
                    raise
                handler = fallback._handler
                if handler is None:
                    value: T = fallback._value
                    return value
                return await handler(exc)  # type: ignore[no-any-return]  # the handler's result stands in for T
            except BaseException as exc:
                if record is not None:
                    record.end("cancelled", exc)
                raise
            if record is not None:
                record.end("success")
            return result

        return bound

    async def _recover_recorded(self, exc: Exception, record: CallRecord) -> Any:
        """The call raised `exc`, and is recorded: recover as the decorator does, and report
        how it went."""
        try:
            matched = self._matches(exc)
        except BaseException as raised:
            record.end(outcome_of(raised), raised)
            raise
        if not matched:
            record.end("failure", exc)
            raise exc
        record.event(USED, {ATTR_ERROR_TYPE: type(exc).__qualname__})
        handler = self._handler
        if handler is None:
            record.end("fallback")
            return self._value
        try:
            value = await handler(exc)
        except BaseException as handler_exc:
            record.end(outcome_of(handler_exc), handler_exc)
            raise
        record.end("fallback")
        return value
