"""The measuring machinery shared by every benchmark group.

Method, in one place so every group measures the same way:

- One process and one event loop per group; every case of the group runs in it.
- A case is a *runner*: `await runner(n)` performs `n` calls in a tight loop. Each case
  writes its own loop body (`await f()`, `async with cm: await f()`, ...) so that no extra
  coroutine frame is added to the faces that do not need one.
- Each case is warmed up, then calibrated so that one sample (one `await runner(n)`) takes
  about `target_ns`; `n` stays within [`min_n`, `max_n`].
- Samples are taken in rounds; in each round every case runs once, in an order rotated per
  round, so slow drift of the machine (another job starting, CPU frequency) hits every case
  alike. `gc.collect()` before each round, the collector off during the round.
- The figure kept is the median per-call time over the rounds; the added cost of a case is
  its median minus the median of the bare `await f()` case measured in the same rounds.

Results are compared only as ratios inside one run: the machines are shared and noisy, so
absolute nanoseconds move from run to run, while two cases measured side by side move together.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

__all__ = (
    "BARE",
    "Case",
    "Goal",
    "GoalResult",
    "Group",
    "GroupResult",
    "Runner",
    "Settings",
    "Stats",
    "bare",
    "calls",
    "format_ns",
    "format_ratio",
    "markdown_table",
    "measure",
    "run_group",
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


def calls(fn: Callable[[], Awaitable[object]]) -> Runner:
    """The runner that awaits `fn()` `n` times (for decorated functions and `bare`)."""

    async def run(n: int) -> None:
        for _ in range(n):
            await fn()

    return run


@dataclass(frozen=True)
class Settings:
    """How long to measure; `quick()` is for smoke tests, `full()` for real numbers."""

    target_ns: int
    rounds: int
    warmup_calls: int
    min_n: int
    max_n: int
    quick: bool

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
    """

    name: str
    build: Builder
    ours: bool = False


@dataclass(frozen=True)
class Goal:
    """`case`'s added cost must be at most `max_ratio` times that of `versus`.

    `versus` names one case, or several whose added costs are summed.
    """

    case: str
    versus: tuple[str, ...]
    max_ratio: float
    label: str


@dataclass
class GoalResult:
    group: str
    label: str
    ratio: float | None
    max_ratio: float
    detail: str = ""

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
    names = list(runners)
    for round_index in range(settings.rounds):
        gc.collect()
        gc.disable()
        try:
            shift = round_index % len(names) if names else 0
            for name in names[shift:] + names[:shift]:
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


def format_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def format_met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


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


def summarise(
    group: Group, stats: dict[str, Stats], skipped: list[str], failures: dict[str, str]
) -> GroupResult:
    """Turn a standard group's measurements into its table and goal verdicts."""
    base = stats.get(BARE)
    added: dict[str, float] = {}
    if base is not None:
        added = {name: s.median_ns - base.median_ns for name, s in stats.items()}

    def summed(names: Sequence[str]) -> float | None:
        if any(name not in added for name in names):
            return None
        return sum(added[name] for name in names)

    reference_added = summed(group.reference)
    reference_label = (
        group.reference[0]
        if len(group.reference) == 1
        else f"sum of the {len(group.reference)} peers above, measured one by one"
    )
    # The table's ratio column is against the reference; a goal against anything else (the
    # pipeline's nested stack) shows in the summary only.
    goals_by_case = {goal.case: goal for goal in group.goals if goal.versus == group.reference}
    headers = [*STANDARD_HEADERS]
    headers[4] = "ratio vs " + (group.reference_label or reference_label)

    rows: list[list[str]] = []
    for case in group.cases:
        name = case.name
        if name not in stats:
            reason = failures.get(name)
            if reason is not None:
                rows.append([name, "failed", "", "", "", "", f"n/a ({reason})"])
            continue
        s = stats[name]
        case_added = added.get(name)
        goal = goals_by_case.get(name)
        r = None if name == BARE else ratio(case_added, reference_added)
        rows.append(
            [
                f"**{name}**" if case.ours else name,
                format_ns(s.median_ns),
                format_ns(s.spread_ns),
                "—" if name == BARE else format_ns(case_added),
                format_ratio(r),
                "" if goal is None else f"<= {goal.max_ratio:g}x",
                "" if goal is None else format_met(None if r is None else r <= goal.max_ratio),
            ]
        )
    if len(group.reference) > 1:
        rows.append([reference_label, "", "", format_ns(reference_added), "1.00x", "", ""])

    goal_results = []
    for goal in group.goals:
        r = ratio(added.get(goal.case), summed(goal.versus))
        detail = ""
        missing = [n for n in (goal.case, *goal.versus) if n not in stats]
        if missing:
            detail = "not measured: " + ", ".join(missing)
        goal_results.append(GoalResult(group.title, goal.label, r, goal.max_ratio, detail))
    notes = [f"{name}: failed ({reason})" for name, reason in failures.items()]
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


def run_group(group: Group, settings: Settings) -> GroupResult:
    """Measure a standard group in a fresh event loop of its own."""

    async def main() -> GroupResult:
        skipped: list[str] = []
        failures: dict[str, str] = {}
        runners = await build_runners(group.cases, skipped, failures)
        stats = await measure(runners, settings, failures)
        return summarise(group, stats, skipped, failures)

    return asyncio.run(main())
