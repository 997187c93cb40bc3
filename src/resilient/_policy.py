"""What every policy shares: the decorator, `.call()` and the checks on what it wraps."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from types import FunctionType
from typing import Any, ParamSpec, Self, TypeVar

from resilient._validate import short_repr

__all__ = ("Policy", "ensure_async_callable", "given_arguments", "is_async_callable")

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


@functools.lru_cache(maxsize=64)
def _defaults(init: Callable[..., object]) -> dict[str, object]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(init).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def given_arguments(init: Callable[..., object], arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments constructor `init` was given other than its defaults, from its
    `locals()` taken on its first line: what `Policy._replicate` builds a copy from. Most
    policies take their defaults, and then keep one shared empty dict."""
    defaults = _defaults(init)
    given = {
        k: v
        for k, v in arguments.items()
        if k != "self" and not k.startswith("__") and (k not in defaults or defaults[k] is not v)
    }
    return given or _NOTHING_GIVEN


_NOTHING_GIVEN: dict[str, Any] = {}

#: How many functions' bound engines a policy keeps for `.call()`.
_MAX_BOUND = 256


class Policy:
    """Base of every policy and of `Pipeline`: one engine, `_bind`, and its faces.

    Subclasses implement `_bind(fn)`: an `async def (*args, **kwargs)` that runs `fn` under
    the policy (or `_run(fn, args, kwargs)`, the coroutine of one call, and inherit
    `_bind`). The decorator is that function itself, one coroutine per call whatever the
    Python version; `.call()` and the Pipeline stages build on it. A policy may override
    both, so that `.call()` builds no function per call.
    """

    # Policies are long-lived and shared; registries (health checks, dashboards) may hold
    # them weakly. `_bound_fns` is `_run`'s cache of engines bound to plain functions.
    __slots__ = ("__weakref__", "_bound_fns")

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
        """Run `await fn(*args, **kwargs)` under this policy (by default, through `_bind`).

        The engine bound to a plain function that captures nothing (a module-level
        `async def`, the usual `policy.call(fetch, url)`) is kept, up to `_MAX_BOUND` of
        them, so that `.call()` costs what the decorator does; any other callable (a
        closure, a lambda over locals, a bound method) is bound afresh each time, so
        that nothing a caller made is kept alive by the policy.
        """
        if type(fn) is not FunctionType or fn.__closure__ is not None:
            return self._bind(fn)(*args, **kwargs)
        try:
            bound = self._bound_fns.get(fn)
        except AttributeError:  # the first call: the cache is made on demand
            self._bound_fns: dict[Callable[..., Any], Callable[..., Any]] = {}
            bound = None
        if bound is None:
            bound = self._bind(fn)
            if len(self._bound_fns) < _MAX_BOUND:
                self._bound_fns[fn] = bound
        return bound(*args, **kwargs)

    def _replicate(self, name: str, **overrides: Any) -> Self:
        """A new policy with this one's settings (but `overrides`) and fresh state, named
        `name`: the per-key copy of a template (a breaker per upstream host).

        Raises:
            TypeError: this kind of policy keeps no settings to copy.
        """
        given: dict[str, Any] | None = getattr(self, "_given", None)
        if given is None:
            raise TypeError(f"{type(self).__name__} cannot be copied from a template")
        return type(self)(**{**given, **overrides, "name": name})

    def call(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Run one call through the policy: `await policy.call(fn, *args, **kwargs)`.

        For a plain `async def` that captures nothing (a module-level function), the
        policy keeps what it built for `fn` (up to 256 functions), so a call costs what
        the decorated function does; a closure, lambda or bound method is wrapped afresh
        each time and never kept alive by the policy.
        """
        return self._run(fn, args, kwargs)

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an `async def`; the decorated function keeps its signature.

        Raises:
            TypeError: `fn` is not an `async def` function.
        """
        ensure_async_callable(fn, type(self).__name__)
        return functools.wraps(fn)(self._bind(fn))
