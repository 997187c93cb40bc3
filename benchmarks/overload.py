"""Overload: a real uvicorn app offered three times its capacity, with and without shedding.

The app's handler has a fixed capacity: a semaphore of 8 around a 20 ms await, so it serves
at most 400 requests per second, 8 at a time. A load generator on loopback offers 3x that,
open loop (each request starts on schedule, whether or not earlier ones finished), for a
bounded time; a client gives up on a request after 1 s. Each case runs in a fresh server
process:

- no shedding: the app alone; requests queue on its semaphore;
- static limit: `LoadSheddingMiddleware(limit=8)`, the true capacity, no queue;
- static limit with load leveling: the same, with a queue of 8 and `max_wait` of 10 ms;
- AIMD and Gradient2: adaptive limits, learning the capacity from round trips.

Reported per case: goodput (successes per second within the 1 s client deadline), p50 and
p99 latency of the successful requests, the share shed (503), and the limit over time.
Goals (reported, not asserted): with shedding, goodput >= 90 % of capacity and p99 <= 2x the
unloaded p99; the adaptive limits settle within 25 % of the true capacity (8); on a healthy
app (answering at once) the middleware costs at most 5 % of requests per second, measured
as server CPU per request (the rate a CPU-bound server sustains is its inverse) on a
Starlette app and on a bare ASGI handler, in alternating rounds.

Usage (from the repository root; `make overload` installs what it needs and runs it):

    python benchmarks/overload.py                # every case, 10 s each (about 2 minutes)
    python benchmarks/overload.py --quick        # 1.5 s each, for smoke tests
    python benchmarks/overload.py --write-docs   # also draw docs/img/overload.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import stop_server, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "docs" / "img" / "overload.png"

CAPACITY_CONCURRENCY = 8
SERVICE_TIME = 0.020
CAPACITY = CAPACITY_CONCURRENCY / SERVICE_TIME  # requests per second
OVERLOAD = 3.0
CLIENT_DEADLINE = 1.0
BUCKET = 0.5  # seconds per point of the time series


# -- the server side (runs in a process of its own) -------------------------------------------


def starlette_app(shed: bool) -> Any:
    """A healthy Starlette app, one route answering at once, with the middleware or not."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from resilient.asgi import LoadSheddingMiddleware

    async def work(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/work", work)])
    if shed:
        app.add_middleware(LoadSheddingMiddleware, limit=100)
    return app


def build_app(case: str) -> Any:
    """The app under test: a fixed-capacity handler, behind the middleware for `case`."""
    from resilient import AIMD, Gradient2
    from resilient.asgi import LoadSheddingMiddleware

    if case.startswith("starlette"):
        return starlette_app(shed=case == "starlette-shed")

    semaphore = asyncio.Semaphore(CAPACITY_CONCURRENCY)
    healthy = case.startswith("healthy")

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["path"] == "/_limit":
            body = json.dumps(state()).encode()
        elif healthy:
            body = b"ok"
        else:
            async with semaphore:
                await asyncio.sleep(SERVICE_TIME)
            body = b"ok"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    middleware: LoadSheddingMiddleware | None = None
    if case in ("static", "healthy-shed"):
        middleware = LoadSheddingMiddleware(
            handler, limit=CAPACITY_CONCURRENCY if case == "static" else 100, exempt=("/_limit",)
        )
    elif case == "leveled":
        # Load leveling: a short queue keeps the slots busy between arrivals; a request
        # that cannot start within half a service time is refused unrun.
        middleware = LoadSheddingMiddleware(
            handler,
            limit=CAPACITY_CONCURRENCY,
            max_waiting=CAPACITY_CONCURRENCY,
            max_wait=SERVICE_TIME / 2,
            exempt=("/_limit",),
        )
    elif case == "aimd":
        # timeout: a round trip 1.25x the service time counts as a drop (Netflix's default
        # of 5 s suits services whose normal latency is far below it, not a 20 ms one);
        # per round trip, the limit settles in a narrow band instead of swinging.
        limit = AIMD(min_limit=1, timeout=1.25 * SERVICE_TIME, per_round_trip=True)
        middleware = LoadSheddingMiddleware(handler, limit=limit, exempt=("/_limit",))
    elif case == "gradient2":
        # No latency tolerance and a queue allowance of one: the limit settles at
        # capacity + 1 (Netflix's 1.5 and 4 would settle at 1.5x capacity + 4 = 16).
        gradient = Gradient2(min_limit=1, rtt_tolerance=1.0, queue_size=1)
        middleware = LoadSheddingMiddleware(handler, limit=gradient, exempt=("/_limit",))

    def state() -> dict[str, int]:
        if middleware is None:
            return {"limit": 0, "in_flight": 0}
        return {"limit": middleware.shedder.limit, "in_flight": middleware.shedder.in_flight}

    return middleware if middleware is not None else handler


def serve(case: str, port: int) -> None:
    import uvicorn

    _raise_file_limit()
    uvicorn.run(
        build_app(case),
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
        backlog=4096,
        lifespan="off",
        loop="uvloop" if _uvloop() is not None else "asyncio",
    )


def _uvloop() -> Any:
    """uvloop when installed (the bench group has it), for the server and the load
    generator alike: both then spend less of the machine on the event loop itself."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def _raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process for one case."""

    def __init__(self, case: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", case, "--port", str(self.port)],
            cwd=ROOT,
        )
        try:
            wait_until_serving(self.proc, self.port, f"the {case} server", timeout=20)
        except RuntimeError:
            self.stop()
            raise

    def cpu(self) -> float:
        """CPU seconds the server process has used (user and system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop_server(self.proc)


# -- the client side -----------------------------------------------------------------------------


class Client:
    """A minimal HTTP/1.1 client on keep-alive connections: a connection is reused when its
    response came back in time, and closed when the client gave up on it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return status, body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


@dataclass
class Sample:
    at: float  # scheduled start, seconds since the run began
    latency: float | None  # None: no answer within the client deadline
    status: int  # 0: timed out or failed
    lag: float  # how late the generator sent it, in seconds


@dataclass
class Run:
    case: str
    seconds: float
    rate: float
    samples: list[Sample] = field(default_factory=list)
    limits: list[tuple[float, int]] = field(default_factory=list)


async def open_loop(case: str, port: int, rate: float, seconds: float) -> Run:
    """Offer `rate` requests per second for `seconds`, each on schedule."""
    client = Client(port)
    probe = Client(port)
    run = Run(case, seconds, rate)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    launched = asyncio.Event()

    async def one(at: float) -> None:
        # Latency counts from the scheduled start, so a generator that falls behind shows
        # (no coordinated omission); `lag` says by how much it did.
        began = start + at
        lag = loop.time() - began
        try:
            async with asyncio.timeout(CLIENT_DEADLINE - lag):
                status, _ = await client.get("/work")
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            run.samples.append(Sample(at, None, 0, lag))
            return
        run.samples.append(Sample(at, loop.time() - began, status, lag))

    def launch(at: float) -> None:
        tasks.append(loop.create_task(one(at)))
        if len(tasks) == total:
            launched.set()

    for i in range(total):
        at = i / rate
        loop.call_at(start + at, launch, at)

    async def watch_limit() -> None:
        while loop.time() < start + seconds + CLIENT_DEADLINE:
            await asyncio.sleep(0.1)
            try:
                status, body = await probe.get("/_limit")
            except (OSError, asyncio.IncompleteReadError):
                continue
            if status == 200:
                run.limits.append((loop.time() - start, json.loads(body)["limit"]))

    watcher = loop.create_task(watch_limit())
    await launched.wait()
    await asyncio.gather(*tasks)
    await watcher
    client.close()
    probe.close()
    return run


async def closed_loop(server: Server, connections: int, seconds: float) -> tuple[float, float]:
    """Requests per second that `connections` back-to-back callers get through, and the
    server's CPU time per request, in seconds."""
    clients = [Client(server.port) for _ in range(connections)]
    done = 0
    stop = time.monotonic() + seconds

    async def caller(client: Client) -> None:
        nonlocal done
        while time.monotonic() < stop:
            await client.get("/work")
            done += 1

    await asyncio.gather(*(caller(c) for c in clients[:4]))  # warm up the connections
    done = 0
    stop = time.monotonic() + seconds
    began, cpu = time.monotonic(), server.cpu()
    await asyncio.gather(*(caller(c) for c in clients))
    elapsed, cpu = time.monotonic() - began, server.cpu() - cpu
    for client in clients:
        client.close()
    return done / elapsed, cpu / max(1, done)


# -- analysis ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Summary:
    case: str
    goodput: float
    p50: float | None
    p99: float | None
    shed: float
    timed_out: float
    settled_limit: float | None
    lag_p99: float | None


def summarise(run: Run, *, warmup: float) -> Summary:
    window = [s for s in run.samples if s.at >= warmup]
    span = run.seconds - warmup
    good = [s.latency for s in window if s.status == 200 and s.latency is not None]
    settled = [limit for at, limit in run.limits if at >= run.seconds / 2 and limit]
    return Summary(
        run.case,
        goodput=len(good) / span,
        p50=percentile(good, 0.50),
        p99=percentile(good, 0.99),
        shed=sum(s.status == 503 for s in window) / max(1, len(window)),
        timed_out=sum(s.status == 0 for s in window) / max(1, len(window)),
        settled_limit=statistics.median(settled) if settled else None,
        lag_p99=percentile([s.lag for s in window], 0.99),
    )


def series(run: Run) -> tuple[list[float], list[float], list[float | None]]:
    """Per bucket of scheduled start: time, goodput per second, p99 of the successes."""
    buckets = int(run.seconds / BUCKET)
    times, goodput, p99 = [], [], []
    for b in range(buckets):
        low, high = b * BUCKET, (b + 1) * BUCKET
        good = [
            s.latency
            for s in run.samples
            if low <= s.at < high and s.status == 200 and s.latency is not None
        ]
        times.append(high)
        goodput.append(len(good) / BUCKET)
        value = percentile(good, 0.99)
        p99.append(None if value is None else value * 1000)
    return times, goodput, p99


COLOURS = {
    "none": "tab:blue",
    "static": "tab:orange",
    "leveled": "tab:purple",
    "aimd": "tab:green",
    "gradient2": "tab:red",
}
LABELS = {
    "none": "no shedding",
    "static": "static limit (8)",
    "leveled": "static limit (8) + queue (8, 10 ms)",
    "aimd": "AIMD",
    "gradient2": "Gradient2",
}


def draw(runs: list[Run], unloaded_p99: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for run in runs:
        times, goodput, p99 = series(run)
        style = "--" if run.case == "none" else "-"
        colour = COLOURS[run.case]
        top.plot(times, goodput, style, color=colour, label=LABELS[run.case])
        middle.plot(times, [float("nan") if v is None else v for v in p99], style, color=colour)
        if run.case != "none" and run.limits:
            bottom.plot(
                [t for t, _ in run.limits],
                [v for _, v in run.limits],
                style,
                color=colour,
                label=LABELS[run.case],
            )
    top.axhline(CAPACITY, color="grey", linewidth=0.8, linestyle=":")
    top.set_ylabel("goodput (successes/s within 1 s)")
    top.set_title(
        f"{OVERLOAD:g}x overload: {CAPACITY * OVERLOAD:.0f} req/s offered to a "
        f"{CAPACITY:.0f} req/s app"
    )
    top.legend(loc="lower left", fontsize="small")
    if unloaded_p99 is not None:
        middle.axhline(2 * unloaded_p99 * 1000, color="grey", linewidth=0.8, linestyle=":")
    middle.set_ylabel("p99 of successes (ms)\n(dotted: 2x unloaded p99)")
    middle.set_yscale("log")
    bottom.axhline(CAPACITY_CONCURRENCY, color="grey", linewidth=0.8, linestyle=":")
    bottom.set_ylabel("concurrency limit")
    bottom.set_xlabel("seconds into the run (by scheduled start)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- the report ----------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f} ms"


def with_server(case: str, work: Callable[[Server], Awaitable[Any]]) -> Any:
    server = Server(case)
    uvloop = _uvloop()
    try:
        with asyncio.Runner(
            loop_factory=None if uvloop is None else uvloop.new_event_loop
        ) as runner:
            return runner.run(work(server))
    finally:
        server.stop()


@dataclass
class Cost:
    """What the middleware costs a healthy app: medians over alternating rounds."""

    plain_rate: float  # requests per second without the middleware
    shed_rate: float  # with it
    plain_cpu: float  # server CPU seconds per request without
    shed_cpu: float  # with
    cpu_ratio: float  # the median of each round's with / without CPU per request


def healthy_cost(plain_case: str, shed_case: str, rounds: int, seconds: float) -> Cost:
    """Requests per second and server CPU per request on a healthy app, without and with
    the middleware: both servers run side by side, measured in alternating rounds so that
    whatever else the machine runs weighs on both alike, each round's pair compared."""
    plain, shed = Server(plain_case), Server(shed_case)
    uvloop = _uvloop()
    try:
        with asyncio.Runner(
            loop_factory=None if uvloop is None else uvloop.new_event_loop
        ) as runner:
            runs: dict[Server, list[tuple[float, float]]] = {plain: [], shed: []}
            for i in range(rounds):
                order = (plain, shed) if i % 2 == 0 else (shed, plain)
                for server in order:
                    runs[server].append(runner.run(closed_loop(server, 32, seconds)))
    finally:
        plain.stop()
        shed.stop()
    return Cost(
        plain_rate=statistics.median(rate for rate, _ in runs[plain]),
        shed_rate=statistics.median(rate for rate, _ in runs[shed]),
        plain_cpu=statistics.median(cpu for _, cpu in runs[plain]),
        shed_cpu=statistics.median(cpu for _, cpu in runs[shed]),
        cpu_ratio=statistics.median(
            with_ / without
            for (_, without), (_, with_) in zip(runs[plain], runs[shed], strict=True)
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for smoke tests")
    parser.add_argument("--write-docs", action="store_true", help="draw docs/img/overload.png")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    _raise_file_limit()
    seconds = 1.5 if args.quick else 10.0
    warmup = 0.0 if args.quick else 2.0
    rate = CAPACITY * OVERLOAD

    unloaded = with_server(
        "none", lambda server: open_loop("none", server.port, CAPACITY * 0.3, seconds)
    )
    unloaded_p99 = summarise(unloaded, warmup=0.0).p99
    runs = [
        with_server(case, lambda server, case=case: open_loop(case, server.port, rate, seconds))
        for case in ("none", "static", "leveled", "aimd", "gradient2")
    ]
    rounds, round_seconds = (1, 1.0) if args.quick else (9, 1.5)
    costs = {
        "a Starlette app (one route)": healthy_cost(
            "starlette", "starlette-shed", rounds, round_seconds
        ),
        "a bare ASGI handler": healthy_cost("healthy", "healthy-shed", rounds, round_seconds),
    }

    print(
        f"### Overload: {rate:.0f} req/s offered for {seconds:g} s to an app that serves "
        f"{CAPACITY:.0f} req/s ({CAPACITY_CONCURRENCY} at a time, {SERVICE_TIME * 1000:g} ms each)"
    )
    print()
    print(
        f"Unloaded ({CAPACITY * 0.3:.0f} req/s, no middleware): p99 {ms(unloaded_p99)}. "
        f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end."
    )
    if warmup:
        print(f"Measured after the first {warmup:g} s.")
    print()
    print(
        "| case | goodput (req/s) | of capacity | p50 | p99 | p99 / unloaded p99 | shed (503) | timed out | settled limit | generator lag p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    summaries = [summarise(run, warmup=warmup) for run in runs]
    for s in summaries:
        ratio = "—" if s.p99 is None or not unloaded_p99 else f"{s.p99 / unloaded_p99:.2f}x"
        limit = "—" if s.settled_limit is None else f"{s.settled_limit:g}"
        print(
            f"| {LABELS[s.case]} | {s.goodput:.0f} | {s.goodput / CAPACITY:.0%} | {ms(s.p50)} | "
            f"{ms(s.p99)} | {ratio} | {s.shed:.0%} | {s.timed_out:.0%} | {limit} | {ms(s.lag_p99)} |"
        )
    print()
    print(
        f"Healthy apps (answering at once), 32 connections back to back, {rounds} alternating "
        "rounds (medians):"
    )
    print()
    print("| app | req/s without | req/s with | server CPU per request without | with | cost |")
    print("|---|---:|---:|---:|---:|---:|")
    for app, cost in costs.items():
        print(
            f"| {app} | {cost.plain_rate:.0f} | {cost.shed_rate:.0f} | "
            f"{cost.plain_cpu * 1e6:.1f} µs | {cost.shed_cpu * 1e6:.1f} µs | "
            f"{cost.cpu_ratio - 1:+.1%} |"
        )
    print()
    print("### Goals")
    print()
    for s in summaries[1:]:
        good = s.goodput >= 0.9 * CAPACITY
        fast = s.p99 is not None and unloaded_p99 is not None and s.p99 <= 2 * unloaded_p99
        print(
            f"- {LABELS[s.case]}: goodput >= 90 % of capacity: {'met' if good else 'missed'}; "
            f"p99 <= 2x unloaded: {'met' if fast else 'missed'}"
        )
    for s in (s for s in summaries if s.case in ("aimd", "gradient2")):
        settled = (
            s.settled_limit is not None
            and abs(s.settled_limit - CAPACITY_CONCURRENCY) <= 0.25 * CAPACITY_CONCURRENCY
        )
        print(
            f"- {LABELS[s.case]} settles within 25 % of {CAPACITY_CONCURRENCY}: "
            f"{'met' if settled else 'missed'} (median limit over the second half: "
            f"{s.settled_limit})"
        )
    # The load generator shares the machine with the server, so requests per second move
    # with whatever else runs; the server's CPU per request is the steadier measure of the
    # same cost (the rate a CPU-bound server sustains is its inverse).
    for app, cost in costs.items():
        met = cost.cpu_ratio <= 1 / 0.95
        print(
            f"- healthy-app cost <= 5 %, {app}: {'met' if met else 'missed'} "
            f"({cost.cpu_ratio - 1:+.1%} server CPU per request)"
        )
    collapse = summaries[0].goodput < 0.5 * CAPACITY
    print(
        f"- without shedding, goodput collapses (< 50 % of capacity): {'yes' if collapse else 'no'}"
    )
    if args.write_docs:
        draw(runs, unloaded_p99, CHART)
        print(f"\nChart: {CHART.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
