"""LoadSheddingMiddleware against a real uvicorn server on loopback, with httpx."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from asgi_servers import Gate, eventually, serve
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from resilient import AIMD
from resilient.asgi import LoadSheddingMiddleware, priority_from_header, priority_from_routes
from resilient.asgi._problem import retry_after_seconds
from resilient.load_shedding import current_priority

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn serves on asyncio; the client side runs there too


def starlette_app(gate: Gate, **options: Any) -> tuple[Starlette, list[LoadSheddingMiddleware]]:
    """A Starlette app whose /slow waits for the gate, behind the middleware."""

    async def slow(request: Request) -> PlainTextResponse:
        await gate.wait()
        return PlainTextResponse("slow")

    async def fast(request: Request) -> JSONResponse:
        return JSONResponse({"priority": current_priority()})

    async def upload(request: Request) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(str(len(body)))

    app = Starlette(
        routes=[
            Route("/slow", slow),
            Route("/fast", fast),
            Route("/health", fast),
            Route("/upload", upload, methods=["POST"]),
        ]
    )
    app.add_middleware(LoadSheddingMiddleware, **options)
    return app, _middlewares(app)


def _middlewares(app: Any) -> list[LoadSheddingMiddleware]:
    """The middleware instances the app builds (Starlette builds its stack lazily)."""
    found: list[LoadSheddingMiddleware] = []
    original = LoadSheddingMiddleware.__init__

    def keep(self: LoadSheddingMiddleware, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        found.append(self)

    app.middleware_stack = None
    LoadSheddingMiddleware.__init__ = keep  # type: ignore[method-assign]
    try:
        app.build_middleware_stack()
        app.middleware_stack = app.build_middleware_stack()
    finally:
        LoadSheddingMiddleware.__init__ = original  # type: ignore[method-assign]
    return found[-1:]


async def test_requests_within_the_limit_pass() -> None:
    gate = Gate()
    app, (middleware,) = starlette_app(gate, limit=2)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/fast")
            assert (response.status_code, response.json()) == (200, {"priority": 0})
            response = await client.post("/upload", content=b"x" * 100_000)
            assert response.text == "100000"
    assert middleware.shedder.in_flight == 0


async def test_over_the_limit_is_a_503_problem_with_retry_after() -> None:
    gate = Gate()
    app, (middleware,) = starlette_app(gate, limit=1)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            held = asyncio.create_task(client.get("/slow"))
            await eventually(lambda: gate.entered == 1)
            response = await client.get("/fast")
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "1"
            problem = response.json()
            assert problem["status"] == 503
            assert problem["title"] == "Service Unavailable"
            assert problem["type"] == "about:blank"
            assert "capacity" in problem["detail"]
            assert int(response.headers["content-length"]) == len(response.content)
            gate.open()
            assert (await held).text == "slow"
    assert middleware.shedder.in_flight == 0


async def test_queued_request_runs_when_a_slot_frees() -> None:
    gate = Gate()
    app, (middleware,) = starlette_app(gate, limit=1, max_waiting=1, max_wait=5.0)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            held = asyncio.create_task(client.get("/slow"))
            await eventually(lambda: gate.entered == 1)
            queued = asyncio.create_task(client.get("/fast"))
            await eventually(lambda: middleware.shedder.waiting == 1)
            assert (await client.get("/fast")).status_code == 503  # the queue is full
            gate.open()
            assert (await queued).status_code == 200
            await held
    assert (middleware.shedder.in_flight, middleware.shedder.waiting) == (0, 0)


async def test_exempt_paths_are_never_shed() -> None:
    gate = Gate()
    app, _ = starlette_app(gate, limit=1, exempt=("/health",))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            held = asyncio.create_task(client.get("/slow"))
            await eventually(lambda: gate.entered == 1)
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/fast")).status_code == 503
            gate.open()
            await held


async def test_priority_from_routes_reaches_the_app_and_orders_the_queue() -> None:
    gate = Gate()
    order: list[str] = []

    async def record(request: Request) -> PlainTextResponse:
        order.append(request.url.path)
        return PlainTextResponse(str(current_priority()))

    async def slow(request: Request) -> PlainTextResponse:
        await gate.wait()
        return PlainTextResponse("slow")

    app = Starlette(routes=[Route("/slow", slow), Route("/batch", record), Route("/pay", record)])
    app.add_middleware(
        LoadSheddingMiddleware,
        limit=1,
        max_waiting=4,
        priority=priority_from_routes({"/batch*": 2, "/pay": 0}),
    )
    (middleware,) = _middlewares(app)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            held = asyncio.create_task(client.get("/slow"))
            await eventually(lambda: gate.entered == 1)
            batch = asyncio.create_task(client.get("/batch"))
            await eventually(lambda: middleware.shedder.waiting == 1)
            pay = asyncio.create_task(client.get("/pay"))
            await eventually(lambda: middleware.shedder.waiting == 2)
            gate.open()
            assert (await pay).text == "0"
            assert (await batch).text == "2"
            await held
    assert order == ["/pay", "/batch"]


async def test_client_disconnecting_while_queued_leaves_the_queue_at_once() -> None:
    gate = Gate()
    app, (middleware,) = starlette_app(gate, limit=1, max_waiting=5)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            held = asyncio.create_task(client.get("/slow"))
            await eventually(lambda: gate.entered == 1)
            queued = asyncio.create_task(client.get("/fast"))
            await eventually(lambda: middleware.shedder.waiting == 1)
            queued.cancel()  # closes its connection
            await eventually(lambda: middleware.shedder.waiting == 0)
            assert middleware.shedder.in_flight == 1
            gate.open()
            await held
    assert middleware.shedder.in_flight == 0


async def test_client_disconnecting_while_running_frees_the_slot_at_once() -> None:
    gate = Gate()  # never opened: the handler would run forever
    app, (middleware,) = starlette_app(gate, limit=1)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            running = asyncio.create_task(client.get("/slow"))
            await eventually(lambda: middleware.shedder.in_flight == 1)
            running.cancel()
            await eventually(lambda: middleware.shedder.in_flight == 0)
            assert (await client.get("/fast")).status_code == 200
        gate.open()


async def test_a_thousand_requests_with_random_cancellation_leave_nothing_in_flight() -> None:
    async def work(request: Request) -> PlainTextResponse:
        await asyncio.sleep(random.uniform(0.0, 0.05))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/work", work)])
    app.add_middleware(
        LoadSheddingMiddleware, limit=50, max_waiting=200, max_wait=2.0, priority=lambda s: 1
    )
    (middleware,) = _middlewares(app)
    rng = random.Random(11)
    statuses: list[int] = []
    with serve(app) as url:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

            async def one() -> None:
                statuses.append((await client.get("/work")).status_code)

            tasks = [asyncio.create_task(one()) for _ in range(1000)]
            for task in rng.sample(tasks, 300):
                asyncio.get_running_loop().call_later(rng.uniform(0.0, 0.3), task.cancel)
            await asyncio.gather(*tasks, return_exceptions=True)
        await eventually(
            lambda: (middleware.shedder.in_flight, middleware.shedder.waiting) == (0, 0)
        )
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) > 0


async def test_adaptive_limit_grows_on_success_and_backs_off_on_the_apps_503() -> None:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def overloaded(request: Request) -> PlainTextResponse:
        return PlainTextResponse("busy", status_code=503)

    app = Starlette(routes=[Route("/ok", ok), Route("/busy", overloaded)])
    app.add_middleware(LoadSheddingMiddleware, limit=AIMD(initial_limit=10, min_limit=1))
    (middleware,) = _middlewares(app)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/busy")).status_code == 503
            # The request is settled just after its response went out.
            await eventually(lambda: middleware.shedder.limit == 9)  # a drop: int(10 * 0.9)
            assert (await client.get("/ok")).status_code == 200
            await eventually(lambda: middleware.shedder.in_flight == 0)
            assert middleware.shedder.limit == 9  # 1 in flight of 9: no growth


async def test_works_with_fastapi_add_middleware_and_a_priority_header() -> None:
    app = FastAPI()

    @app.get("/level")
    async def level() -> dict[str, int]:
        return {"level": current_priority()}

    app.add_middleware(
        LoadSheddingMiddleware,
        limit=4,
        priority=priority_from_header("x-criticality", values={"critical": 0, "batch": 3}),
    )
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/level", headers={"X-Criticality": "batch"})
            assert response.json() == {"level": 3}
            assert (await client.get("/level")).json() == {"level": 0}


async def test_lifespan_passes_through_to_the_app() -> None:
    started: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    started.append("up")
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with serve(LoadSheddingMiddleware(app, limit=1), lifespan="on") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/")).status_code == 204
    assert started == ["up"]


async def test_websocket_scopes_reach_the_app_untouched() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    middleware = LoadSheddingMiddleware(app, limit=1)
    scope = {"type": "websocket", "path": "/ws", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None: ...

    async with middleware.shedder:  # the limit is taken: a websocket is still not shed
        await middleware(scope, receive, send)
    assert seen == [(scope, receive, send)]


def test_priority_helpers_read_headers_and_routes() -> None:
    by_number = priority_from_header("X-Priority", default=1)
    assert by_number({"headers": [(b"x-priority", b"2")]}) == 2
    assert by_number({"headers": [(b"x-priority", b"high")]}) == 1
    assert by_number({"headers": []}) == 1
    by_name = priority_from_header("x-c", values={"critical": 0, "batch": 2}, default=1)
    assert by_name({"headers": [(b"x-c", b"batch")]}) == 2
    assert by_name({"headers": [(b"x-c", b"other")]}) == 1
    routes = priority_from_routes({"/api/reports/*": 2, "/api/*": 1}, default=0)
    assert routes({"path": "/api/reports/9/pdf"}) == 2
    assert routes({"path": "/api/users"}) == 1
    assert routes({"path": "/"}) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"max_waiting": -1}, "max_waiting"),
        ({"max_wait": -1.0}, "max_wait"),
        ({"priority": 3}, "priority"),
        ({"exempt": "/health"}, "exempt"),
        ({"exempt": ("health",)}, "exempt"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None: ...

    with pytest.raises(ValueError, match=field):
        LoadSheddingMiddleware(app, **kwargs)


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after_seconds(None) == 1
    assert retry_after_seconds(0.02) == 1
    assert retry_after_seconds(2.1) == 3


async def test_the_sweeper_watches_requests_still_running_after_a_sweep() -> None:
    # Driven by hand: each sweep() is what the timer does every 50 ms.
    from resilient.asgi._load_shedding import _Exchange, _Sweeper

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    never: asyncio.Future[Any] = loop.create_future()

    async def receive() -> dict[str, Any]:
        return await never  # type: ignore[no-any-return]

    async def send(message: dict[str, Any]) -> None:
        pass

    before = asyncio.all_tasks()
    sweeper = _Sweeper(loop)
    quick, slow, reading = (_Exchange(receive, send, task) for _ in range(3))
    for exchange in (quick, slow, reading):
        sweeper.add(exchange)
    quick.finish()  # answered before any sweep: gone at once, never watched
    assert sweeper.younger == {slow, reading}
    reading.app_receiving = True  # the app is reading the server itself
    sweeper.sweep()  # the first sweep only ages them
    assert not slow.watching
    sweeper.sweep()
    assert slow.watching
    assert not reading.watching  # not while the app reads: looked at again next sweep
    assert (sweeper.older, sweeper.younger) == ({reading}, set())
    reading.app_receiving = False
    sweeper.sweep()
    assert reading.watching
    assert (sweeper.older, sweeper.younger) == (set(), set())
    assert sweeper.handle is None  # nothing left to sweep: no timer
    assert not quick.watching
    for exchange in (slow, reading):
        exchange.finish()  # stops their watchers
    for _ in range(3):  # their cancellations land
        await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()
