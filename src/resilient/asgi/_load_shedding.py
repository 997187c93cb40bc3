"""LoadSheddingMiddleware: a LoadShedder around each HTTP request of an ASGI app."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Final

import anyio

from resilient._admission import WAIT
from resilient._backend import (
    OneShotEvent,
    asyncio_loop,
    current_task,
    one_shot_event,
    trio_module,
)
from resilient._validate import short_repr
from resilient.asgi._paths import ExemptPaths
from resilient.asgi._problem import retry_after_seconds, send_problem
from resilient.asgi._types import ASGIApp, Message, Receive, Scope, Send
from resilient.exceptions import LoadShedError
from resilient.load_shedding._limits import AdaptiveLimit
from resilient.load_shedding._priority import priority_var
from resilient.load_shedding._shedder import LoadShedder
from resilient.telemetry._core import QUIET

__all__ = ("LoadSheddingMiddleware",)

#: How many priority levels the middleware's shedder tells apart when `priority` is given;
#: a request's level past the last counts as the last.
PRIORITY_LEVELS: Final = 16
#: How long, in seconds, a request admitted at once runs before a task watches its client
#: (a quick request costs no task at all).
_WATCH_AFTER: Final = 0.05
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
    """One request on its way through the middleware: it watches the client while the
    request waits or runs, and cancels the request when the client leaves before the
    response is complete, so that the request frees its place at once instead of working
    for nobody.

    A watcher is a task of its own that reads the request's messages ahead of the app,
    one at a time (the next only once the app took the last, so a large body is not
    buffered), and hands them on. It starts at once for a request that has to queue, and
    only `_WATCH_AFTER` to twice that seconds in for one admitted at once, so that a quick
    request costs no task at all. Until then the app reads the server's messages
    directly; while it does, it watches the client itself.

    `target` is what a leaving client cancels: the request's asyncio task, or an anyio
    cancel scope around the request. The watcher's state is made only when it starts.
    """

    __slots__ = (
        "_arrived",
        "_inbox",
        "_receive",
        "_send",
        "_stop",
        "_taken",
        "app_receiving",
        "cancelled",
        "cohort",
        "finished",
        "responded",
        "status",
        "target",
        "watching",
    )

    def __init__(
        self, receive: Receive, send: Send, target: asyncio.Task[Any] | anyio.CancelScope
    ) -> None:
        self._receive = receive
        self._send = send
        self.target = target
        self.cancelled = self.responded = self.finished = False
        self.watching = self.app_receiving = False
        self.status = 0
        self.cohort: set[_Exchange] | None = None  # the _Sweeper generation it is in

    def start_watching(self) -> bool:
        """Start the watcher; False when the app is waiting on the server itself (it will
        see a disconnect: look again later)."""
        if self.watching or self.responded or self.finished:
            return True
        if self.app_receiving:
            return False
        self._inbox: deque[Message] = deque()
        self._arrived: OneShotEvent | None = None
        self._taken: OneShotEvent | None = None
        self.watching = True
        self._stop: Callable[[], object] | None = _spawn(self._watch)
        return True

    def finish(self) -> None:
        """The request is over: no more watching."""
        self.finished = True
        cohort = self.cohort
        if cohort is not None:
            cohort.discard(self)
        if self.watching and self._stop is not None:
            self._stop()
            self._stop = None

    def _leave(self) -> None:
        if self.responded or self.finished:
            return
        target = self.target
        if isinstance(target, asyncio.Task) and target.cancelling():
            return  # already being cancelled, by someone else: it ends anyway
        self.cancelled = True
        target.cancel()

    def _deliver(self, message: Message) -> None:
        self._inbox.append(message)
        arrived = self._arrived
        if arrived is not None:
            self._arrived = None
            arrived.set()

    async def _watch(self) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._deliver(message)
                    self._leave()
                    return
                while self._inbox:
                    taken = self._taken = one_shot_event()
                    await taken.wait()
                self._deliver(message)
        except Exception:
            # The server's receive failed: end the request as a disconnect would.
            self._deliver({"type": "http.disconnect"})
            self._leave()

    async def receive(self) -> Message:
        if not self.watching:
            self.app_receiving = True
            try:
                return await self._receive()
            finally:
                self.app_receiving = False
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

    def send(self, message: Message) -> Awaitable[None]:
        # Not a coroutine of its own: the server's send, once the message is noted (every
        # response passes here twice or more, and a coroutine per message adds up).
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.responded = True
        return self._send(message)


class _Sweeper:
    """The requests admitted at once on one event loop, in two generations: every
    `_WATCH_AFTER` seconds while any run, one timer starts the watchers of the older
    generation's requests and makes the younger one the older. A request costs a set
    insertion and a removal when it ends (a timer, or a clock reading, per request would
    cost more than the quick requests it spares), and an ended one is not kept alive."""

    __slots__ = ("handle", "loop", "older", "younger")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.younger: set[_Exchange] = set()
        self.older: set[_Exchange] = set()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, exchange: _Exchange) -> None:
        younger = exchange.cohort = self.younger
        younger.add(exchange)
        if self.handle is None:
            self.handle = self.loop.call_later(_WATCH_AFTER, self.sweep)

    def sweep(self) -> None:
        self.handle = None
        younger = self.younger
        for exchange in self.older:
            if exchange.start_watching():
                exchange.cohort = None
            else:  # the app is reading the server itself: look again later
                exchange.cohort = younger
                younger.add(exchange)
        self.older, self.younger = younger, set()
        if younger:
            self.handle = self.loop.call_later(_WATCH_AFTER, self.sweep)


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
    the request is cancelled (one that runs is watched once it has run 50 to 100 ms, so that quick
    requests pay for no watcher; one that waits, from the start). Works with
    `app.add_middleware(LoadSheddingMiddleware, ...)` in Starlette and FastAPI, or by
    wrapping any ASGI app. The shedder is `.shedder`.

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

    __slots__ = ("_exempt", "_priority", "_sweeper", "app", "shedder")

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
        paths = ExemptPaths(exempt)
        self._exempt = paths if paths else None
        self.app = app
        self.shedder = LoadShedder(
            limit,
            max_waiting=max_waiting,
            max_wait=max_wait,
            priority_levels=1 if priority is None else PRIORITY_LEVELS,
            name="asgi",
        )
        self._priority = priority
        self._sweeper: _Sweeper | None = None

    def __repr__(self) -> str:
        return f"LoadSheddingMiddleware({self.app!r}, shedder={self.shedder!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exempt = self._exempt
        if exempt is not None and scope in exempt:
            await self.app(scope, receive, send)
            return
        token = None
        rank = self._priority
        if rank is not None:
            level = rank(scope)
            if not isinstance(level, int) or level < 0:
                raise ValueError(f"priority(scope) must return a whole number >= 0, got {level!r}")
            token = priority_var.set(level)
        try:
            loop = asyncio_loop()
            if loop is None:
                await self._serve_anyio(scope, receive, send)
                return
            # asyncio, written out: this is every request's path.
            task = current_task(loop)
            assert task is not None
            exchange = _Exchange(receive, send, task)
            sweeper = self._sweeper
            if sweeper is None or sweeper.loop is not loop:
                sweeper = self._sweeper = _Sweeper(loop)
            try:
                await self._admit_and_run(scope, exchange, sweeper)
            except asyncio.CancelledError:
                # Cancelled because the client left: the request ends here, quietly,
                # unless someone else asked for cancellation too.
                if exchange.cancelled and task.uncancel() == 0:
                    return
                raise
            finally:
                exchange.finish()
            if exchange.cancelled:
                task.uncancel()  # the app swallowed the cancellation: take it back
        finally:
            if token is not None:
                priority_var.reset(token)

    async def _serve_anyio(self, scope: Scope, receive: Receive, send: Send) -> None:
        cancel_scope = anyio.CancelScope()
        exchange = _Exchange(receive, send, cancel_scope)
        exchange.start_watching()
        try:
            with cancel_scope:
                await self._admit_and_run(scope, exchange, None)
        finally:
            exchange.finish()

    async def _admit_and_run(
        self, scope: Scope, exchange: _Exchange, sweeper: _Sweeper | None
    ) -> None:
        shedder = self.shedder
        if not shedder._telemetry.quiet():
            await self._admit_and_run_recorded(scope, exchange, sweeper)
            return
        # The admission hooks themselves (see resilient._admission): nothing records this
        # request, so no record and no per-task state.
        ticket = shedder._admit()
        if ticket is WAIT:
            exchange.start_watching()  # it may queue: watch the client from the start
            try:
                ticket = await shedder._wait(QUIET)
            except LoadShedError as error:
                exchange.finish()
                await _refuse(exchange.send, error)
                return
        elif sweeper is not None:
            sweeper.add(exchange)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException as exc:
            shedder._settle(ticket, exc)
            raise
        # A 503 from the app itself is a drop, for an adaptive limit.
        shedder._settle(ticket, _APP_OVERLOADED if exchange.status == 503 else None)

    async def _admit_and_run_recorded(
        self, scope: Scope, exchange: _Exchange, sweeper: _Sweeper | None
    ) -> None:
        shedder = self.shedder
        if shedder.in_flight >= shedder.limit:
            exchange.start_watching()
        elif sweeper is not None:
            sweeper.add(exchange)
        try:
            await shedder.__aenter__()
        except LoadShedError as error:
            exchange.finish()
            await _refuse(exchange.send, error)
            return
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException as exc:
            await shedder.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if exchange.status == 503:
            await shedder.__aexit__(LoadShedError, _APP_OVERLOADED, None)
        else:
            await shedder.__aexit__(None, None, None)


async def _refuse(send: Send, error: LoadShedError) -> None:
    seconds = retry_after_seconds(error.retry_after)
    await send_problem(
        send,
        503,
        detail=f"The service is at capacity ({error.reason}); retry after {seconds} s.",
        retry_after=seconds,
    )
