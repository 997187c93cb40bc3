"""LoadSheddingMiddleware: a LoadShedder around each HTTP request of an ASGI app."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final

import anyio

from resilient._backend import OneShotEvent, asyncio_loop, one_shot_event, trio_module
from resilient._validate import short_repr
from resilient.asgi._problem import retry_after_seconds, send_problem
from resilient.asgi._types import ASGIApp, Message, Receive, Scope, Send
from resilient.exceptions import LoadShedError
from resilient.load_shedding._limits import AdaptiveLimit
from resilient.load_shedding._priority import priority_var
from resilient.load_shedding._shedder import LoadShedder

__all__ = ("LoadSheddingMiddleware",)

#: How many priority levels the middleware's shedder tells apart when `priority` is given;
#: a request's level past the last counts as the last.
PRIORITY_LEVELS: Final = 16
#: How a 503 from the app itself is settled: as a call turned away further down.
_APP_OVERLOADED: Final = LoadShedError("the app answered 503", policy="app", reason="limit")


def _spawn(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], object]:
    """Run `fn` as a task of its own beside the request; return what stops it.

    A request must not run inside a task group of ours (its errors would reach the server
    wrapped in an exception group), so the watcher is a task of its own: an asyncio task,
    or a trio system task in a cancel scope.
    """
    loop = asyncio_loop()
    if loop is not None:
        return loop.create_task(fn()).cancel
    trio = trio_module()
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await fn()

    trio.lowlevel.spawn_system_task(run)
    cancel: Callable[[], object] = scope.cancel
    return cancel


class _Exchange:
    """One admitted (or queued) request: it watches the client while the app runs.

    A watcher reads the request's messages ahead of the app, one at a time (it reads the
    next only once the app took the last, so a large body is not buffered), and hands
    them on; when the client disconnects before the response is complete it cancels the
    request, so that a queued request leaves the queue and a running one frees its slot
    at once instead of working for nobody.
    """

    __slots__ = (
        "_arrived",
        "_inbox",
        "_receive",
        "_send",
        "_taken",
        "cancel_scope",
        "responded",
        "status",
    )

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.cancel_scope = anyio.CancelScope()
        self.responded = False
        self.status = 0
        self._inbox: deque[Message] = deque()
        self._arrived: OneShotEvent | None = None
        self._taken: OneShotEvent | None = None

    def _deliver(self, message: Message) -> None:
        self._inbox.append(message)
        arrived = self._arrived
        if arrived is not None:
            self._arrived = None
            arrived.set()

    async def watch(self) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    if not self.responded:
                        self.cancel_scope.cancel()
                    self._deliver(message)
                    return
                while self._inbox:
                    taken = self._taken = one_shot_event()
                    await taken.wait()
                self._deliver(message)
        except Exception:
            # The server's receive failed: end the request as a disconnect would.
            self._deliver({"type": "http.disconnect"})
            if not self.responded:
                self.cancel_scope.cancel()

    async def receive(self) -> Message:
        inbox = self._inbox
        while not inbox:
            arrived = self._arrived = one_shot_event()
            await arrived.wait()
        message = inbox.popleft()
        taken = self._taken
        if taken is not None:
            self._taken = None
            taken.set()
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.responded = True
        await self._send(message)


class LoadSheddingMiddleware:
    """Shed HTTP requests a service cannot serve in time: a `LoadShedder` around each one,
    and a 503 for the rest, at once.

    Args:
        app: the ASGI app to protect.
        limit: how many requests may run at once: a whole number (default 100) or an
            adaptive limit (`resilient.AIMD(...)`, `resilient.Gradient2(...)`), which learns
            it from the round trips of the requests it admits (a request answered 503 by
            the app counts as dropped).
        max_waiting: how many requests may wait for a slot (default 0: refuse at once).
        max_wait: how long, in seconds, a request may wait before it is refused unrun
            (default `None`: no limit of its own).
        priority: `priority(scope) -> int`, each request's level: 0 is the most important
            (the default for every request when `priority` is `None`); the first 16 levels
            are told apart, higher ones count as the 16th. See `priority_from_header` and
            `priority_from_routes`. The level is set with
            `resilient.load_shedding.priority` for the whole request, so shedders inside
            the app see it too.
        exempt: paths never shed, e.g. `("/livez", "/readyz")`; an entry also covers the
            paths under it (`"/health"` covers `/health/ready`).

    A refusal is a 503 with `Retry-After` (whole seconds, at least 1) and an RFC 9457
    `application/problem+json` body. Lifespan and websocket scopes pass through untouched.
    A client that disconnects while its request waits or runs frees its place at once:
    the request is cancelled. Works with `app.add_middleware(LoadSheddingMiddleware, ...)`
    in Starlette and FastAPI, or by wrapping any ASGI app. The shedder is `.shedder`.

    Examples:
        ```python
        from resilient.asgi import LoadSheddingMiddleware, priority_from_routes

        app.add_middleware(
            LoadSheddingMiddleware,
            limit=64,
            max_waiting=32,
            max_wait=0.1,
            priority=priority_from_routes({"/api/recommendations*": 1}),
            exempt=("/livez", "/readyz"),
        )
        ```
    """

    __slots__ = ("_exempt", "_prefixes", "_priority", "app", "shedder")

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int | AdaptiveLimit = 100,
        max_waiting: int = 0,
        max_wait: float | None = None,
        priority: Callable[[Scope], int] | None = None,
        exempt: Iterable[str] = (),
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be an ASGI app, got {short_repr(app)}")
        if priority is not None and not callable(priority):
            raise ValueError(
                f"priority must be a function of the scope or None, got {short_repr(priority)}"
            )
        if isinstance(exempt, str):
            raise ValueError(f"exempt must be a collection of paths, got {short_repr(exempt)}")
        paths = tuple(exempt)
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"exempt paths must start with '/', got {short_repr(path)}")
        self.app = app
        self.shedder = LoadShedder(
            limit,
            max_waiting=max_waiting,
            max_wait=max_wait,
            priority_levels=1 if priority is None else PRIORITY_LEVELS,
            name="asgi",
        )
        self._priority = priority
        self._exempt = frozenset(path.rstrip("/") or "/" for path in paths)
        self._prefixes = tuple(path.rstrip("/") + "/" for path in paths)

    def __repr__(self) -> str:
        return f"LoadSheddingMiddleware({self.app!r}, shedder={self.shedder!r})"

    def _is_exempt(self, path: str) -> bool:
        return path in self._exempt or path.startswith(self._prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self._exempt and self._is_exempt(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        rank = self._priority
        if rank is None:
            await self._serve(scope, receive, send)
            return
        level = rank(scope)
        if not isinstance(level, int) or level < 0:
            raise ValueError(f"priority(scope) must return a whole number >= 0, got {level!r}")
        token = priority_var.set(level)
        try:
            await self._serve(scope, receive, send)
        finally:
            priority_var.reset(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        shedder = self.shedder
        exchange = _Exchange(receive, send)
        stop_watching = _spawn(exchange.watch)
        try:
            with exchange.cancel_scope:
                try:
                    await shedder.__aenter__()
                except LoadShedError as error:
                    stop_watching()
                    await _refuse(send, error)
                    return
                try:
                    await self.app(scope, exchange.receive, exchange.send)
                except BaseException as exc:
                    await shedder.__aexit__(type(exc), exc, exc.__traceback__)
                    raise
                if exchange.status == 503:
                    # The app itself is overloaded: a drop, for an adaptive limit.
                    await shedder.__aexit__(LoadShedError, _APP_OVERLOADED, None)
                else:
                    await shedder.__aexit__(None, None, None)
        finally:
            stop_watching()


async def _refuse(send: Send, error: LoadShedError) -> None:
    seconds = retry_after_seconds(error.retry_after)
    await send_problem(
        send,
        503,
        detail=f"The service is at capacity ({error.reason}); retry after {seconds} s.",
        retry_after=seconds,
    )
