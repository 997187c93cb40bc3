"""resilient in one minute: the same workload against a flaky upstream, through a plain
httpx client and through `ResilientTransport`, side by side.

`make demo` runs it. A local upstream (uvicorn on a free loopback port, in this process)
misbehaves on a schedule: random 5xx and latency spikes, a spell of 429s with
`Retry-After`, a full outage, then recovery. Two clients send it the same open-loop
workload at the same time (calls start on schedule whether or not earlier ones finished):
one a plain `httpx.AsyncClient`, one with `ResilientTransport` (retries with backoff and a
retry budget, a circuit breaker per host, attempt and total timeouts, a rate limiter).
At the end, a table compares what each client's callers got and what the upstream had to
serve.

Options: `--duration SECONDS` (default 24), `--rate CALLS_PER_SECOND` per client (default
40), `--seed N`, `--redis URL` (keep the limiter's and the breaker's state on Redis, as
a fleet of processes would). Run `python examples/demo.py --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from resilient import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    RateLimiter,
    RejectedError,
    Retry,
)
from resilient.httpx import ResilientTransport

CLIENTS = ("plain httpx", "ResilientTransport")
#: How long a caller waits for an answer at most, whichever client it uses.
CALL_DEADLINE = 2.0
SPIKE = 3.0  # seconds a latency spike lasts: longer than any caller waits

# -- the upstream -------------------------------------------------------------------------

#: The schedule, as (phase, start as a fraction of the run).
PHASES = (("flaky", 0.0), ("rate limited", 0.3), ("outage", 0.45), ("recovered", 0.6))


@dataclass
class Upstream:
    """A server that misbehaves on schedule, counting the requests of each client."""

    duration: float
    rng: random.Random
    started: float = 0.0
    received: Counter[str] = field(default_factory=Counter)

    def phase(self) -> str:
        elapsed = (time.monotonic() - self.started) / self.duration
        return [name for name, start in PHASES if elapsed >= start][-1]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        self.received[headers.get(b"x-demo-client", b"?").decode()] += 1
        status, extra, delay = self.misbehave(self.phase())
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": b"{}"})

    def misbehave(self, phase: str) -> tuple[int, list[tuple[bytes, bytes]], float]:
        draw = self.rng.random()
        if phase == "outage":
            return 503, [], 0.0
        if phase == "rate limited" and draw < 0.3:
            return 429, [(b"retry-after", b"1")], 0.0
        if phase in ("flaky", "recovered") and draw < 0.25:
            return self.rng.choice((500, 502, 503)), [], 0.0
        if draw > 0.95:
            return 200, [], SPIKE
        return 200, [], 0.0


def serve(app: Upstream) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, log_level="critical", lifespan="off", backlog=4096)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, url


# -- the clients --------------------------------------------------------------------------


@dataclass
class Tally:
    """What one client's callers got."""

    ok: list[float] = field(default_factory=list)  # latencies of successful calls
    failed: Counter[str] = field(default_factory=Counter)
    fast_failures: list[float] = field(default_factory=list)  # rejected without going out

    @property
    def calls(self) -> int:
        return len(self.ok) + sum(self.failed.values())


async def one_call(get: Callable[[], Awaitable[httpx.Response]], tally: Tally) -> None:
    started = time.monotonic()
    try:
        async with asyncio.timeout(CALL_DEADLINE):
            response = await get()
    except RejectedError as exc:
        if isinstance(exc, CircuitOpenError):
            tally.fast_failures.append(time.monotonic() - started)
        tally.failed[type(exc).__name__] += 1
        return
    except TimeoutError:
        tally.failed["timed out"] += 1
        return
    except httpx.HTTPError as exc:
        tally.failed[type(exc).__name__] += 1
        return
    if response.status_code == 200:
        tally.ok.append(time.monotonic() - started)
    else:
        tally.failed[f"HTTP {response.status_code}"] += 1


def resilient_transport(store: Any) -> ResilientTransport:
    return ResilientTransport(
        retry=Retry(attempts=4, backoff=Backoff(initial=0.05, max_delay=1.0)),
        breaker=CircuitBreaker(
            failure_ratio=0.5,
            minimum_calls=20,
            window=2.0,
            break_duration=0.5,
            max_break_duration=2.0,
            store=store,
        ),
        limiter=RateLimiter(200, burst=100, max_wait=0.5, store=store),
        timeout=CALL_DEADLINE,
        attempt_timeout=0.5,
    )


async def workload(url: str, args: argparse.Namespace, upstream: Upstream) -> dict[str, Tally]:
    store = None
    if args.redis:
        from resilient.storage import RedisStore

        # A prefix of its own: a fleet shares one, but each demo run starts afresh.
        store = RedisStore(args.redis, prefix=f"resilient-demo-{uuid.uuid4().hex[:8]}")
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    clients = {
        CLIENTS[0]: httpx.AsyncClient(base_url=url, timeout=CALL_DEADLINE, limits=limits),
        CLIENTS[1]: httpx.AsyncClient(
            base_url=url,
            transport=resilient_transport(store),
            headers={"x-demo-client": CLIENTS[1]},
        ),
    }
    clients[CLIENTS[0]].headers["x-demo-client"] = CLIENTS[0]
    tallies = {name: Tally() for name in CLIENTS}
    tasks: set[asyncio.Task[None]] = set()
    upstream.started = start = time.monotonic()
    progress = Progress(tallies, upstream, args.duration)
    try:
        calls = int(args.duration * args.rate)
        for n in range(calls):
            await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
            for name, client in clients.items():
                get = lambda client=client, n=n: client.get(f"/orders/{n}")  # noqa: E731
                task = asyncio.create_task(one_call(get, tallies[name]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            progress.tick()
        await asyncio.gather(*tasks)
        progress.done()
    finally:
        for client in clients.values():
            await client.aclose()
        if store is not None:
            await store.aclose()
    return tallies


class Progress:
    """A status line while the run goes on (one line per phase when not on a terminal)."""

    def __init__(self, tallies: dict[str, Tally], upstream: Upstream, duration: float) -> None:
        self.tallies, self.upstream, self.duration = tallies, upstream, duration
        self.live = sys.stdout.isatty()
        self.last = 0.0
        self.phase = ""

    def line(self) -> str:
        elapsed = time.monotonic() - self.upstream.started
        parts = [f"{elapsed:5.1f}s / {self.duration:.0f}s  {self.upstream.phase():<13}"]
        for name, tally in self.tallies.items():
            parts.append(f"{name}: {len(tally.ok):>5} ok {sum(tally.failed.values()):>5} failed")
        return "  |  ".join(parts)

    def tick(self) -> None:
        now = time.monotonic()
        phase = self.upstream.phase()
        if self.live and now - self.last >= 0.2:
            print("\r" + self.line(), end="", flush=True)
            self.last = now
        elif not self.live and phase != self.phase:
            print(f"upstream phase: {phase}", flush=True)
        self.phase = phase

    def done(self) -> None:
        if self.live:
            print("\r" + self.line(), flush=True)


# -- the comparison -----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(tallies: dict[str, Tally], upstream: Upstream) -> None:
    rows: list[tuple[str, ...]] = []

    def row(label: str, cell: Callable[[str, Tally], str]) -> None:
        rows.append((label, *(cell(name, tallies[name]) for name in CLIENTS)))

    row("calls", lambda _, t: f"{t.calls:,}")
    row("succeeded", lambda _, t: f"{len(t.ok):,} ({len(t.ok) / max(t.calls, 1):.1%})")
    row("p50 latency of successes", lambda _, t: f"{percentile(t.ok, 0.5) * 1000:,.1f} ms")
    row("p99 latency of successes", lambda _, t: f"{percentile(t.ok, 0.99) * 1000:,.1f} ms")
    row("requests the upstream got", lambda n, _: f"{upstream.received[n]:,}")
    row(
        "upstream requests per call",
        lambda n, t: f"{upstream.received[n] / max(t.calls, 1):.2f}",
    )
    row(
        "failed fast (breaker open)",
        lambda _, t: f"{len(t.fast_failures):,} calls" if t.fast_failures else "-",
    )
    row(
        "time each fast failure took",
        lambda _, t: (
            f"{statistics.fmean(t.fast_failures) * 1000:.2f} ms" if t.fast_failures else "-"
        ),
    )
    for reason in sorted({r for t in tallies.values() for r in t.failed}):
        row(
            f"  failed: {reason}", lambda _, t, r=reason: f"{t.failed[r]:,}" if t.failed[r] else "-"
        )
    header = ("", *CLIENTS)
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(3)]
    print()
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    print()
    print(
        "ResilientTransport retried the 5xx and the attempts a latency spike held up (each\n"
        "attempt is cut at 0.5 s), waited as long as each 429's Retry-After asked (every call\n"
        "to the host paused until then), and once the upstream went down its breaker failed\n"
        "calls at once instead of sending them, while its retry budget kept the upstream's\n"
        "load within a fifth or so over the calls made. The plain client sent every call\n"
        "once and passed every failure on to its callers."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=24.0, help="seconds of workload (default 24)"
    )
    parser.add_argument(
        "--rate", type=float, default=40.0, help="calls per second from each client (default 40)"
    )
    parser.add_argument("--seed", type=int, default=7, help="the upstream's random seed")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="keep the limiter's and breaker's state on this Redis (e.g. redis://localhost:6379/0)",
    )
    args = parser.parse_args()
    upstream = Upstream(args.duration, random.Random(args.seed))
    server, thread, url = serve(upstream)
    print(
        f"upstream on {url}: {args.rate:g} calls/s from each client for {args.duration:g}s; "
        f"phases: {', '.join(name for name, _ in PHASES)}"
        + (f"; breaker and limiter on {args.redis}" if args.redis else "")
    )
    try:
        tallies = asyncio.run(workload(url, args, upstream))
    finally:
        server.should_exit = True
        thread.join(10)
    report(tallies, upstream)


if __name__ == "__main__":
    main()
