"""Group 10, scaling: what a call costs as the work grows, beside the peers, in one run.

Four parts, each measured at several sizes so that the report shows growth, not a point:

(a) rate-limit keys: per-call time (median and slowest) and memory at 1k to 1M distinct
    keys, live (`RateLimiter(1, per=3600)`: no key expires) and expiring (buckets that
    refill within a millisecond), against limits, aiolimiter and nopanic;
(b) concurrent tasks: 100 to 100k tasks inside each policy and a five-policy Pipeline at
    once, per-call time and memory per task, against nopanic and asyncio.Semaphore;
(c) circuit breakers: bytes per breaker for thousands of them, against nopanic,
    purgatory and pybreaker (tracemalloc);
(d) cancellation: cancelling 10k to 40k queued Bulkhead waiters, newest-first and
    oldest-first, against asyncio.Semaphore.

Every row runs in a fresh interpreter (this file, run as a script, measures rows given as
JSON and prints JSON), so that one library's garbage, caches or background tasks never
land on another's figures; `--quick` runs each part's rows in one interpreter, at tiny
sizes. Rows that would run for too long are capped (see `Sizes`) and say so: today's
in-memory store and bulkhead queue are measured as they are, slow cases included.

The charts of docs/performance.md are drawn from these results (see `charts`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from array import array
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from _harness import GoalResult, GroupResult, Settings, format_met, format_ratio
from _memory import heap_bytes
from _svg import Chart, Series, format_bytes, format_count

Row = dict[str, Any]
Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Sizes:
    """What the scaling group measures; `full()` for `make bench`, `quick()` for smoke tests.

    `key_budget_s` caps one rate-limit row: a library still filling its table when the
    budget runs out stops there, reports how far it got, and is not run at the larger
    sizes. `cancel_budget_s` skips a cancellation size whose predicted time (the previous
    size's, grown as the square of the count, the worst case) is over it.
    """

    keys: tuple[int, ...]
    tasks: tuple[int, ...]
    breakers: tuple[int, ...]
    waiters: tuple[int, ...]
    window_calls: int
    key_budget_s: float
    cancel_budget_s: float
    task_calls: int  # calls per size in part (b): T tasks, task_calls // T times (3 at least)
    child_per_row: bool

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            keys=(1_000, 10_000, 100_000, 1_000_000),
            tasks=(100, 1_000, 10_000, 100_000),
            breakers=(100, 1_000, 10_000),
            waiters=(10_000, 20_000, 40_000),
            window_calls=100_000,
            key_budget_s=10.0,
            cancel_budget_s=40.0,
            task_calls=60_000,
            child_per_row=True,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            keys=(100, 1_000),
            tasks=(10, 100),
            breakers=(10, 100),
            waiters=(100, 200),
            window_calls=1_000,
            key_budget_s=2.0,
            cancel_budget_s=2.0,
            task_calls=300,
            child_per_row=False,
        )


# -- part (a): rate-limit keys ----------------------------------------------------------------

LIVE, EXPIRING = "live", "expiring"
KEY_LIBS = {
    "resilient": "resilient RateLimiter",
    "limits-moving": "limits, moving window",
    "limits-fixed": "limits, fixed window",
    "aiolimiter": "aiolimiter, dict of limiters",
    "nopanic": "nopanic keyed(rate_limit)",
}
OURS_KEYS = "resilient"
# A live key's bucket refills in an hour, an expiring key's in a millisecond (one second for
# limits, whose windows are whole seconds).
PERIOD = {LIVE: 3600.0, EXPIRING: 0.001}


def _key_caller(lib: str, mode: str) -> Callable[[str], Awaitable[Any]]:
    """The call that takes one permit from `key`'s bucket, as each library's users write it."""
    per = PERIOD[mode]
    if lib == "resilient":
        from resilient import RateLimiter

        limiter = RateLimiter(1, per=per)
        return limiter.acquire
    if lib.startswith("limits"):
        from limits import RateLimitItemPerHour, RateLimitItemPerSecond
        from limits.aio.storage import MemoryStorage
        from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

        strategy_class = (
            FixedWindowRateLimiter if lib == "limits-fixed" else MovingWindowRateLimiter
        )
        strategy = strategy_class(MemoryStorage())
        item = RateLimitItemPerHour(1) if mode == LIVE else RateLimitItemPerSecond(1)

        async def hit(key: str) -> None:
            if not await strategy.hit(item, key):
                raise RuntimeError("limits refused a permit")

        return hit
    if lib == "aiolimiter":
        from aiolimiter import AsyncLimiter

        limiters: dict[str, AsyncLimiter] = {}

        async def acquire(key: str) -> None:
            limiter = limiters.get(key)
            if limiter is None:
                limiter = limiters[key] = AsyncLimiter(1, per)
            await limiter.acquire()

        return acquire
    if lib == "nopanic":
        from nopanic import keyed, rate_limit

        # maxsize above any size measured: an LRU that evicted live keys would forget them.
        @keyed(lambda key: rate_limit(1, per), key=lambda key: key, maxsize=100_000_000)
        async def take(key: str) -> None:
            return None

        return take
    raise ValueError(f"unknown library {lib!r}")


async def _loop_turn_ns(samples: int = 2000) -> float:
    clock = time.perf_counter_ns
    times = []
    for _ in range(samples):
        start = clock()
        await asyncio.sleep(0)
        times.append(clock() - start)
    return statistics.median(times)


async def _keys_row(row: Row) -> Row:
    n, budget_s = row["n"], row["budget_s"]
    turn = await _loop_turn_ns()  # before any limiter exists: the loop's own cost
    call = _key_caller(row["lib"], row["variant"])
    for i in range(100):
        await call(f"warm-{i}")
    extra = max(500, n // 10)
    total = n + extra
    # Allocated before the first heap reading. Wall time gives the median; the slowest call
    # is read on this thread's CPU clock, which a machine busy with other work does not
    # advance: a call that held the loop shows, the scheduler's pauses do not.
    samples = array("q", bytes(8 * total))
    cpu_samples = array("q", bytes(8 * total))
    memory: int | None = None
    before = heap_bytes()
    clock = time.perf_counter_ns
    cpu_clock = time.thread_time_ns
    sleep = asyncio.sleep
    started = clock()
    deadline = started + int(budget_s * 1e9)
    done = 0
    for i in range(total):
        if i == n:
            after = heap_bytes()
            memory = None if after is None or before is None else after - before
        key = f"client-{i}"
        cpu_start = cpu_clock()
        start = clock()
        await call(key)
        # One turn of the loop per call, as between a service's requests: a library's
        # background work (limits sweeps its table in a task) runs, and is timed, here.
        await sleep(0)
        samples[i] = clock() - start
        cpu_samples[i] = cpu_clock() - cpu_start
        done = i + 1
        if not i & 1023 and clock() > deadline:
            break
    seconds = (clock() - started) / 1e9
    if done < n:
        after = heap_bytes()
        memory = None if after is None or before is None else after - before
    # The median at the size: over the calls past n (the table holds n to 1.1 n keys), or,
    # for a row stopped early, over the last tenth of the calls it made.
    tail = samples[n:done] if done > n else samples[done - max(1, done // 10) : done]
    return {
        "reached": min(done, n),
        "capped": done < total,
        "median_ns": statistics.median(tail) - turn,
        "max_ns": max(cpu_samples[:done]),
        "max_wall_ns": max(samples[:done]),
        "memory": memory,
        "seconds": seconds,
        "turn_ns": turn,
    }


# -- part (b): concurrent tasks ---------------------------------------------------------------

# Case key -> (label, policy family for the chart's colours, ours?)
TASK_CASES: dict[str, tuple[str, str, bool]] = {
    "bare": ("no policy", "bare", False),
    "retry": ("Retry()", "retry", True),
    "timeout": ("Timeout(10)", "timeout", True),
    "breaker": ("CircuitBreaker()", "breaker", True),
    "bulkhead": ("Bulkhead(T)", "bulkhead", True),
    "limiter": ("RateLimiter(1e9)", "limiter", True),
    "fallback": ("Fallback(value=0)", "fallback", True),
    "pipeline": ("Pipeline of five", "pipeline", True),
    "np-retry": ("nopanic retry()", "retry", False),
    "np-timeout": ("nopanic timeout(10)", "timeout", False),
    "np-breaker": ("nopanic circuit_breaker()", "breaker", False),
    "np-bulkhead": ("nopanic bulkhead(T)", "bulkhead", False),
    "np-limiter": ("nopanic rate_limit(1e9)", "limiter", False),
    "np-fallback": ("nopanic fallback(0)", "fallback", False),
    "np-compose": ("nopanic compose of five", "pipeline", False),
    "semaphore": ("asyncio.Semaphore(T)", "semaphore", False),
}
TASK_PEERS = {
    "retry": "np-retry",
    "timeout": "np-timeout",
    "breaker": "np-breaker",
    "bulkhead": "np-bulkhead",
    "limiter": "np-limiter",
    "fallback": "np-fallback",
    "pipeline": "np-compose",
}
RATE = 1_000_000_000  # permits always there: the same rate as the rate_limit group


def _task_policy(case: str, tasks: int) -> Callable[[Callable[[], Awaitable[int]]], Call]:
    """The decorator of `case`, built for `tasks` concurrent calls (a bulkhead gets a slot
    for each: the happy path under contention)."""
    if case == "bare":
        return lambda fn: fn
    if case == "semaphore":
        semaphore = asyncio.Semaphore(tasks)

        def guard(fn: Callable[[], Awaitable[int]]) -> Call:
            async def guarded() -> int:
                async with semaphore:
                    return await fn()

            return guarded

        return guard
    if case.startswith("np-"):
        import nopanic

        nopanic_policies: dict[str, Callable[[], Any]] = {
            "np-retry": nopanic.retry,
            "np-timeout": lambda: nopanic.timeout(10),
            "np-breaker": nopanic.circuit_breaker,
            "np-bulkhead": lambda: nopanic.bulkhead(tasks),
            "np-limiter": lambda: nopanic.rate_limit(RATE),
            "np-fallback": lambda: nopanic.fallback(0),
            "np-compose": lambda: nopanic.compose(
                nopanic.rate_limit(RATE),
                nopanic.timeout(10),
                nopanic.retry(),
                nopanic.circuit_breaker(),
                nopanic.bulkhead(tasks),
            ),
        }
        return nopanic_policies[case]()  # type: ignore[no-any-return]
    import resilient

    policies: dict[str, Callable[[], Any]] = {
        "retry": resilient.Retry,
        "timeout": lambda: resilient.Timeout(10),
        "breaker": resilient.CircuitBreaker,
        "bulkhead": lambda: resilient.Bulkhead(tasks),
        "limiter": lambda: resilient.RateLimiter(RATE),
        "fallback": lambda: resilient.Fallback(value=0),
        "pipeline": lambda: resilient.Pipeline(
            resilient.RateLimiter(RATE),
            resilient.Timeout(10),
            resilient.Retry(),
            resilient.CircuitBreaker(),
            resilient.Bulkhead(tasks),
        ),
    }
    return policies[case]()  # type: ignore[no-any-return]


async def _tasks_once(
    call: Call, tasks: int, gate: asyncio.Event, all_inside: asyncio.Event, *, memory: bool
) -> tuple[float, int | None]:
    """Start `tasks` tasks that each make one call; every call waits at `gate`, so all of
    them are inside the policy at once; then open the gate. Returns the seconds taken (the
    heap reading at the peak left out) and the bytes the tasks held at the peak."""
    before = heap_bytes() if memory else None
    gc.collect()
    gc.disable()
    try:
        clock = time.perf_counter
        start = clock()
        running = [asyncio.create_task(call()) for _ in range(tasks)]
        async with asyncio.timeout(120):
            await all_inside.wait()
        filled = clock()
        peak = heap_bytes() if memory else None
        release = clock()
        gate.set()
        results = await asyncio.gather(*running)
        end = clock()
    finally:
        gc.enable()
    if results.count(1) != tasks:
        raise RuntimeError(f"{tasks - results.count(1)} of {tasks} calls did not return 1")
    held = None if peak is None or before is None else peak - before
    return (filled - start) + (end - release), held


async def _tasks_row(row: Row) -> Row:
    tasks = row["n"]
    decorate = _task_policy(row["lib"], tasks)
    gate = asyncio.Event()
    all_inside = asyncio.Event()
    inside = 0

    async def work() -> int:
        nonlocal inside
        inside += 1
        if inside == tasks:
            all_inside.set()
        await gate.wait()
        return 1

    call = decorate(work)
    # The first run reads the heap at its peak and warms up; at least three timed runs follow,
    # so that one run disturbed by the machine is outvoted.
    runs = 1 + max(3, row["calls"] // tasks)
    seconds: list[float] = []
    held: int | None = None
    for index in range(runs):
        gate.clear()
        all_inside.clear()
        inside = 0
        elapsed, peak = await _tasks_once(call, tasks, gate, all_inside, memory=index == 0)
        if index == 0:
            held = peak
        else:
            seconds.append(elapsed)
    return {
        "per_call_ns": statistics.median(seconds) / tasks * 1e9,
        "bytes_per_task": None if held is None else held / tasks,
    }


# -- part (c): circuit breakers ---------------------------------------------------------------

BREAKER_LIBS = {
    "resilient": "resilient CircuitBreaker()",
    "nopanic": "nopanic circuit_breaker()",
    "purgatory": "purgatory breaker",
    "pybreaker": "pybreaker CircuitBreaker()",
    "window": "resilient CircuitBreaker(window_calls=W), window full",
}


async def _ok() -> int:
    return 1


async def _breaker_maker(lib: str, window_calls: int) -> tuple[Callable[[str], Any], Call]:
    """(make, use): `await make(name)` builds a breaker, `await use(breaker)` guards calls
    through it as the library's users write it."""
    if lib in ("resilient", "window"):
        from resilient import CircuitBreaker

        calls = window_calls if lib == "window" else 1

        async def make(name: str) -> Any:
            return (
                CircuitBreaker(window_calls=window_calls) if lib == "window" else CircuitBreaker()
            )

        async def use(breaker: Any) -> None:
            for _ in range(calls):
                async with breaker:
                    await _ok()

        return make, use  # type: ignore[return-value]
    if lib == "nopanic":
        from nopanic import circuit_breaker

        async def make_nopanic(name: str) -> Any:
            return circuit_breaker()

        async def use_nopanic(breaker: Any) -> None:
            async with breaker.guard():
                await _ok()

        return make_nopanic, use_nopanic  # type: ignore[return-value]
    if lib == "pybreaker":
        import pybreaker

        async def make_pybreaker(name: str) -> Any:
            return pybreaker.CircuitBreaker()

        async def use_pybreaker(breaker: Any) -> None:
            with breaker.calling():
                await _ok()

        return make_pybreaker, use_pybreaker  # type: ignore[return-value]
    if lib == "purgatory":
        from purgatory import AsyncCircuitBreakerFactory

        factory = AsyncCircuitBreakerFactory()
        await factory.initialize()

        # purgatory keeps its breakers in the factory, by name; its users fetch one per call.
        async def make_purgatory(name: str) -> Any:
            await factory.get_breaker(name)
            return name

        async def use_purgatory(name: Any) -> None:
            async with await factory.get_breaker(name):
                await _ok()

        return make_purgatory, use_purgatory  # type: ignore[return-value]
    raise ValueError(f"unknown library {lib!r}")


async def _breakers_row(row: Row) -> Row:
    """Bytes per breaker, by tracemalloc: once built, and once each has guarded one call."""
    count = row["n"]
    make, use = await _breaker_maker(row["lib"], row["window_calls"])
    # One breaker built and used first, so that what a library sets up once (imports, caches,
    # lazily built tables) is not counted against the breakers measured.
    await use(await make("warm-up"))
    names = [f"host-{i}" for i in range(count)]
    held: list[Any] = [None] * count  # allocated before the baseline
    tracemalloc.start()
    try:
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        for i, name in enumerate(names):
            held[i] = await make(name)
        gc.collect()
        built = tracemalloc.get_traced_memory()[0] - baseline
        for breaker in held:
            await use(breaker)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    return {"built": built / count, "used": used / count}


# -- part (d): cancelling queued waiters ------------------------------------------------------

NEWEST, OLDEST = "newest-first", "oldest-first"
CANCEL_LIBS = {"resilient": "resilient Bulkhead(1)", "semaphore": "asyncio.Semaphore(1)"}


async def _cancel_row(row: Row) -> Row:
    waiters, order = row["n"], row["variant"]
    guard: Any
    if row["lib"] == "resilient":
        from resilient import Bulkhead

        guard = Bulkhead(1, max_waiting=waiters)
    else:
        guard = asyncio.Semaphore(1)
    hold = asyncio.Event()
    entered = asyncio.Event()

    async def holder() -> None:
        async with guard:
            entered.set()
            await hold.wait()

    async def waiter() -> None:
        async with guard:
            raise RuntimeError("a waiter got the slot: the holder never lets go")

    holding = asyncio.create_task(holder())
    await entered.wait()
    queued = [asyncio.create_task(waiter()) for _ in range(waiters)]
    for _ in range(3):
        await asyncio.sleep(0)  # every waiter is in the queue now
    queue = guard.waiting if row["lib"] == "resilient" else len(guard._waiters or ())
    if queue != waiters:
        raise RuntimeError(f"{queue} of {waiters} waiters queued")
    ordered = queued[::-1] if order == NEWEST else queued
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for task in ordered:
            task.cancel()
        async with asyncio.timeout(600):
            await asyncio.wait(queued)
        seconds = time.perf_counter() - start
    finally:
        gc.enable()
    hold.set()
    await holding
    not_cancelled = sum(not task.cancelled() for task in queued)
    if not_cancelled:
        raise RuntimeError(f"{not_cancelled} waiters ended otherwise than cancelled")
    return {"seconds": seconds}


# -- running rows, here or in children --------------------------------------------------------

PARTS = {
    "keys": "(a) rate-limit keys",
    "tasks": "(b) concurrent tasks",
    "breakers": "(c) breakers",
    "cancel": "(d) cancellation",
}
MEASURE = {"keys": _keys_row, "tasks": _tasks_row, "breakers": _breakers_row, "cancel": _cancel_row}


def _skip_reason(row: Row, done: list[tuple[Row, Row]]) -> str | None:
    """Why `row` is not worth running, given the rows of the same series measured before it."""
    same = [
        (r, result)
        for r, result in done
        if (r["part"], r["lib"], r.get("variant")) == (row["part"], row["lib"], row.get("variant"))
    ]
    if not same:
        return None
    last, result = same[-1]
    if "missing" in result:
        return "not installed"
    if "skipped" in result or "error" in result:
        return result.get("skipped") or "not run: a smaller size failed"
    if row["part"] == "keys" and result["capped"]:
        return f"not run: {format_count(last['n'])} keys did not fit in {row['budget_s']:g} s"
    if row["part"] == "cancel":
        predicted = result["seconds"] * (row["n"] / last["n"]) ** 2
        if predicted > row["budget_s"]:
            return (
                f"not run: {format_count(last['n'])} took {result['seconds']:.1f} s, so "
                f"{format_count(row['n'])} may take {predicted:.0f} s"
            )
    return None


def _measure_here(row: Row) -> Row:
    try:
        return asyncio.run(MEASURE[row["part"]](row))
    except ImportError as exc:
        return {"missing": str(exc).split(" (/")[0]}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _run_rows(
    rows: list[Row], execute: Callable[[list[Row]], list[Row]], per_row: bool
) -> list[tuple[Row, Row]]:
    """Run rows in order, skipping those `_skip_reason` rules out; `execute` runs a batch."""
    done: list[tuple[Row, Row]] = []
    batches: list[list[Row]] = []
    for row in rows:
        if per_row or not batches or batches[-1][0]["part"] != row["part"]:
            batches.append([row])
        else:
            batches[-1].append(row)
    for batch in batches:
        part = batch[0]["part"]
        if not done or done[-1][0]["part"] != part:
            print(f"scaling: measuring {PARTS[part]}", file=sys.stderr, flush=True)
        if len(batch) == 1:
            reason = _skip_reason(batch[0], done)
            if reason is not None:
                done.append((batch[0], {"skipped": reason}))
                continue
        done += zip(batch, execute(batch), strict=True)
    return done


def _child_main(rows: list[Row]) -> list[Row]:
    done: list[tuple[Row, Row]] = []
    for row in rows:
        reason = _skip_reason(row, done)
        done.append((row, {"skipped": reason} if reason else _measure_here(row)))
    return [result for _, result in done]


def _in_child(rows: list[Row]) -> list[Row]:
    """Measure rows in a fresh interpreter (this file run as a script)."""
    budget = sum(row.get("budget_s", 60) for row in rows) + 300
    try:
        proc = subprocess.run(
            [sys.executable, __file__, json.dumps(rows)],
            capture_output=True,
            text=True,
            timeout=budget,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [{"error": f"no answer within {budget:.0f} s"} for _ in rows]
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return [{"error": tail[0]} for _ in rows]
    results: list[Row] = json.loads(proc.stdout)
    return results


# -- rows to run, and the report --------------------------------------------------------------


def plan(sizes: Sizes) -> list[Row]:
    """Every row of the group, in the order they run: the rows compared with each other run
    one right after the other (ours and the peers at one size), so that they share the
    machine's state of that moment."""
    rows: list[Row] = []
    for mode in (LIVE, EXPIRING):
        for n in sizes.keys:
            rows += [
                {
                    "part": "keys",
                    "lib": lib,
                    "variant": mode,
                    "n": n,
                    "budget_s": sizes.key_budget_s,
                }
                for lib in KEY_LIBS
            ]
    families = dict.fromkeys(family for _, family, _ in TASK_CASES.values())
    for family in families:
        for n in sizes.tasks:
            rows += [
                {"part": "tasks", "lib": case, "n": n, "calls": sizes.task_calls}
                for case, (_, case_family, _) in TASK_CASES.items()
                if case_family == family
            ]
    for lib in BREAKER_LIBS:
        counts = (1,) if lib == "window" else sizes.breakers
        rows += [
            {"part": "breakers", "lib": lib, "n": n, "window_calls": sizes.window_calls}
            for n in counts
        ]
    for order in (NEWEST, OLDEST):
        for n in sizes.waiters:
            rows += [
                {
                    "part": "cancel",
                    "lib": lib,
                    "variant": order,
                    "n": n,
                    "budget_s": sizes.cancel_budget_s,
                }
                for lib in CANCEL_LIBS
            ]
    return rows


def _by_series(
    done: Iterable[tuple[Row, Row]], part: str
) -> dict[tuple[str, str | None], dict[int, Row]]:
    series: dict[tuple[str, str | None], dict[int, Row]] = {}
    for row, result in done:
        if row["part"] == part:
            series.setdefault((row["lib"], row.get("variant")), {})[row["n"]] = result
    return series


def _cell_error(result: Row) -> str | None:
    if "missing" in result:
        return "not installed"
    if "skipped" in result:
        return str(result["skipped"])
    if "error" in result:
        return f"failed: {result['error']}"
    return None


def _us(ns: float | None) -> str:
    if ns is None:
        return "—"
    us = ns / 1000
    return f"{us:,.0f}" if us >= 100 else f"{us:.2f}" if us < 10 else f"{us:.1f}"


def _ms(ns: float) -> str:
    ms = ns / 1e6
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e6:,.1f}" if value >= 1e6 else f"{value / 1e6:.3f}"


def _bytes(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _goal(
    title: str, label: str, ratio: float | None, bound: float, detail: str = ""
) -> GoalResult:
    return GoalResult(title, label, ratio, bound, detail)


def _keys_results(
    done: list[tuple[Row, Row]], sizes: Sizes
) -> tuple[list[GroupResult], list[Chart]]:
    series = _by_series(done, "keys")
    results: list[GroupResult] = []
    charts: list[Chart] = []
    largest, smallest = max(sizes.keys), min(sizes.keys)
    for mode in (LIVE, EXPIRING):
        rows: list[list[str]] = []
        notes: list[str] = []
        for n in sizes.keys:
            ours = series.get((OURS_KEYS, mode), {}).get(n, {})
            for lib, label in KEY_LIBS.items():
                result = series.get((lib, mode), {}).get(n)
                if result is None:
                    continue
                name = f"**{label}**" if lib == OURS_KEYS else label
                problem = _cell_error(result)
                if problem is not None:
                    rows.append([format_count(n), name, "", "", "", "", "", problem])
                    continue
                first = series[(lib, mode)].get(smallest, {})
                growth = (
                    format_ratio(result["median_ns"] / first["median_ns"])
                    if "median_ns" in first and first["median_ns"] > 0
                    else "—"
                )
                versus = (
                    format_ratio(result["median_ns"] / ours["median_ns"])
                    if lib != OURS_KEYS and ours.get("median_ns", 0) > 0
                    else "—"
                )
                memory = result["memory"]
                per_key = None if memory is None else memory / result["reached"]
                check = (
                    f"stopped at {format_count(result['reached'])} keys after {result['seconds']:.0f} s"
                    if result["capped"]
                    else f"{result['seconds']:.1f} s"
                )
                rows.append(
                    [
                        format_count(n),
                        name,
                        _us(result["median_ns"]),
                        growth,
                        versus,
                        f"{_ms(result['max_ns'])} ({_ms(result['max_wall_ns'])})",
                        f"{_mb(memory)} ({_bytes(per_key)} B/key)",
                        check,
                    ]
                )
        limit = (
            "none expiring: `RateLimiter(1, per=3600)` and the same limit in each peer"
            if mode == LIVE
            else "each bucket full again a millisecond later: `RateLimiter(1, per=0.001)` and "
            "the same limit in aiolimiter and nopanic (limits counts in whole seconds: one "
            "per second)"
        )
        intro = (
            f"N distinct keys, one permit each, {limit}. Median: wall time per call over the "
            "N/10 calls made after the N keys (at least 500), the loop turn subtracted. "
            "Slowest: the longest call of the whole run, loop turn included, on the thread's "
            "CPU clock (the wall clock in brackets, which the machine's other work inflates). "
            "Memory: what the heap grew by while the N keys went in. aiolimiter keeps no "
            "keys, so its users hold one `AsyncLimiter` per key in a dict; nopanic's `keyed` "
            "holds one `rate_limit` per key in an LRU (its `maxsize` set above every size)."
        )
        title = f"Scaling (a): rate-limit keys, {mode}"
        goals: list[GoalResult] = []
        if mode == LIVE:
            ours = series.get((OURS_KEYS, LIVE), {})
            top, bottom = ours.get(largest, {}), ours.get(smallest, {})
            slowest = top.get("max_ns")
            goals.append(
                _goal(
                    title,
                    f"slowest RateLimiter.acquire() at {format_count(largest)} live keys <= 1 ms",
                    None if slowest is None else slowest / 1e6,
                    1.0,
                    "" if slowest is None else f"{_ms(slowest)} ms",
                )
            )
            ratio = (
                top["median_ns"] / bottom["median_ns"]
                if "median_ns" in top and bottom.get("median_ns", 0) > 0
                else None
            )
            goals.append(
                _goal(
                    title,
                    f"median per call at {format_count(largest)} live keys <= 1.5x at "
                    f"{format_count(smallest)}",
                    ratio,
                    1.5,
                )
            )
        notes += [
            f"goal: {goal.label}: {format_ratio(goal.ratio, goal.max_ratio)}, {format_met(goal.met)}"
            + (f" ({goal.detail})" if goal.detail else "")
            for goal in goals
        ]
        results.append(
            GroupResult(
                "scaling",
                title,
                [
                    "keys",
                    "case",
                    "median µs/call",
                    f"vs {format_count(smallest)} keys",
                    "vs resilient",
                    "slowest call, ms: CPU (wall)",
                    "memory, MB",
                    "run",
                ],
                rows,
                goals=goals,
                notes=notes,
                intro=intro,
            )
        )
        lines: list[Series] = []
        memory_lines: list[Series] = []
        for index, (lib, label) in enumerate(KEY_LIBS.items()):
            measured = {
                result.get("reached", n): result
                for n, result in series.get((lib, mode), {}).items()
                if "median_ns" in result
            }
            lines.append(
                Series(
                    f"{label}, median",
                    [(n, r["median_ns"] / 1e9) for n, r in measured.items()],
                    color=index,
                )
            )
            lines.append(
                Series(
                    f"{label}, slowest",
                    [(n, r["max_ns"] / 1e9) for n, r in measured.items()],
                    dashed=True,
                    color=index,
                )
            )
            memory_lines.append(
                Series(
                    label,
                    [(n, r["memory"]) for n, r in measured.items() if r["memory"]],
                    color=index,
                )
            )
        charts.append(
            Chart(
                f"scaling-keys-{mode}-time",
                f"Rate limiter, {mode} keys: time per call",
                "distinct keys",
                "time per call",
                lines,
                note="solid: median; dashed: slowest (CPU)",
                x_ticks=sizes.keys,
                alt=f"Per-call time (median and slowest) against the number of {mode} rate-limit keys, log-log",
            )
        )
        charts.append(
            Chart(
                f"scaling-keys-{mode}-memory",
                f"Rate limiter, {mode} keys: memory",
                "distinct keys",
                "heap growth",
                memory_lines,
                y_format=format_bytes,
                alt=f"Memory against the number of {mode} rate-limit keys, log-log",
                x_ticks=sizes.keys,
            )
        )
    return results, charts


def _tasks_results(
    done: list[tuple[Row, Row]], sizes: Sizes
) -> tuple[list[GroupResult], list[Chart]]:
    series = _by_series(done, "tasks")
    time_rows: list[list[str]] = []
    memory_rows: list[list[str]] = []
    for case, (label, _, ours) in TASK_CASES.items():
        results = series.get((case, None), {})
        name = f"**{label}**" if ours else label
        times = [name]
        memory = [name]
        for n in sizes.tasks:
            result = results.get(n, {})
            problem = _cell_error(result) if result else "—"
            if problem is not None:
                times.append(problem)
                memory.append("")
                continue
            peer = series.get((TASK_PEERS.get(case, ""), None), {}).get(n, {})
            cell = _us(result["per_call_ns"])
            if "per_call_ns" in peer and peer["per_call_ns"] > 0:
                cell += f" ({format_ratio(result['per_call_ns'] / peer['per_call_ns'])})"
            times.append(cell)
            memory.append(_bytes(result["bytes_per_task"]))
        time_rows.append(times)
        memory_rows.append(memory)
    headers = ["case", *[f"{format_count(n)} tasks" for n in sizes.tasks]]
    parts = [
        GroupResult(
            "scaling",
            "Scaling (b): concurrent tasks through one policy, µs per call",
            headers,
            time_rows,
            intro=(
                "T tasks make one call each through one shared policy; the call waits on an "
                "`asyncio.Event` until all T are inside, then the event is set. Time per call "
                "is the run's time divided by T (the median of at least three runs, about "
                f"{sizes.task_calls:,} calls in all, the collector off while timed); a "
                "bulkhead or a semaphore has T slots. In brackets: ours against nopanic's "
                "same policy."
            ),
        ),
        GroupResult(
            "scaling",
            "Scaling (b): concurrent tasks through one policy, bytes per task",
            headers,
            memory_rows,
            intro=(
                "The heap held per task while all T calls are inside the policy, the task "
                "and its coroutine included: the row without a policy is that floor."
            ),
        ),
    ]
    family_colors = {
        family: index
        for index, family in enumerate(dict.fromkeys(f for _, f, _ in TASK_CASES.values()))
    }
    time_lines = []
    memory_lines = []
    for case, (label, family, ours) in TASK_CASES.items():
        results = series.get((case, None), {})
        measured = {n: r for n, r in results.items() if "per_call_ns" in r}
        dashed = not ours and family not in ("bare", "semaphore")
        time_lines.append(
            Series(
                label,
                [(n, r["per_call_ns"] / 1e9) for n, r in measured.items()],
                dashed=dashed,
                color=family_colors[family],
            )
        )
        memory_lines.append(
            Series(
                label,
                [(n, r["bytes_per_task"]) for n, r in measured.items() if r["bytes_per_task"]],
                dashed=dashed,
                color=family_colors[family],
            )
        )
    charts = [
        Chart(
            "scaling-tasks-time",
            "Concurrent tasks: time per call",
            "tasks inside the policy at once",
            "time per call",
            time_lines,
            note="solid: resilient; dashed: nopanic",
            alt="Per-call time against the number of concurrent tasks, per policy, log-log",
            x_ticks=sizes.tasks,
        ),
        Chart(
            "scaling-tasks-memory",
            "Concurrent tasks: memory per task in flight",
            "tasks inside the policy at once",
            "heap per task",
            memory_lines,
            y_format=format_bytes,
            note="solid: resilient; dashed: nopanic",
            alt="Heap held per task in flight against the number of concurrent tasks, log-log",
            x_ticks=sizes.tasks,
        ),
    ]
    return parts, charts


def _breakers_results(done: list[tuple[Row, Row]], sizes: Sizes) -> tuple[GroupResult, list[Chart]]:
    series = _by_series(done, "breakers")
    count = max(sizes.breakers)
    rows: list[list[str]] = []
    title = "Scaling (c): memory of circuit breakers"
    peer = series.get(("nopanic", None), {}).get(count, {})
    for lib, label in BREAKER_LIBS.items():
        counts = (1,) if lib == "window" else sizes.breakers
        for n in counts:
            result = series.get((lib, None), {}).get(n)
            if result is None:
                continue
            shown = label.replace("=W", f"={sizes.window_calls:,}")
            name = f"**{shown}**" if lib in ("resilient", "window") else shown
            problem = _cell_error(result)
            if problem is not None:
                rows.append([format_count(n), name, "", "", "", "", problem])
                continue
            versus = (
                format_ratio(result["used"] / peer["used"])
                if "used" in peer and lib != "window"
                else "—"
            )
            rows.append(
                [
                    format_count(n),
                    name,
                    _bytes(result["built"]),
                    _bytes(result["used"]),
                    _mb(result["used"] * n),
                    versus,
                    "",
                ]
            )
    ours = series.get(("resilient", None), {}).get(count, {})
    window = series.get(("window", None), {}).get(1, {})
    goals = [
        _goal(
            title,
            "CircuitBreaker() <= 1,500 bytes",
            ours["used"] / 1500 if "used" in ours else None,
            1.0,
            f"{_bytes(ours.get('used'))} B",
        ),
        _goal(
            title,
            "CircuitBreaker() <= 1.5x nopanic's breaker",
            ours["used"] / peer["used"] if "used" in ours and "used" in peer else None,
            1.5,
        ),
        _goal(
            title,
            f"CircuitBreaker(window_calls={sizes.window_calls:,}) <= 64 KiB",
            window["used"] / 65536 if "used" in window else None,
            1.0,
            f"{_bytes(window.get('used'))} B",
        ),
    ]
    notes = [
        f"goal: {goal.label}: {format_ratio(goal.ratio, goal.max_ratio)}, {format_met(goal.met)}"
        + (f" ({goal.detail})" if goal.detail else "")
        for goal in goals
    ]
    result = GroupResult(
        "scaling",
        title,
        [
            "breakers",
            "case",
            "bytes each, built",
            "bytes each, after a call",
            "total, MB",
            "vs nopanic",
            "check",
        ],
        rows,
        goals=goals,
        notes=notes,
        intro=(
            "N breakers with their defaults, held in a list (purgatory keeps its own, by "
            "name, in its factory: each of them holds its name too), measured with "
            "tracemalloc once built and once each has guarded one successful call. The "
            "count-window row is one breaker after as many calls as its window holds."
        ),
    )
    lines = [
        Series(
            label,
            [(n, r["used"] * n) for n, r in series.get((lib, None), {}).items() if "used" in r],
        )
        for lib, label in BREAKER_LIBS.items()
        if lib != "window"
    ]
    chart = Chart(
        "scaling-breakers-memory",
        "Circuit breakers: memory",
        "breakers",
        "memory, after one call each",
        lines,
        y_format=format_bytes,
        alt="Memory of N circuit breakers against N, log-log",
        x_ticks=sizes.breakers,
    )
    return result, [chart]


def _cancel_results(done: list[tuple[Row, Row]], sizes: Sizes) -> tuple[GroupResult, list[Chart]]:
    series = _by_series(done, "cancel")
    title = "Scaling (d): cancelling queued waiters"
    rows: list[list[str]] = []
    for order in (NEWEST, OLDEST):
        for n in sizes.waiters:
            ours = series.get(("resilient", order), {}).get(n, {})
            peer = series.get(("semaphore", order), {}).get(n, {})
            cells = []
            for result in (ours, peer):
                problem = _cell_error(result) if result else "—"
                cells.append(problem if problem is not None else f"{result['seconds'] * 1000:,.1f}")
            ratio = (
                format_ratio(ours["seconds"] / peer["seconds"])
                if "seconds" in ours and "seconds" in peer
                else "—"
            )
            rows.append([format_count(n), order, *cells, ratio])
    largest = max(sizes.waiters)
    goals = []
    for order, bound in ((NEWEST, 0.1), (OLDEST, 1.0)):
        ours = series.get(("resilient", order), {}).get(largest, {})
        peer = series.get(("semaphore", order), {}).get(largest, {})
        goals.append(
            _goal(
                title,
                f"cancelling {format_count(largest)} queued waiters {order} <= {bound:g}x asyncio.Semaphore",
                ours["seconds"] / peer["seconds"]
                if "seconds" in ours and "seconds" in peer
                else None,
                bound,
            )
        )
    notes = [
        f"goal: {goal.label}: {format_ratio(goal.ratio, goal.max_ratio)}, {format_met(goal.met)}"
        for goal in goals
    ]
    result = GroupResult(
        "scaling",
        title,
        ["waiters", "order", "Bulkhead(1), ms", "asyncio.Semaphore(1), ms", "ratio"],
        rows,
        goals=goals,
        notes=notes,
        intro=(
            "One task holds the only slot; N more wait in the queue "
            "(`Bulkhead(1, max_waiting=N)`, or `asyncio.Semaphore(1)`). The time is from the "
            "first `task.cancel()` until every waiter has ended, cancelled, with the newest "
            "waiter cancelled first or the oldest first. A size whose predicted time is too "
            f"long (over {sizes.cancel_budget_s:g} s, if it grew as the square of N) is not run."
        ),
    )
    lines = []
    for index, (lib, label) in enumerate(CANCEL_LIBS.items()):
        for order in (NEWEST, OLDEST):
            measured = series.get((lib, order), {})
            lines.append(
                Series(
                    f"{label}, {order}",
                    [(n, r["seconds"]) for n, r in measured.items() if "seconds" in r],
                    dashed=order == OLDEST,
                    color=index,
                )
            )
    chart = Chart(
        "scaling-cancel-time",
        "Cancelling queued waiters: total time",
        "queued waiters",
        "time to cancel them all",
        lines,
        note="solid: newest-first; dashed: oldest-first",
        alt="Time to cancel N queued waiters against N, log-log",
        x_ticks=sizes.waiters,
    )
    return result, [chart]


def report(done: list[tuple[Row, Row]], sizes: Sizes) -> list[GroupResult]:
    keys, key_charts = _keys_results(done, sizes)
    tasks, task_charts = _tasks_results(done, sizes)
    breakers, breaker_charts = _breakers_results(done, sizes)
    cancel, cancel_charts = _cancel_results(done, sizes)
    parts = [*keys, *tasks, breakers, cancel]
    # Each chart goes with the part it draws.
    keys[0].charts = key_charts[:2]
    keys[1].charts = key_charts[2:]
    tasks[0].charts = task_charts[:1]
    tasks[1].charts = task_charts[1:]
    breakers.charts = breaker_charts
    cancel.charts = cancel_charts
    return parts


def run(settings: Settings, sizes: Sizes | None = None) -> list[GroupResult]:
    """Measure every part (in children, see the module docstring) and report them."""
    if sizes is None:
        sizes = Sizes.quick() if settings.quick else Sizes.full()
    started = time.perf_counter()
    done = _run_rows(plan(sizes), _in_child, sizes.child_per_row)
    parts = report(done, sizes)
    parts[-1].notes.append(f"the scaling group took {time.perf_counter() - started:.0f} s")
    if any("error" in result for _, result in done):
        # A row that broke (not a peer missing, nor a row skipped) fails the run, as a
        # crashed group does; its cell in the table says what went wrong.
        for part in parts:
            part.failed = True
    return parts


if __name__ == "__main__":
    print(json.dumps(_child_main(json.loads(sys.argv[1]))))
