"""What every policy shares: the decorator, `.call()` and the checks on what it wraps."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from resilient._validate import short_repr

__all__ = ("Policy", "ensure_async_callable", "is_async_callable")

P = ParamSpec("P")
T = TypeVar("T")


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


class Policy:
    """Base of every policy and of `Pipeline`: one engine, `_bind`, and its faces.

    Subclasses implement `_bind(fn)`: an `async def (*args, **kwargs)` that runs `fn` under
    the policy (or `_run(fn, args, kwargs)`, the coroutine of one call, and inherit
    `_bind`). The decorator is that function itself, one coroutine per call whatever the
    Python version; `.call()` and the Pipeline stages build on it. A policy may override
    both, so that `.call()` builds no function per call.
    """

    # Policies are long-lived and shared; registries (health checks, dashboards) may hold
    # them weakly.
    __slots__ = ("__weakref__",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls._bind is Policy._bind and cls._run is Policy._run:
            raise TypeError(f"{cls.__name__} must implement _bind(fn) or _run(fn, args, kwargs)")

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        """An `async def (*args, **kwargs)` that runs `await fn(*args, **kwargs)` under this
        policy (by default, through `_run`)."""
        run = self._run

        async def bound(*args: Any, **kwargs: Any) -> T:
            return await run(fn, args, kwargs)

        return bound

    def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Coroutine[Any, Any, T]:
        """Run `await fn(*args, **kwargs)` under this policy (by default, through `_bind`)."""
        return self._bind(fn)(*args, **kwargs)

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
        return functools.wraps(fn)(self._bind(fn))
