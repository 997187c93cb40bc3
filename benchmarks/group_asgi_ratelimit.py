"""Group asgi_ratelimit: requests per second of a healthy app behind `RateLimitMiddleware`
(in memory and on Redis), against the same app without it and behind slowapi (in memory
and on Redis), on real uvicorn servers, in one run.

Each case is the same Starlette app (one route answering a short text) served by uvicorn in
a process of its own on loopback; the limits are far above what the run sends, so every
request is admitted and the cost measured is the limiter's on a healthy app, headers
included (slowapi with `headers_enabled=True`, as the middleware always writes its fields).
The client is one httpx `AsyncClient` per case driven by `CONCURRENCY` tasks; rounds of
short turns in a new random order, as in the httpx group, and the ratios are the medians of
the per-round ratios. Goals: the middleware in memory at least 0.95x the bare app; on
Redis at least 1.0x slowapi on Redis (as time per request: <= 1/0.95 and <= 1.0).

Redis: as in the redis group (`REDIS_URL`, else a `redis-server` started for the run).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _harness import (
    GoalResult,
    GroupResult,
    Settings,
    drive_gets,
    stop_server,
    wait_until_serving,
)

CONCURRENCY = 4
SLICES = 8
#: Far above what the run sends: every request is admitted.
RATE = 10_000_000

BARE_APP = "Starlette app, no limiter"
OURS_MEMORY = "resilient RateLimitMiddleware (memory)"
OURS_REDIS = "resilient RateLimitMiddleware (RedisStore)"
SLOWAPI_MEMORY = "slowapi (memory://)"
SLOWAPI_REDIS = "slowapi (redis://)"
CASES = {
    "bare": BARE_APP,
    "memory": OURS_MEMORY,
    "redis": OURS_REDIS,
    "slowapi-memory": SLOWAPI_MEMORY,
    "slowapi-redis": SLOWAPI_REDIS,
}
NEEDS_REDIS = {"redis", "slowapi-redis"}


def build_app(case: str, redis_url: str) -> Any:
    """The benchmark's app for `case` (run in the server process)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/ok", ok)])
    if case in ("memory", "redis"):
        from resilient import RateLimiter
        from resilient.asgi import RateLimitMiddleware
        from resilient.storage import RedisStore

        store = RedisStore(redis_url, prefix=f"bench-{os.getpid()}") if case == "redis" else None
        app.add_middleware(
            RateLimitMiddleware, limiters=RateLimiter(RATE, store=store, name="bench")
        )
    elif case.startswith("slowapi"):
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.util import get_remote_address

        try:  # the pure-ASGI middleware of recent slowapi, else the BaseHTTPMiddleware one
            from slowapi.middleware import SlowAPIASGIMiddleware as SlowAPIMiddleware
        except ImportError:
            from slowapi.middleware import SlowAPIMiddleware  # type: ignore[assignment]

        storage = redis_url if case == "slowapi-redis" else "memory://"
        limiter = Limiter(
            key_func=get_remote_address,
            default_limits=[f"{RATE}/second"],
            storage_uri=storage,
            headers_enabled=True,
        )
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        app.add_middleware(SlowAPIMiddleware)
    return app


def _serve(case: str, port: int, redis_url: str) -> None:
    import uvicorn

    uvicorn.run(
        build_app(case, redis_url),
        host="127.0.0.1",
        port=port,
        log_level="critical",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
    )


class _Server:
    def __init__(self, case: str, redis_url: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        here = Path(__file__).resolve().parent
        self.proc = subprocess.Popen(
            [sys.executable, str(here / "group_asgi_ratelimit.py"), "--serve", case,
             str(self.port), redis_url],
            cwd=here,
            env={**os.environ, "PYTHONPATH": str(here)},
        )  # fmt: skip
        try:
            wait_until_serving(self.proc, self.port, f"the {case} server", timeout=30)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_server(self.proc)


async def _drive(client: Any, calls: int) -> tuple[float, int]:
    """`calls` GETs of /ok from CONCURRENCY tasks: (seconds, calls answered 200)."""
    return await drive_gets(client, "/ok", calls, CONCURRENCY)


def _available() -> tuple[list[str], list[str]]:
    cases = ["bare", "memory", "redis"]
    skipped = []
    try:
        import slowapi  # noqa: F401

        cases += ["slowapi-memory", "slowapi-redis"]
    except ImportError:
        skipped.append("slowapi: not installed (the bench dependency group)")
    return cases, skipped


def run(settings: Settings) -> GroupResult:
    from group_redis import _redis_server

    cases, skipped = _available()
    rounds = 3 if settings.quick else 15
    calls = 160 if settings.quick else 800
    with _redis_server() as found:
        if found is None:
            if os.environ.get("CI"):
                raise RuntimeError("no Redis for the asgi_ratelimit group, and CI is set")
            skipped += [f"{CASES[c]}: no Redis" for c in cases if c in NEEDS_REDIS]
            cases = [c for c in cases if c not in NEEDS_REDIS]
            redis_url = "redis://127.0.0.1:1/0"
        else:
            redis_url = found[0]
        servers: dict[str, _Server] = {}
        try:
            for case in cases:
                servers[case] = _Server(case, redis_url)
            per_request, statuses = asyncio.run(_measure(servers, rounds, calls, settings.seed))
        finally:
            for server in servers.values():
                server.stop()

    def paired(name: str, versus: str) -> float | None:
        if name not in per_request or versus not in per_request:
            return None
        pairs = zip(per_request[name], per_request[versus], strict=True)
        return statistics.median(ours / theirs for ours, theirs in pairs)

    medians = {name: statistics.median(times) for name, times in per_request.items()}
    rows = []
    for case in cases:
        vs_bare = paired(case, "bare")
        rows.append(
            [
                CASES[case],
                f"{1 / medians[case]:,.0f}",
                f"{1 / vs_bare:.3f}x" if vs_bare else "",
                f"{statuses[case]:.1%}",
            ]
        )
    goals = [
        GoalResult(
            "asgi_ratelimit",
            "RateLimitMiddleware (memory) req/s >= 0.95x the bare app (time per request <= 1/0.95)",
            paired("memory", "bare"),
            1 / 0.95,
        ),
        GoalResult(
            "asgi_ratelimit",
            "RateLimitMiddleware (Redis) req/s >= 1.0x slowapi on Redis (time per request <= 1.0)",
            paired("redis", "slowapi-redis"),
            1.0,
        ),
    ]
    return GroupResult(
        "asgi_ratelimit",
        "ASGI rate limiting on a healthy app, real uvicorn servers",
        ["case", "req/s", "req/s vs bare app (paired)", "answered 200"],
        rows,
        goals=goals,
        skipped=skipped,
        intro=f"One uvicorn server per case, each in a process of its own on loopback, the "
        f"same Starlette app; {CONCURRENCY} tasks share one httpx AsyncClient per case. "
        f"{calls:,} GETs per round, {rounds} rounds of {SLICES} short turns per case in a "
        "new random order each turn; req/s is the median over rounds, the ratio the median "
        f"of the per-round ratios. Limits of {RATE:,}/s: every request is admitted, so this "
        "is the limiter's cost on a healthy app (fields and headers included).",
    )


async def _measure(
    servers: dict[str, _Server], rounds: int, calls: int, seed: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    import httpx

    clients = {case: httpx.AsyncClient(base_url=server.url) for case, server in servers.items()}
    per_request: dict[str, list[float]] = {case: [] for case in servers}
    answered: dict[str, list[int]] = {case: [] for case in servers}
    try:
        for client in clients.values():  # warm the pools and the servers
            await _drive(client, CONCURRENCY * 25)
        order = list(clients)
        rng = random.Random(seed)
        for _ in range(rounds):
            seconds = dict.fromkeys(clients, 0.0)
            for _ in range(SLICES):
                rng.shuffle(order)
                for case in order:
                    spent, ok = await _drive(clients[case], calls // SLICES)
                    seconds[case] += spent
                    answered[case].append(ok)
            for case in clients:
                per_request[case].append(seconds[case] / calls)
    finally:
        for client in clients.values():
            await client.aclose()
    share = {case: sum(oks) / (len(oks) * (calls // SLICES)) for case, oks in answered.items()}
    return per_request, share


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
