"""Group httpx: ResilientTransport against plain httpx and httpx-retries, on a real server.

One local uvicorn server, started in a process of its own, serves two paths: `/ok` always
answers 200, `/flaky` answers 503 to 30 % of requests at random. Each case is an
`httpx.AsyncClient` over its transport, driven by `CONCURRENCY` tasks:

- healthy upstream: requests per second through each transport, rounds interleaved, the
  median taken; goals: ResilientTransport at least 0.95x plain httpx and at least 1.0x
  httpx-retries (expressed as time per request, so a ratio <= 1.053 and <= 1.0);
- flaky upstream: the share of client calls that end in a 200, for each transport, with 3
  attempts in all for both retrying transports.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
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

# Four tasks: on loopback, more only queue in httpx's pool and the server (fewer req/s).
CONCURRENCY = 4
SLICES = 8
FAILURE_RATE = 0.3
PLAIN = "httpx.AsyncHTTPTransport (plain)"
OURS = "resilient ResilientTransport (default stack)"
PEER = "httpx-retries RetryTransport (3 attempts)"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The upstream: 200 on /ok, 503 on 30 % of /flaky."""
    if scope["type"] != "http":
        return
    failing = scope["path"] == "/flaky" and random.random() < FAILURE_RATE
    status = 503 if failing else 200
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        "group_httpx:app",
        host="127.0.0.1",
        port=port,
        log_level="critical",
        access_log=False,
        lifespan="off",
    )


class _Server:
    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        here = Path(__file__).resolve().parent
        self.proc = subprocess.Popen(
            [sys.executable, str(here / "group_httpx.py"), "--serve", str(self.port)],
            cwd=here,
            env={**os.environ, "PYTHONPATH": str(here)},
        )
        try:
            wait_until_serving(self.proc, self.port, "the benchmark's upstream server", timeout=20)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_server(self.proc)


def _transports() -> tuple[dict[str, Callable[[], Any]], list[str]]:
    import httpx

    cases: dict[str, Callable[[], Any]] = {PLAIN: httpx.AsyncHTTPTransport}
    skipped: list[str] = []
    try:
        from resilient.httpx import ResilientTransport

        cases[OURS] = ResilientTransport
    except ImportError as exc:
        skipped.append(f"{OURS}: skipped, import failed ({exc})")
    try:
        from httpx_retries import Retry, RetryTransport

        cases[PEER] = lambda: RetryTransport(retry=Retry(total=2, backoff_factor=0.1))
    except ImportError:
        skipped.append(f"{PEER}: not installed (the bench dependency group)")
    return cases, skipped


async def _drive(client: Any, path: str, calls: int) -> tuple[float, int]:
    """`calls` GETs of `path` from CONCURRENCY tasks: (seconds, calls answered 200); the
    flaky upstream's failures count as not answered."""
    return await drive_gets(client, path, calls, CONCURRENCY, tolerate_errors=True)


def run(settings: Settings) -> GroupResult:
    import httpx

    cases, skipped = _transports()
    rounds = 3 if settings.quick else 21
    healthy_calls = 200 if settings.quick else 400
    flaky_calls = 200 if settings.quick else 2_000
    server = _Server()
    per_request: dict[str, list[float]] = {name: [] for name in cases}
    cpu_per_request: dict[str, list[float]] = {name: [] for name in cases}
    success: dict[str, float] = {}

    async def main() -> None:
        clients = {
            name: httpx.AsyncClient(transport=build(), base_url=server.url)
            for name, build in cases.items()
        }
        try:
            for client in clients.values():  # warm the pools
                await _drive(client, "/ok", CONCURRENCY * 5)
            order = list(clients)
            rng = random.Random(settings.seed)
            for _ in range(rounds):
                # A round is SLICES short turns per case, in a new order each turn, so that
                # a shared machine's drift falls on every case alike.
                seconds = dict.fromkeys(clients, 0.0)
                cpu = dict.fromkeys(clients, 0.0)
                for _ in range(SLICES):
                    rng.shuffle(order)
                    for name in order:
                        started = time.process_time()
                        spent, _ = await _drive(clients[name], "/ok", healthy_calls // SLICES)
                        cpu[name] += time.process_time() - started
                        seconds[name] += spent
                for name in clients:
                    per_request[name].append(seconds[name] / healthy_calls)
                    cpu_per_request[name].append(cpu[name] / healthy_calls)
            for name, client in clients.items():
                _, ok = await _drive(client, "/flaky", flaky_calls)
                success[name] = ok / flaky_calls
        finally:
            for client in clients.values():
                await client.aclose()

    try:
        asyncio.run(main())
    finally:
        server.stop()

    medians = {name: statistics.median(times) for name, times in per_request.items()}

    def paired(name: str, versus: str) -> float:
        # The median of the per-round ratios: both cases of a round ran back to back, so
        # the drift of a shared machine between rounds cancels out.
        pairs = zip(per_request[name], per_request[versus], strict=True)
        return statistics.median(ours / theirs for ours, theirs in pairs)

    rows = [
        [
            name,
            f"{1 / medians[name]:,.0f}",
            f"{paired(name, PLAIN):.3f}",
            f"{statistics.median(cpu_per_request[name]) * 1e6:,.0f}",
            f"{success[name]:.1%}",
        ]
        for name in cases
    ]
    goals: list[GoalResult] = []
    if OURS in medians:
        goals.append(
            GoalResult(
                "httpx",
                "ResilientTransport req/s >= 0.95x plain httpx (time per request <= 1/0.95)",
                paired(OURS, PLAIN),
                1 / 0.95,
            )
        )
        if PEER in medians:
            goals.append(
                GoalResult(
                    "httpx",
                    "ResilientTransport req/s >= 1.0x httpx-retries (time per request <= 1.0)",
                    paired(OURS, PEER),
                    1.0,
                )
            )
    return GroupResult(
        "httpx",
        "httpx transports on a local uvicorn server",
        [
            "case",
            "healthy req/s",
            "time/request vs plain (paired)",
            "client CPU µs/request",
            f"flaky: calls ok ({FAILURE_RATE:.0%} 503)",
        ],
        rows,
        goals=goals,
        skipped=skipped,
        intro=f"A uvicorn server in a process of its own on loopback; {CONCURRENCY} tasks share "
        f"one AsyncClient per transport. Healthy: {healthy_calls:,} GETs per round, "
        f"{rounds} rounds of {SLICES} short turns per case, in a new random order each turn; "
        "req/s is the median over rounds, the ratio the median of the per-round ratios. "
        f"Flaky: {flaky_calls:,} GETs to a path "
        f"that answers 503 to {FAILURE_RATE:.0%} of requests at random; the share of "
        "client calls that ended in a 200. Plain httpx makes one attempt; both retrying "
        "transports make at most 3 (ResilientTransport also within its retry budget: 20 % "
        "of calls plus 10 retries/s).",
    )


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(int(sys.argv[2]))
