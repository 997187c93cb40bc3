"""Group 9, throughput: 1,000 concurrent tasks x 10 calls each through one shared Pipeline.

The call yields to the loop once (`await asyncio.sleep(0)`), so all tasks really are inside
the policies at the same time. This is foremost a hang check: every run must finish within
`GUARD_S` seconds and every call must succeed; calls/s are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from _harness import GroupResult, Settings, format_ns
from group_rate_limit import RATE

TASKS = 1_000
CALLS_PER_TASK = 10
GUARD_S = 60.0

Call = Callable[[], Awaitable[int]]


async def _yielding() -> int:
    await asyncio.sleep(0)
    return 1


def _cases() -> tuple[dict[str, Callable[[], Call]], list[str]]:
    """Name -> factory of the call to drive; the factories build fresh policies per run."""
    cases: dict[str, Callable[[], Call]] = {"bare `await f()` (no policy)": lambda: _yielding}
    skipped: list[str] = []
    try:
        from resilient import Bulkhead, CircuitBreaker, Pipeline, RateLimiter, Retry, Timeout
    except ImportError as exc:
        skipped.append(f"Pipeline cases: skipped, import failed ({exc})")
        return cases, skipped

    def pipeline(bulkhead: Bulkhead) -> Call:
        policy = Pipeline(RateLimiter(RATE), Timeout(10), Retry(), CircuitBreaker(), bulkhead)
        return policy(_yielding)

    # A slot for every task: the happy path under contention of shared state.
    cases[f"Pipeline, Bulkhead({TASKS})"] = lambda: pipeline(Bulkhead(TASKS))
    # Ten slots and a queue for everyone else: exercises the waiting path, where a lost
    # wake-up would show up as a hang.
    cases[f"Pipeline, Bulkhead(10, max_waiting={TASKS})"] = lambda: pipeline(
        Bulkhead(10, max_waiting=TASKS)
    )
    return cases, skipped


async def _drive(call: Call) -> tuple[float, int]:
    """Run TASKS tasks of CALLS_PER_TASK calls; returns (seconds, failed calls)."""
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for _ in range(CALLS_PER_TASK):
            try:
                await call()
            except Exception:
                failures += 1

    start = time.perf_counter()
    async with asyncio.timeout(GUARD_S), asyncio.TaskGroup() as group:
        for _ in range(TASKS):
            group.create_task(worker())
    return time.perf_counter() - start, failures


def run(settings: Settings) -> GroupResult:
    cases, skipped = _cases()
    repeats = 1 if settings.quick else 5
    rows: list[list[str]] = []
    notes: list[str] = []
    failed = False

    async def main() -> None:
        nonlocal failed
        for name, factory in cases.items():
            durations: list[float] = []
            errors = 0
            try:
                for _ in range(repeats):
                    gc.collect()
                    seconds, errors = await _drive(factory())
                    durations.append(seconds)
                    if errors:
                        break
            except TimeoutError:
                rows.append([name, "", "", f"**HANG**: not done within {GUARD_S:g} s"])
                failed = True
                continue
            except Exception as exc:
                rows.append([name, "", "", f"**failed**: {type(exc).__name__}: {exc}"])
                failed = True
                continue
            total = TASKS * CALLS_PER_TASK
            seconds = statistics.median(durations)
            check = "all calls succeeded" if not errors else f"**{errors} of {total} calls failed**"
            failed = failed or bool(errors)
            rows.append([name, format_ns(total / seconds), f"{seconds * 1000:.1f}", check])

    # A backstop for a hang that the loop cannot interrupt (a blocking call inside a policy):
    # dump every thread's stack and exit rather than sit there forever.
    faulthandler.dump_traceback_later(
        GUARD_S * len(cases) * repeats + 30, exit=True, file=sys.stderr
    )
    try:
        asyncio.run(main())
    finally:
        faulthandler.cancel_dump_traceback_later()
    if failed:
        notes.append("the hang check failed: see the rows above")
    return GroupResult(
        "throughput",
        "Throughput (hang check)",
        ["case", "calls/s", f"ms per {TASKS * CALLS_PER_TASK:,} calls", "check"],
        rows,
        skipped=skipped,
        notes=notes,
        intro=f"{TASKS:,} concurrent tasks x {CALLS_PER_TASK} calls each through one shared "
        "policy; the call does `await asyncio.sleep(0)`. Median of "
        f"{repeats} run(s), each guarded by a {GUARD_S:g} s timeout. Calls/s is for scale "
        "only; what is checked is that every run ends and every call succeeds.",
        failed=failed,
    )
