"""The measuring machinery shared by every benchmark group.

Method, in one place so every group measures the same way:

- One process and one event loop per group; every case of the group runs in it.
- A case is a *runner*: `await runner(n)` performs `n` calls in a tight loop. Each case
  writes its own loop body (`await f()`, `async with cm: await f()`, ...) so that no extra
  coroutine frame is added to the faces that do not need one.
- Each case is warmed up, then calibrated so that one sample (one `await runner(n)`) takes
  about `target_ns`; `n` stays within [`min_n`, `max_n`].
- Samples are taken in rounds; in each round every case runs once, in an order shuffled per
  round by a seeded generator (the seed is reported, so a run can be repeated), so that slow
  drift of the machine (another job starting, CPU frequency) hits every case alike and no
  case always runs right after the same neighbour. `gc.collect()` before each round, the
  collector off during the round.
- The figure kept is the median per-call time over the rounds; the added cost of a case is
  its median minus the median of its base case (the bare `await f()`, unless the case names
  another) measured in the same rounds.
- A group may be measured in several fresh processes (`run.py --processes N`), one after the
  other, each with its own seed. Every figure (time per call, added cost, ratio) is first
  computed inside each process, then the median over the processes is kept and the lowest
  and highest are shown beside it: what one process gets wrong for a whole run (its memory
  layout, a neighbour busy for a minute) is outvoted by the others.

Results are compared only as ratios inside one run: the machines are shared and noisy, so
absolute nanoseconds move from run to run, while two cases measured side by side move together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import inspect
import json
import random
import re
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

__all__ = (
    "BARE",
    "Case",
    "Goal",
    "GoalResult",
    "Group",
    "GroupResult",
    "Measurement",
    "Runner",
    "Settings",
    "Stats",
    "bare",
    "calls",
    "drive_gets",
    "format_ns",
    "format_ratio",
    "markdown_table",
    "measure",
    "measure_group",
    "run_group",
    "summarise",
)

Runner = Callable[[int], Awaitable[None]]
"""`await runner(n)` makes `n` calls of the case."""

Builder = Callable[[], Runner | Awaitable[Runner]]
"""Builds a case's runner inside the group's event loop; imports happen here, so that a
missing package or a policy that has not landed yet raises ImportError and skips the case."""

BARE = "bare `await f()`"


async def bare() -> int:
    """The trivial call every case wraps: the baseline for added cost."""
    return 1


def wait_until_serving(
    process: subprocess.Popen[Any], port: int, what: str, timeout: float = 20.0
) -> None:
    """Wait until `process` accepts connections on loopback `port`: a server a benchmark
    started. RuntimeError naming `what` when the process exits first or `timeout` seconds
    pass (the caller stops the process)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


def stop_server(process: subprocess.Popen[Any]) -> None:
    """Stop a server a benchmark started: terminate it, and kill it if it lingers."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def drive_gets(
    client: Any, path: str, calls: int, concurrency: int, *, tolerate_errors: bool = False
) -> tuple[float, int]:
    """`calls` GETs of `path` through an HTTP `client` from `concurrency` tasks: (seconds,
    calls answered 200). With `tolerate_errors`, a request that raises counts as not
    answered instead of ending the run (an upstream that fails on purpose)."""
    remaining = calls
    ok = 0

    async def worker() -> None:
        nonlocal remaining, ok
        while remaining > 0:
            remaining -= 1
            try:
                response = await client.get(path)
            except Exception:
                if not tolerate_errors:
                    raise
                continue
            ok += response.status_code == 200

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return time.perf_counter() - start, ok


def calls(fn: Callable[[], Awaitable[object]]) -> Runner:
    """The runner that awaits `fn()` `n` times (for decorated functions and `bare`)."""

    async def run(n: int) -> None:
        for _ in range(n):
            await fn()

    return run


@dataclass(frozen=True)
class Settings:
    """How long to measure; `quick_run()` is for smoke tests, `full()` for real numbers.

    `seed` drives the order of the cases in each round; `run.py` picks one per run and
    reports it (`--seed` repeats a run's order).
    """

    target_ns: int
    rounds: int
    warmup_calls: int
    min_n: int
    max_n: int
    quick: bool
    seed: int = 0

    @classmethod
    def full(cls) -> Settings:
        return cls(
            target_ns=50_000_000,
            rounds=21,
            warmup_calls=5_000,
            min_n=1_000,
            max_n=100_000,
            quick=False,
        )

    @classmethod
    def quick_run(cls) -> Settings:
        return cls(
            target_ns=3_000_000, rounds=3, warmup_calls=300, min_n=100, max_n=10_000, quick=True
        )


@dataclass(frozen=True)
class Case:
    """One way of making the call, measured against the others of its group.

    Args:
        name: the row label.
        build: makes the runner (see `Builder`).
        ours: True for resilient's own cases (the ones goals are about).
        base: the case whose time is subtracted to give this case's added cost (the bare
            call, unless the case wraps something else, such as a call that always fails).
        reference: what the table's ratio column compares this row with, when not the
            group's reference (a failing call is compared with a peer's failing call).
    """

    name: str
    build: Builder
    ours: bool = False
    base: str = BARE
    reference: tuple[str, ...] = ()


@dataclass(frozen=True)
class Goal:
    """`case`'s added cost must be at most `max_ratio` times that of `versus`.

    `versus` names one case, or several whose added costs are summed; with `fastest`, it
    names alternatives instead, and the one with the least added cost in the run is the
    reference (the cheapest way a peer offers to do the same thing).
    """

    case: str
    versus: tuple[str, ...]
    max_ratio: float
    label: str
    fastest: bool = False


@dataclass
class GoalResult:
    group: str
    label: str
    ratio: float | None
    max_ratio: float
    detail: str = ""
    # The same ratio in each process, when the group ran in several (see `summarise`).
    per_process: tuple[float | None, ...] = ()

    @property
    def met(self) -> bool | None:
        """None when the ratio could not be computed (a case skipped or failed)."""
        return None if self.ratio is None else self.ratio <= self.max_ratio


@dataclass(frozen=True)
class Stats:
    median_ns: float
    spread_ns: float  # median absolute deviation over the rounds
    n: int
    samples: tuple[float, ...] = ()  # ns per call, one per round, in round order


@dataclass
class Group:
    """A set of cases measured together, compared with `reference` (one case or a sum)."""

    key: str
    title: str
    cases: list[Case]
    reference: tuple[str, ...]
    goals: list[Goal]
    intro: str = ""
    reference_label: str = ""  # a short name for the ratio column's header


@dataclass
class GroupResult:
    key: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    goals: list[GoalResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    intro: str = ""
    failed: bool = False  # a hard failure (a hang, a crashed subprocess): exit non-zero
    # Drawn into docs/img/ by `run.py --write-docs` and shown under the table (_svg.Chart).
    charts: list[Any] = field(default_factory=list)


@dataclass
class Measurement:
    """What one process measured for a standard group: the input of `summarise`."""

    stats: dict[str, Stats]
    skipped: list[str]
    failures: dict[str, str]
    seed: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        data: dict[str, Any] = json.loads(text)
        stats = {
            name: Stats(**{**values, "samples": tuple(values["samples"])})
            for name, values in data["stats"].items()
        }
        return cls(stats, data["skipped"], data["failures"], data["seed"])


async def _time(runner: Runner, n: int) -> int:
    start = time.perf_counter_ns()
    await runner(n)
    return time.perf_counter_ns() - start


async def measure(
    runners: dict[str, Runner], settings: Settings, failures: dict[str, str]
) -> dict[str, Stats]:
    """Measure every runner (see the module docstring); a runner that raises is dropped and
    its error recorded in `failures`."""
    sizes: dict[str, int] = {}
    for name, runner in list(runners.items()):
        try:
            await runner(settings.warmup_calls)
            probe = max(settings.warmup_calls, 1)
            per_call = min([await _time(runner, probe) for _ in range(3)]) / probe
        except Exception as exc:  # a broken case must not stop its group
            failures[name] = f"{type(exc).__name__}: {exc}"
            del runners[name]
            continue
        wanted = int(settings.target_ns / max(per_call, 1.0))
        sizes[name] = max(settings.min_n, min(settings.max_n, wanted))

    samples: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    shuffler = random.Random(settings.seed)
    for _ in range(settings.rounds):
        # A fresh order every round: drift hits every case alike, and no case is always
        # measured right after the same neighbour (whose garbage or timers it would inherit).
        shuffler.shuffle(order)
        gc.collect()
        gc.disable()
        try:
            for name in order:
                if name not in runners:
                    continue
                n = sizes[name]
                try:
                    elapsed = await _time(runners[name], n)
                except Exception as exc:
                    failures[name] = f"{type(exc).__name__}: {exc}"
                    del runners[name]
                    continue
                samples[name].append(elapsed / n)
                # Let the loop run between samples, as it would between calls in a service:
                # it purges the cancelled timer handles that timeouts leave behind.
                await asyncio.sleep(0)
        finally:
            gc.enable()

    stats: dict[str, Stats] = {}
    for name in runners:
        values = samples[name]
        median = statistics.median(values)
        spread = statistics.median(abs(v - median) for v in values)
        stats[name] = Stats(median, spread, sizes[name], tuple(values))
    return stats


async def build_runners(
    cases: Sequence[Case], skipped: list[str], failures: dict[str, str]
) -> dict[str, Runner]:
    """Build each case's runner; ImportError skips the case (not installed, or the policy
    has not landed yet), any other error marks it failed."""
    runners: dict[str, Runner] = {}
    for case in cases:
        try:
            built = case.build()
            runner = await built if inspect.isawaitable(built) else built
        except ImportError as exc:
            # "cannot import name 'Retry' from 'resilient' (/path/to/__init__.py)": the path
            # says nothing useful in a report.
            reason = re.sub(r" \(/[^)]*\)$", "", str(exc))
            skipped.append(f"{case.name}: skipped, import failed ({reason})")
            continue
        except Exception as exc:
            failures[case.name] = f"{type(exc).__name__}: {exc}"
            continue
        runners[case.name] = runner
    return runners


def format_ns(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.1f}"


def format_ratio(value: float | None, bound: float | None = None) -> str:
    """Two decimals, or three when two would round the ratio onto its goal's `bound`: a
    "1.00x" marked as missed reads as a mistake."""
    if value is None:
        return "—"
    if bound is not None and f"{value:.2f}" == f"{bound:.2f}":
        return f"{value:.3f}x"
    return f"{value:.2f}x"


def format_met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


def format_range(values: Sequence[float | None], fmt: Callable[[float | None], str]) -> str:
    """`low to high` of the values measured, for the figures of several processes."""
    known = [v for v in values if v is not None]
    if not known:
        return "—"
    return f"{fmt(min(known))} to {fmt(max(known))}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is too
    close to zero (noise) to divide by."""
    if numerator is None or denominator is None or denominator <= 1.0:
        return None
    return numerator / denominator


def paired_ratio(numerator: Stats, denominator: Stats) -> float | None:
    """The median over rounds of numerator / denominator, each round's pair measured back
    to back: drift between rounds cancels out, which a ratio of medians does not ensure."""
    pairs = [a / b for a, b in zip(numerator.samples, denominator.samples, strict=False) if b > 0]
    return statistics.median(pairs) if pairs else None


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    right = {
        i for i, h in enumerate(headers) if h not in {"case", "goal", "met?", "group", "check"}
    }
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


STANDARD_HEADERS = ["case", "ns/call", "± (MAD)", "added ns", "ratio", "goal", "met?"]


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


@dataclass
class _Figures:
    """Everything `summarise` reports, computed inside one process's measurement."""

    added: dict[str, float]
    rows: dict[str, float | None]  # the ratio column
    references: dict[tuple[str, ...], float | None]  # summed added cost of a row reference
    goals: list[tuple[float | None, str | None]]  # (ratio, the peer a `fastest` goal chose)


def _figures(group: Group, stats: dict[str, Stats]) -> _Figures:
    bases = {case.name: case.base for case in group.cases}
    added: dict[str, float] = {}
    for name, s in stats.items():
        base = stats.get(bases.get(name, BARE))
        if base is not None:
            added[name] = s.median_ns - base.median_ns

    def summed(names: Sequence[str]) -> float | None:
        if any(name not in added for name in names):
            return None
        return sum(added[name] for name in names)

    rows: dict[str, float | None] = {}
    references: dict[tuple[str, ...], float | None] = {}
    for case in group.cases:
        reference = case.reference or group.reference
        references[reference] = summed(reference)
        if case.name != case.base:
            rows[case.name] = ratio(added.get(case.name), references[reference])

    goals: list[tuple[float | None, str | None]] = []
    for goal in group.goals:
        if goal.fastest:
            measured = [(added[name], name) for name in goal.versus if name in added]
            if not measured:
                goals.append((None, None))
                continue
            cheapest, chosen = min(measured)
            goals.append((ratio(added.get(goal.case), cheapest), chosen))
        else:
            goals.append((ratio(added.get(goal.case), summed(goal.versus)), None))
    return _Figures(added, rows, references, goals)


def _goal_detail(goal: Goal, chosen: Sequence[str | None], known: set[str]) -> str:
    parts: list[str] = []
    picked = [name for name in chosen if name is not None]
    if goal.fastest and picked:
        counts = {name: picked.count(name) for name in dict.fromkeys(picked)}
        if len(counts) == 1:
            parts.append(f"fastest: {picked[0]}")
        else:
            parts.append(
                "fastest: "
                + ", ".join(
                    f"{name} (in {count} of {len(picked)} processes)"
                    for name, count in counts.items()
                )
            )
    missing = [name for name in (goal.case, *goal.versus) if name not in known]
    if missing:
        parts.append("not measured: " + ", ".join(missing))
    return "; ".join(parts)


def summarise(group: Group, runs: Sequence[Measurement]) -> GroupResult:
    """Turn a standard group's measurements (one per process) into its table and goal
    verdicts: each figure is the median over the processes of that figure computed inside
    each process."""
    known = set.intersection(*(set(run.stats) for run in runs)) if runs else set()
    failures: dict[str, str] = {}
    skipped: list[str] = []
    for run in runs:
        failures.update(run.failures)
        skipped += [line for line in run.skipped if line not in skipped]
    per_run = [_figures(group, run.stats) for run in runs]
    several = len(runs) > 1

    reference_label = (
        group.reference[0]
        if len(group.reference) == 1
        else f"sum of the {len(group.reference)} peers above, measured one by one"
    )
    # The ratio column is against each row's reference; a goal against anything else (the
    # pipeline's nested stack, the fastest peer, our own decorator) shows under the table.
    shown: dict[str, Goal] = {}
    for goal in group.goals:
        case = next((c for c in group.cases if c.name == goal.case), None)
        row_reference = (case.reference if case else ()) or group.reference
        if not goal.fastest and goal.versus == row_reference and goal.case not in shown:
            shown[goal.case] = goal
    headers = [*STANDARD_HEADERS]
    headers[4] = "ratio vs " + (group.reference_label or reference_label)
    if several:
        headers[2] = f"range over {len(runs)} processes"

    rows: list[list[str]] = []
    for case in group.cases:
        name = case.name
        if name not in known:
            reason = failures.get(name)
            if reason is not None:
                rows.append([name, "failed", "", "", "", "", f"n/a ({reason})"])
            continue
        medians = [run.stats[name].median_ns for run in runs]
        is_base = name == case.base
        r = None if is_base else _median([f.rows.get(name) for f in per_run])
        goal = shown.get(name)
        rows.append(
            [
                f"**{name}**" if case.ours else name,
                format_ns(statistics.median(medians)),
                format_range(medians, format_ns)
                if several
                else format_ns(runs[0].stats[name].spread_ns),
                "—" if is_base else format_ns(_median([f.added.get(name) for f in per_run])),
                format_ratio(r, None if goal is None else goal.max_ratio),
                "" if goal is None else f"<= {goal.max_ratio:g}x",
                "" if goal is None else format_met(None if r is None else r <= goal.max_ratio),
            ]
        )
    if len(group.reference) > 1:
        total = _median([f.references.get(group.reference) for f in per_run])
        rows.append([reference_label, "", "", format_ns(total), "1.00x", "", ""])

    goal_results: list[GoalResult] = []
    notes: list[str] = []
    for index, goal in enumerate(group.goals):
        values = [f.goals[index][0] for f in per_run]
        chosen = [f.goals[index][1] for f in per_run]
        result = GoalResult(
            group.title,
            goal.label,
            _median(values),
            goal.max_ratio,
            _goal_detail(goal, chosen, known),
            tuple(values) if several else (),
        )
        goal_results.append(result)
        if goal.case not in shown or shown[goal.case] is not goal:
            shown_ratio = format_ratio(result.ratio, goal.max_ratio)
            line = f"goal: {goal.label}: {shown_ratio}, {format_met(result.met)}"
            if several:
                shown_range = format_range(values, partial(format_ratio, bound=goal.max_ratio))
                line += f" (range {shown_range})"
            if result.detail:
                line += f"; {result.detail}"
            notes.append(line)
    notes += [f"{name}: failed ({reason})" for name, reason in failures.items()]
    seeds = ", ".join(str(run.seed) for run in runs)
    if several:
        notes.append(f"{len(runs)} processes, one after the other; round order seeds {seeds}")
    else:
        notes.append(f"round order seed {seeds}")
    return GroupResult(
        group.key,
        group.title,
        headers,
        rows,
        goal_results,
        skipped,
        notes,
        intro=group.intro,
    )


def measure_group(group: Group, settings: Settings) -> Measurement:
    """Measure a standard group in a fresh event loop of its own."""

    async def main() -> Measurement:
        skipped: list[str] = []
        failures: dict[str, str] = {}
        runners = await build_runners(group.cases, skipped, failures)
        stats = await measure(runners, settings, failures)
        return Measurement(stats, skipped, failures, settings.seed)

    return asyncio.run(main())


def run_group(group: Group, settings: Settings) -> GroupResult:
    """Measure a standard group in this process and summarise it."""
    return summarise(group, [measure_group(group, settings)])
