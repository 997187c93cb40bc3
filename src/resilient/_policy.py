"""What every policy shares: the decorator, `.call()` and the checks on what it wraps."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from resilient._validate import short_repr

__all__ = ("Policy", "ensure_async_callable", "is_async_callable")

P = ParamSpec("P")
T = TypeVar("T")

# On 3.12+ a plain function marked as a coroutine function can hand back the policy's own
# coroutine, saving one coroutine frame per call; 3.11 needs a real `async def` wrapper.
_markcoroutinefunction = getattr(inspect, "markcoroutinefunction", None)


def is_async_callable(fn: object) -> bool:
    """True for an `async def` function, or an object whose `__call__` is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def ensure_async_callable(fn: object, policy: str) -> None:
    """Raise TypeError unless `fn` is an `async def` function (or an object whose
    `__call__` is one). Done once, at decoration time."""
    if inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{policy} cannot decorate the async generator function {short_repr(fn)}; "
            "it decorates `async def` functions that return a value"
        )
    if is_async_callable(fn):
        return
    raise TypeError(
        f"{policy} decorates `async def` functions only, got {short_repr(fn)}; "
        "for a synchronous function, run it in a worker thread inside an async def"
    )


class Policy(ABC):
    """Base of every policy and of `Pipeline`: one engine, `_run`, and its faces.

    Subclasses implement `_run(fn, args, kwargs)`, the coroutine that runs one call.
    """

    # Policies are long-lived and shared; registries (health checks, dashboards) may hold
    # them weakly.
    __slots__ = ("__weakref__",)

    @abstractmethod
    def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Coroutine[Any, Any, T]:
        """Run `await fn(*args, **kwargs)` under this policy."""

    def call(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Run one call through the policy: `await policy.call(fn, *args, **kwargs)`."""
        return self._run(fn, args, kwargs)

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an `async def`; the decorated function keeps its signature.

        Raises:
            TypeError: `fn` is not an `async def` function.
        """
        ensure_async_callable(fn, type(self).__name__)
        run = self._run

        if _markcoroutinefunction is not None:

            def direct(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
                return run(fn, args, kwargs)

            wrapper = functools.wraps(fn)(direct)
            _markcoroutinefunction(wrapper)
            return wrapper

        async def awaiting(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run(fn, args, kwargs)

        return functools.wraps(fn)(awaiting)
