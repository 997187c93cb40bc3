"""Run resilient's benchmarks against the peer libraries and print markdown tables.

Usage (from the repository root; `make bench` installs the peers and runs this):

    python benchmarks/run.py                      # every group, full length (~8 minutes)
    python benchmarks/run.py --quick              # a short run, for smoke tests
    python benchmarks/run.py --only timeout,retry # some groups only
    python benchmarks/run.py --processes 3        # each group in 3 fresh processes, combined
    python benchmarks/run.py --seed 1234          # repeat a run's round order
    python benchmarks/run.py --write-docs         # also rewrite docs/performance.md
    python benchmarks/run.py --only scaling --write-docs  # only the scaling part of it
    python benchmarks/run.py --only redis --write-docs    # only the Redis part of it

The scaling group (several minutes in full, with its charts in docs/img/) and the redis
group (it needs a Redis, see group_redis.py) each have a part of the page of their own: a
run that leaves one out keeps its part as it was, and a run of one alone keeps the rest.

A case whose import fails (a peer not installed, a policy that has not landed yet) is
skipped and named in the output; the rest of its group still runs. Goals are reported, not
asserted: the exit status is non-zero only when something broke (the throughput hang check,
a crashed group).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import inspect
import json
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from _harness import (
    GoalResult,
    GroupResult,
    Measurement,
    Settings,
    format_met,
    format_range,
    format_ratio,
    markdown_table,
)

# Order of the report. Each module has either GROUP (a standard `_harness.Group`) or a
# `run(settings)` of its own (subprocesses, throughput) returning one result or several.
GROUPS: dict[str, str] = {
    "retry": "group_retry",
    "timeout": "group_timeout",
    "telemetry": "group_telemetry",
    "circuit_breaker": "group_circuit_breaker",
    "bulkhead": "group_bulkhead",
    "rate_limit": "group_rate_limit",
    "fallback": "group_fallback",
    "pipeline": "group_pipeline",
    "hedge": "group_hedge",
    "tail": "group_tail",
    "redis": "group_redis",
    "throughput": "group_throughput",
    "scaling": "group_scaling",
    "httpx": "group_httpx",
    "asgi_ratelimit": "group_asgi_ratelimit",
}

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
IMAGES = DOCS.parent / "img"
SCALING = "scaling"  # the groups with a part of the page of their own
REDIS = "redis"

# The page: _docs.INTRO, the per-call results, _docs.REDIS_INTRO, the Redis results,
# _docs.SCALING_INTRO, the scaling results.
RESULTS_HEADING = "## Results\n"
REDIS_HEADING = "## Rate limits on Redis\n"  # the first line of _docs.REDIS_INTRO
REDIS_MARKER = "<!-- redis results: written by benchmarks/run.py, see _docs.py -->\n"
SCALING_HEADING = "## Scaling\n"  # the first line of _docs.SCALING_INTRO
SCALING_MARKER = "<!-- scaling results: written by benchmarks/run.py, see _docs.py -->\n"


# A child measures one standard group and prints its Measurement as JSON; it gets this long.
CHILD_TIMEOUT_S = 900


def _runner_for(key: str, processes: int) -> Callable[[Settings], GroupResult | list[GroupResult]]:
    module = importlib.import_module(GROUPS[key])
    run = getattr(module, "run", None)
    if run is not None:
        if processes == 1:
            return run  # type: ignore[no-any-return]

        if "processes" in inspect.signature(run).parameters:
            # Telemetry runs each part in fresh interpreters of its own, as many as asked.
            return lambda settings: run(settings, processes=processes)  # type: ignore[no-any-return]

        def run_once(settings: Settings) -> GroupResult | list[GroupResult]:
            # Throughput is a hang check, not a ratio: it runs once whatever --processes says.
            result = run(settings)
            for part in result if isinstance(result, list) else [result]:
                part.notes.append("measured once: --processes applies to the standard groups")
            return result  # type: ignore[no-any-return]

        return run_once
    from _harness import measure_group, summarise

    group = module.GROUP
    if processes == 1:
        return lambda settings: summarise(group, [measure_group(group, settings)])
    return lambda settings: summarise(
        group,
        [
            _measure_in_child(key, dataclasses.replace(settings, seed=settings.seed + index))
            for index in range(processes)
        ],
    )


def _measure_in_child(key: str, settings: Settings) -> Measurement:
    """Measure one standard group in a fresh interpreter (see `--child`)."""
    settings_json = json.dumps(dataclasses.asdict(settings))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", key, "--settings", settings_json],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"group {key} exited {proc.returncode} in a child:\n{proc.stderr}")
    return Measurement.from_json(proc.stdout)


def _child(key: str, settings_json: str) -> int:
    from _harness import measure_group

    settings = Settings(**json.loads(settings_json))
    print(measure_group(importlib.import_module(GROUPS[key]).GROUP, settings).to_json())
    return 0


def render_group(result: GroupResult, *, charts: bool = False) -> str:
    """The group's section; with `charts`, the images `write_charts` draws follow it."""
    parts = [f"### {result.title}", ""]
    if result.intro:
        parts += [result.intro, ""]
    parts.append(markdown_table(result.headers, result.rows))
    extra = result.skipped + result.notes
    if extra:
        parts.append("")
        parts += [f"- {line}" for line in extra]
    if charts:
        for chart in result.charts:
            parts += ["", f"![{chart.alt or chart.title}]({IMAGES.name}/{chart.name}.svg)"]
    return "\n".join(parts)


def write_charts(results: Sequence[GroupResult]) -> list[Path]:
    """Draw every chart of `results` into docs/img/ (see _svg.py)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        for chart in result.charts:
            path = IMAGES / f"{chart.name}.svg"
            path.write_text(chart.svg(), encoding="utf-8")
            written.append(path)
    return written


def render_summary(goals: Sequence[GoalResult]) -> str:
    several = any(goal.per_process for goal in goals)
    rows = []
    for goal in goals:
        verdict = format_met(goal.met)
        if goal.per_process:
            agree = sum(r is not None and r <= goal.max_ratio for r in goal.per_process)
            if 0 < agree < len(goal.per_process):
                verdict += f", met in {agree} of {len(goal.per_process)} processes"
        if goal.detail:
            verdict += f" ({goal.detail})"
        row = [goal.group, goal.label, format_ratio(goal.ratio, goal.max_ratio)]
        if several:
            shown = partial(format_ratio, bound=goal.max_ratio)
            row.append(format_range(goal.per_process, shown) if goal.per_process else "")
        rows.append([*row, verdict])
    met = sum(goal.met is True for goal in goals)
    missed = sum(goal.met is False for goal in goals)
    unknown = sum(goal.met is None for goal in goals)
    headers = ["group", "goal", "ratio", "met?"]
    if several:
        headers.insert(3, "range over processes")
    table = markdown_table(headers, rows)
    return f"{table}\n\n{met} met, {missed} missed, {unknown} not measured."


def environment(command: str, seed: int) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.system()} {platform.machine()}, {now}; command: `{command}`; "
        f"seed {seed}"
    )


def write_docs(
    results: str | None, scaling: str | None, settings: Settings, redis: str | None = None
) -> None:
    """Rewrite the page: the hand-written parts from _docs.py, the per-call results, the
    Redis results and the scaling results; results given as None keep what the page held."""
    from _docs import INTRO, REDIS_INTRO, SCALING_INTRO

    old = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
    old_results = old.partition(RESULTS_HEADING)[2].partition("\n" + SCALING_HEADING)[0]
    old_results = old_results.partition("\n" + REDIS_HEADING)[0]
    old_redis = old.partition(REDIS_MARKER)[2].partition("\n" + SCALING_HEADING)[0]
    old_scaling = old.partition(SCALING_MARKER)[2]
    measured = results is not None
    if results is None:
        results = old_results.strip() or "Not measured yet."
    elif old_results.strip() and old_results.strip() != "Not measured yet.":
        results = merge_results(old_results.strip(), results)
    if redis is None:
        redis = old_redis.strip() or "Not measured yet."
    if scaling is None:
        scaling = old_scaling.strip() or "Not measured yet."
    # Kept results were measured with some earlier settings: the full ones, as a rule.
    rounds = settings.rounds if measured else Settings.full().rounds
    intro = INTRO.format(rounds=rounds)
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(
        f"{intro}\n{RESULTS_HEADING}\n{results}\n\n{REDIS_INTRO}\n{REDIS_MARKER}{redis}\n\n"
        f"{SCALING_INTRO}\n{SCALING_MARKER}{scaling}\n",
        encoding="utf-8",
    )


def merge_results(old: str, new: str) -> str:
    """The per-call results of a run of some groups, merged into the page's: the groups
    measured now replace their sections and goal rows, the others keep theirs, and the
    environment line of each run that still has results on the page stays."""

    def parse(text: str) -> tuple[list[str], list[list[str]], list[list[str]], list[str]]:
        head, *parts = text.split("\n\n### ")
        goals = parts[0] if parts and parts[0].startswith("Goals") else ""
        sections = ["### " + part for part in parts if part is not goals]
        table = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in goals.splitlines()
            if line.startswith("|")
        ]
        envs = [env for env in head.split("\n\n") if env.strip()]
        return envs, table[:2], table[2:], sections

    old_envs, old_header, old_rows, old_sections = parse(old)
    new_envs, header, new_rows, new_sections = parse(new)
    if not old_header or not header:  # not tables of this page's making: the new ones win
        return new
    replaced = {section.splitlines()[0] for section in new_sections}
    regrouped = {row[0] for row in new_rows}
    kept_rows = [row for row in old_rows if row[0] not in regrouped]
    sections = [sec for sec in old_sections if sec.splitlines()[0] not in replaced]
    commands = {env.partition("command: ")[2].partition(";")[0] for env in new_envs}
    envs = [
        env for env in old_envs if env.partition("command: ")[2].partition(";")[0] not in commands
    ]
    width = max(len(row) for row in [*header[:1], *kept_rows, *new_rows])
    if len(header[0]) < width:  # a run without --processes: no range column
        header = [
            [*row[:3], "" if i else "range over processes", *row[3:]]
            for i, row in enumerate(header)
        ]
        header[1][3] = "---:"
    rows = [
        row if len(row) == width else [*row[:3], "", *row[3:]] for row in [*kept_rows, *new_rows]
    ]
    met = sum(row[-1].startswith("yes") for row in rows)
    missed = sum(row[-1].startswith("**no**") for row in rows)
    table = "\n".join("| " + " | ".join(row) + " |" for row in [*header, *rows])
    tally = f"{met} met, {missed} missed, {len(rows) - met - missed} not measured."
    goals = f"### Goals\n\n{table}\n\n{tally}"
    return "\n\n".join([*envs, *new_envs, goals, *sections, *new_sections])


def scaling_results(results: Sequence[GroupResult], env_line: str, *, what: str = "Scaling") -> str:
    """A group with a part of its own on the page: the run, its goals, its tables and charts."""
    goals = [goal for result in results for goal in result.goals]
    sections = [render_group(result, charts=True) for result in results]
    return "\n\n".join([env_line, f"### {what} goals\n\n" + render_summary(goals), *sections])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (smoke test)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated groups to run: " + ", ".join(GROUPS),
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="measure each standard group in N fresh processes, one after the other, and "
        "keep the median of each figure (default 1: in this process)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the round order (default: a new one, printed in the report)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"write the tables into {DOCS.relative_to(ROOT)}"
    )
    # Internal: measure one standard group and print its Measurement as JSON.
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return _child(args.child, args.settings)
    if args.processes < 1:
        parser.error("--processes must be at least 1")

    keys = [key.strip() for key in args.only.split(",") if key.strip()] or list(GROUPS)
    unknown = [key for key in keys if key not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    seed = random.SystemRandom().randrange(2**31) if args.seed is None else args.seed
    settings = Settings.quick_run() if args.quick else Settings.full()
    settings = dataclasses.replace(settings, seed=seed)
    # The groups measure resilient with telemetry on and no SDK configured (the telemetry
    # group covers the SDK): a provider named in the environment would change that.
    for var in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"):
        os.environ.pop(var, None)

    shown_args = " ".join(sys.argv[1:] if argv is None else argv)
    command = f"python benchmarks/run.py {shown_args}".strip()
    env_line = environment(command, seed)
    print(f"# resilient benchmarks\n\n{env_line}\n", flush=True)

    started = time.perf_counter()
    sections: list[str] = []
    goals: list[GoalResult] = []
    scaling: list[GroupResult] = []
    redis: list[GroupResult] = []
    broken = False
    for key in keys:
        try:
            result = _runner_for(key, args.processes)(settings)
        except Exception:
            # One broken group (a policy raising at construction, say) must not hide the rest.
            print(f"### {key}\n\ngroup crashed:\n\n```\n{traceback.format_exc()}```\n", flush=True)
            broken = True
            continue
        for part in result if isinstance(result, list) else [result]:
            broken = broken or part.failed
            print(render_group(part) + "\n", flush=True)
            if key == SCALING:
                scaling.append(part)
            elif key == REDIS:
                redis.append(part)
            else:
                sections.append(render_group(part))
                goals += part.goals

    all_goals = goals + [goal for part in redis + scaling for goal in part.goals]
    print("### Goals\n\n" + render_summary(all_goals))
    print(f"\n(measured in {time.perf_counter() - started:.0f} s)")
    if args.write_docs:
        results = None
        if sections:
            results = "\n\n".join([env_line, "### Goals\n\n" + render_summary(goals), *sections])
        scaling_text = None
        if scaling:
            written = write_charts(scaling)
            scaling_text = scaling_results(scaling, env_line)
            print(f"wrote {len(written)} charts into {IMAGES.relative_to(ROOT)}")
        redis_text = scaling_results(redis, env_line, what="Redis") if redis else None
        write_docs(results, scaling_text, settings, redis_text)
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
