"""Group 10, hedging a heavy tail and throttling a refusing upstream: what the policies do to
the traffic, rather than what they cost.

(a) Hedging, on the real clock: a uvicorn upstream in a process of its own on loopback,
    called through httpx, answers in 8 to 12 ms, except 5 % of
    requests that take 20x the median (200 ms). Many clients call it concurrently, with no
    hedge, a fixed hedge delay, the adaptive delay (the 95th percentile of recent
    latencies), and nopanic's hedge at the same fixed delay. Reported: p50, p99 and p99.9 of
    the client's latency, and upstream requests per client call.
(b) Adaptive throttling, on a FakeClock: an upstream that can serve 20 % of the client's
    demand refuses the rest (it refuses 80 % of calls when everything is sent). Reported:
    requests sent per client call with and without `AdaptiveThrottle()`, against the SRE
    book's prediction `min(1, k * a)`. A second upstream refuses 80 % of requests at random,
    whatever the load: there sending less cannot help, and the throttle settles at
    `1 - max_reject`.

Run alone: `python benchmarks/run.py --only tail`; `python benchmarks/group_tail.py --chart`
also redraws docs/img/hedge-latency.svg.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness import (
    GoalResult,
    GroupResult,
    Settings,
    markdown_table,
    stop_server,
    wait_until_serving,
)
from _svg import Chart, Series

MEDIAN_S = 0.010
TAIL_S = 0.200  # 20x the median
TAIL_SHARE = 0.05
HEDGE_DELAY_S = 0.015
# Few enough that the client's own CPU (httpx costs about a millisecond a request here)
# does not queue the calls: the latency measured is the upstream's.
CLIENTS = 4
TAILS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002)
IMAGE = Path(__file__).resolve().parent.parent / "docs" / "img" / "hedge-latency.svg"

NONE = "no hedge"
FIXED = f"Hedge({HEDGE_DELAY_S})"
ADAPTIVE = "Hedge() (adaptive, p95)"
NOPANIC = f"nopanic hedge(delay={HEDGE_DELAY_S})"


class Upstream:
    """The heavy-tailed upstream: uvicorn in a process of its own on loopback (see
    _tail_upstream.py), called through one httpx client."""

    def __init__(self, seed: int) -> None:
        self.port = _free_port()
        script = Path(__file__).with_name("_tail_upstream.py")
        args = [str(self.port), str(seed), repr(MEDIAN_S), repr(TAIL_S), repr(TAIL_SHARE)]
        self.process = subprocess.Popen([sys.executable, str(script), *args])
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Upstream:
        import httpx

        limits = httpx.Limits(max_connections=4 * CLIENTS, max_keepalive_connections=4 * CLIENTS)
        self.client = httpx.AsyncClient(base_url=self.url, limits=limits, timeout=10.0)
        try:
            await asyncio.to_thread(wait_until_serving, self.process, self.port, "the upstream")
        except RuntimeError:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        stop_server(self.process)

    async def __call__(self) -> str:
        response = await self.client.get("/work")
        return response.text

    async def reset(self) -> None:
        await self.client.get("/reset")

    async def served(self) -> int:
        return int((await self.client.get("/count")).text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quantile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
    return ordered[index]


async def _drive(
    upstream: Upstream,
    wrap: Callable[[Upstream], Callable[[], Awaitable[Any]]],
    calls: int,
    warmup: int,
) -> tuple[list[float], float]:
    call = wrap(upstream)
    for _ in range(warmup):
        await call()
    await upstream.reset()
    latencies: list[float] = []

    async def client(n: int) -> None:
        for _ in range(n):
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    async with asyncio.TaskGroup() as group:
        for i in range(CLIENTS):
            group.create_task(client(calls // CLIENTS + (i < calls % CLIENTS)))
    return sorted(latencies), await upstream.served() / calls


def _hedging(settings: Settings) -> tuple[GroupResult, Chart | None]:
    calls = 200 if settings.quick else 2000
    warmup = 0 if settings.quick else 200
    cases: dict[str, Callable[[Upstream], Callable[[], Awaitable[Any]]]] = {NONE: lambda u: u}
    skipped: list[str] = []
    from resilient import Hedge

    cases[FIXED] = lambda u: Hedge(HEDGE_DELAY_S)(u)
    cases[ADAPTIVE] = lambda u: Hedge()(u)
    try:
        from nopanic import hedge

        def _nopanic(upstream: Upstream) -> Callable[[], Awaitable[Any]]:
            async def call() -> str:  # nopanic hedges `async def` functions only
                return await upstream()

            return hedge(delay=HEDGE_DELAY_S)(call)

        cases[NOPANIC] = _nopanic
    except ImportError:
        skipped.append(f"{NOPANIC}: skipped, nopanic is not installed")

    measured: dict[str, tuple[list[float], float]] = {}

    async def main() -> None:
        async with Upstream(settings.seed + 1) as upstream:
            for name, wrap in cases.items():
                # An adaptive hedge needs 20 successes before it hedges at all: it warms up
                # even in a quick run.
                warm = max(warmup, 100) if name == ADAPTIVE else warmup
                measured[name] = await _drive(upstream, wrap, calls, warm)

    asyncio.run(main())
    base_p99 = _quantile(measured[NONE][0], 0.99)
    rows = []
    for name, (ordered, per_call) in measured.items():
        p99 = _quantile(ordered, 0.99)
        rows.append(
            [
                name,
                f"{_quantile(ordered, 0.5) * 1000:.1f}",
                f"{p99 * 1000:.1f}",
                f"{_quantile(ordered, 0.999) * 1000:.1f}",
                f"{base_p99 / p99:.1f}x",
                f"{per_call:.3f}",
            ]
        )
    goals = []
    if ADAPTIVE in measured:
        ordered, per_call = measured[ADAPTIVE]
        ratio = _quantile(ordered, 0.99) / base_p99
        goals.append(
            GoalResult(
                "Hedging a heavy tail",
                "adaptive hedge cuts p99 by >= 3x",
                ratio * 3,
                1.0,
                f"{1 / ratio:.1f}x",
            )
        )
        goals.append(
            GoalResult(
                "Hedging a heavy tail",
                "adaptive hedge adds <= 10 % upstream requests",
                per_call,
                1.10,
                f"{per_call:.3f} requests per call",
            )
        )
    chart = Chart(
        name="hedge-latency",
        title="Client latency against a heavy-tailed upstream",
        x_label="share of calls slower than this (1 - quantile)",
        y_label="latency",
        series=[
            Series(name, [(tail, _quantile(ordered, 1 - tail)) for tail in TAILS])
            for name, (ordered, _) in measured.items()
        ],
        x_format=lambda x: f"p{100 * (1 - x):g}",
        x_ticks=TAILS,
        note=f"{calls:,} calls from {CLIENTS} concurrent clients; 5 % of requests take 20x the "
        "median",
        alt="Latency quantiles from p50 to p99.8 with and without hedging",
    )
    result = GroupResult(
        "tail",
        "Hedging a heavy tail",
        ["case", "p50 ms", "p99 ms", "p99.9 ms", "p99 cut", "upstream requests per call"],
        rows,
        goals=goals,
        skipped=skipped,
        intro=f"A uvicorn upstream in a process of its own on loopback, called through httpx, "
        f"answers in {MEDIAN_S * 800:.0f} to "
        f"{MEDIAN_S * 1200:.0f} ms, except {TAIL_SHARE:.0%} of requests that take "
        f"{TAIL_S * 1000:.0f} ms (20x the median). {CLIENTS} concurrent clients make "
        f"{calls:,} calls in all, on the real clock; the adaptive hedge warms up first. "
        "p99 cut is the no-hedge p99 over the case's.",
    )
    return result, chart


class CapacityUpstream:
    """Serves a fraction `accepting` of the client's demand and refuses the rest."""

    def __init__(self, accepting: float) -> None:
        self.accepting = accepting
        self.capacity = 0.0
        self.received = 0

    def demand(self) -> None:
        self.capacity = min(self.capacity + self.accepting, 5.0)

    async def __call__(self) -> None:
        from resilient import RejectedError

        self.received += 1
        if self.capacity >= 1.0:
            self.capacity -= 1.0
            return
        raise RejectedError("over capacity", policy="upstream")


class RandomUpstream(CapacityUpstream):
    """Refuses each request with probability `1 - accepting`, whatever the load."""

    def __init__(self, accepting: float, seed: int) -> None:
        super().__init__(accepting)
        self.rng = random.Random(seed)

    async def __call__(self) -> None:
        from resilient import RejectedError

        self.received += 1
        if self.rng.random() >= self.accepting:
            raise RejectedError("refused", policy="upstream")


def _throttling(settings: Settings) -> GroupResult:
    from resilient import AdaptiveThrottle, RejectedError
    from resilient.testing import FakeClock

    accepting, rate = 0.2, 10.0  # the upstream serves 20 % of demand; 10 calls/s
    seconds = 600.0 if settings.quick else 2400.0
    calls = int(seconds * rate)

    async def drive(upstream: CapacityUpstream, throttled: bool) -> tuple[float, float]:
        clock = FakeClock()
        throttle = AdaptiveThrottle(clock=clock, rng=random.Random(settings.seed))
        served = 0
        for i in range(calls):
            if i == calls // 2:  # measure the second half, once settled
                sent_before, served = upstream.received, 0
            clock.advance(1 / rate)
            upstream.demand()
            try:
                if throttled:
                    await throttle.call(upstream)
                else:
                    await upstream()
                served += 1
            except RejectedError:
                pass
        measured = calls - calls // 2
        return (upstream.received - sent_before) / measured, served / measured

    k = 2.0
    predicted = min(1.0, k * accepting)
    rows = []
    goals = []

    async def main() -> None:
        for label, make in (
            ("serves 20 % of demand", lambda: CapacityUpstream(accepting)),
            ("refuses 80 % at random", lambda: RandomUpstream(accepting, settings.seed)),
        ):
            plain, plain_served = await drive(make(), throttled=False)
            sent, served = await drive(make(), throttled=True)
            expected = predicted if label.startswith("serves") else 1 - 0.9
            why = "min(1, k*a) = 0.40" if label.startswith("serves") else "1 - max_reject = 0.10"
            rows.append(
                [
                    label,
                    f"{plain:.3f}",
                    f"{sent:.3f}",
                    why,
                    f"{sent / expected:.2f}",
                    f"{plain_served:.3f} / {served:.3f}",
                ]
            )
            if label.startswith("serves"):
                off = max(sent / expected, expected / sent)
                goals.append(
                    GoalResult(
                        "Adaptive throttling of a refusing upstream",
                        "throttle within 20 % of the SRE prediction (upstream at 20 % of demand)",
                        off,
                        1.2,
                        f"{sent:.3f} sent per call, predicted {expected:.2f}",
                    )
                )

    asyncio.run(main())
    return GroupResult(
        "tail",
        "Adaptive throttling of a refusing upstream",
        [
            "upstream",
            "sent per call, no throttle",
            "sent per call, AdaptiveThrottle()",
            "prediction",
            "measured / predicted",
            "served per call (no throttle / throttle)",
        ],
        rows,
        goals=goals,
        intro=f"{calls:,} calls at {rate:g} per second on a FakeClock (the default 120 s "
        "window, k = 2, max_reject = 0.9), measured over the second half. Requests sent per "
        "client call are what the upstream receives; the throttle refuses the rest locally.",
    )


def run(settings: Settings) -> list[GroupResult]:
    hedging, chart = _hedging(settings)
    if chart is not None:
        hedging.charts.append(chart)
    return [hedging, _throttling(settings)]


if __name__ == "__main__":
    settings = Settings.quick_run() if "--quick" in sys.argv else Settings.full()
    for result in run(settings):
        print(f"### {result.title}\n\n{result.intro}\n")
        print(markdown_table(result.headers, result.rows))
        for goal in result.goals:
            met = goal.ratio is not None and goal.ratio <= goal.max_ratio
            print(f"- {goal.label}: {goal.detail} ({'met' if met else 'missed'})")
        print()
        if "--chart" in sys.argv:
            for chart in result.charts:
                IMAGE.write_text(chart.svg())
                print(f"wrote {IMAGE}")
