"""Group 3, telemetry: what spans cost, with and without an OpenTelemetry SDK.

OpenTelemetry's global tracer provider can be set only once per process, so each part runs
in a subprocess of its own (this file, run as a script, measures one part and prints JSON):

(a) no SDK configured: a policy with telemetry on against the same policy with
    `telemetry=False`; the check on the fast path should cost next to nothing.
(b) the SDK's TracerProvider with a span processor that does nothing, and no metrics: our cost
    per span (telemetry on minus off, divided by the spans one call makes) against the SDK's
    own bare `with tracer.start_as_current_span("x")`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from _harness import (
    BARE,
    Case,
    GoalResult,
    GroupResult,
    Runner,
    Settings,
    Stats,
    bare,
    build_runners,
    calls,
    format_met,
    format_ns,
    format_ratio,
    measure,
    paired_ratio,
    ratio,
)

POLICIES = ("Timeout(10)", "Retry()")
SDK_SPAN = 'SDK `with tracer.start_as_current_span("x")`'
SDK_ATTRS = "SDK span with the one attribute resilient sets (`resilient.policy.name`)"
NO_SDK_MAX = 1.05
SDK_MAX = 1.2


def _label(policy: str, on: bool) -> str:
    return f"{policy} decorator, telemetry {'on' if on else 'off'}"


def _policy_case(policy: str, on: bool) -> Case:
    def build() -> Runner:
        import resilient

        # `getattr` rather than a from-import: a policy that has not landed yet raises
        # ImportError like any other missing case.
        cls_name = policy.split("(")[0]
        cls = getattr(resilient, cls_name, None)
        if cls is None:
            raise ImportError(f"cannot import name {cls_name!r} from 'resilient'")
        instance = cls(10, telemetry=on) if cls_name == "Timeout" else cls(telemetry=on)
        return calls(instance(bare))

    return Case(_label(policy, on), build, ours=True)


def _sdk_span_case(tracer: Any) -> Case:
    def build() -> Runner:
        async def run(n: int) -> None:
            for _ in range(n):
                with tracer.start_as_current_span("x"):
                    await bare()

        return run

    return Case(SDK_SPAN, build)


def _sdk_attributes_case(tracer: Any) -> Case:
    """For scale, not a goal: an SDK span carrying what every resilient span must carry
    (DESIGN §6: `resilient.policy.name`; a success adds nothing at the end)."""
    attributes = {"resilient.policy.name": "timeout"}

    def build() -> Runner:
        async def run(n: int) -> None:
            for _ in range(n):
                with tracer.start_as_current_span("x", attributes=attributes):
                    await bare()

        return run

    return Case(SDK_ATTRS, build)


def _install_sdk() -> tuple[Any, Any]:
    """Set the SDK's tracer provider with a do-nothing processor; returns (provider, tracer)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class NoopProcessor(SpanProcessor):
        """Receives every span and does nothing: what is left is the cost of making spans."""

    provider = TracerProvider()
    provider.add_span_processor(NoopProcessor())
    trace.set_tracer_provider(provider)
    return provider, trace.get_tracer("bench")


async def _spans_per_call(provider: Any, runners: dict[str, Runner]) -> dict[str, float]:
    """Count the spans one call of each case makes (after the timing, so the counting
    processor never runs while we measure)."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Counting(SpanProcessor):
        def __init__(self) -> None:
            self.count = 0

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            self.count += 1

    counter = Counting()
    provider.add_span_processor(counter)
    counts = {}
    for name, runner in runners.items():
        counter.count = 0
        await runner(100)
        counts[name] = counter.count / 100
    return counts


async def _child(part: str, settings: Settings) -> dict[str, Any]:
    skipped: list[str] = []
    failures: dict[str, str] = {}
    cases = [Case(BARE, lambda: calls(bare))]
    provider = None
    if part == "b":
        try:
            provider, tracer = _install_sdk()
        except ImportError as exc:
            return {"stats": {}, "skipped": [f"part (b) skipped: {exc}"], "failures": {}}
        cases += [_sdk_span_case(tracer), _sdk_attributes_case(tracer)]
    cases += [_policy_case(policy, on) for policy in POLICIES for on in (False, True)]
    runners = await build_runners(cases, skipped, failures)
    stats = await measure(runners, settings, failures)
    spans = await _spans_per_call(provider, runners) if provider is not None else {}
    return {
        "stats": {name: dataclasses.asdict(s) for name, s in stats.items()},
        "spans": spans,
        "skipped": skipped,
        "failures": failures,
    }


def _run_part(part: str, settings: Settings) -> dict[str, Any]:
    env = dict(os.environ)
    # Part (a) means "no SDK configured": a provider named in the environment would be one.
    for var in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER", "OTEL_SDK_DISABLED"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, __file__, part, json.dumps(dataclasses.asdict(settings))],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"telemetry part ({part}) exited {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _stats(data: dict[str, Any]) -> dict[str, Stats]:
    return {
        name: Stats(**{**values, "samples": tuple(values["samples"])})
        for name, values in data["stats"].items()
    }


def _notes(data: dict[str, Any]) -> list[str]:
    return data["skipped"] + [f"{n}: failed ({r})" for n, r in data["failures"].items()]


def _part_a(data: dict[str, Any]) -> GroupResult:
    stats = _stats(data)
    rows: list[list[str]] = []
    goals: list[GoalResult] = []
    if BARE in stats:
        s = stats[BARE]
        rows.append([BARE, format_ns(s.median_ns), format_ns(s.spread_ns), "", "", ""])
    for policy in POLICIES:
        off, on = stats.get(_label(policy, False)), stats.get(_label(policy, True))
        if off is not None:
            rows.append(
                [
                    _label(policy, False),
                    format_ns(off.median_ns),
                    format_ns(off.spread_ns),
                    "1.00x",
                    "",
                    "",
                ]
            )
        r = None if off is None or on is None else paired_ratio(on, off)
        label = f"{policy}: telemetry on (no SDK) <= {NO_SDK_MAX}x telemetry off"
        if on is not None:
            met = format_met(None if r is None else r <= NO_SDK_MAX)
            rows.append(
                [
                    f"**{_label(policy, True)}**",
                    format_ns(on.median_ns),
                    format_ns(on.spread_ns),
                    format_ratio(r),
                    f"<= {NO_SDK_MAX}x",
                    met,
                ]
            )
            goals.append(GoalResult("Telemetry (a)", label, r, NO_SDK_MAX))
    return GroupResult(
        "telemetry",
        "Telemetry (a): no SDK configured",
        ["case", "ns/call", "± (MAD)", "ratio vs telemetry off", "goal", "met?"],
        rows,
        goals,
        skipped=_notes(data),
        intro="opentelemetry-api only, no tracer or meter provider set: the time per call "
        "(not the added cost) with telemetry on, against the same policy with "
        "`telemetry=False`. The ratio is the median over the rounds of each round's on/off "
        "pair, since a 5 % goal is close to the noise of a shared machine. Measured in a "
        "subprocess of its own.",
    )


def _part_b(data: dict[str, Any]) -> GroupResult:
    stats = _stats(data)
    spans: dict[str, float] = data.get("spans", {})
    base = stats.get(BARE)
    sdk = stats.get(SDK_SPAN)
    sdk_added = None if base is None or sdk is None else sdk.median_ns - base.median_ns
    rows: list[list[str]] = []
    goals: list[GoalResult] = []
    headers = ["case", "ns/call", "± (MAD)", "added ns", "spans/call", "ns/span"]
    headers += ["ratio vs SDK span", "goal", "met?"]
    if base is not None:
        rows.append([BARE, format_ns(base.median_ns), format_ns(base.spread_ns), "—", "0"])
        rows[-1] += [""] * (len(headers) - len(rows[-1]))
        for name in (SDK_SPAN, SDK_ATTRS):
            if name in stats:
                s = stats[name]
                added = s.median_ns - base.median_ns
                rows.append(
                    [
                        name,
                        format_ns(s.median_ns),
                        format_ns(s.spread_ns),
                        format_ns(added),
                        "1",
                        format_ns(added),
                        format_ratio(ratio(added, sdk_added)),
                        "",
                        "",
                    ]
                )
    for policy in POLICIES:
        off_name, on_name = _label(policy, False), _label(policy, True)
        off, on = stats.get(off_name), stats.get(on_name)
        if off is not None and base is not None:
            rows.append(
                [
                    off_name,
                    format_ns(off.median_ns),
                    format_ns(off.spread_ns),
                    format_ns(off.median_ns - base.median_ns),
                    "0",
                    "",
                    "",
                    "",
                    "",
                ]
            )
        if on is None or off is None:
            continue
        count = spans.get(on_name, 0.0)
        per_span = (on.median_ns - off.median_ns) / count if count else None
        r = ratio(per_span, sdk_added)
        rows.append(
            [
                f"**{on_name}**",
                format_ns(on.median_ns),
                format_ns(on.spread_ns),
                f"+{format_ns(on.median_ns - off.median_ns)} vs off",
                f"{count:g}",
                format_ns(per_span),
                format_ratio(r),
                f"<= {SDK_MAX}x",
                format_met(None if r is None else r <= SDK_MAX),
            ]
        )
        label = f"{policy}: cost per span <= {SDK_MAX}x the SDK's bare span"
        detail = "" if count else "no span recorded"
        goals.append(GoalResult("Telemetry (b)", label, r, SDK_MAX, detail))
    return GroupResult(
        "telemetry",
        "Telemetry (b): SDK with a no-op span processor",
        headers,
        rows,
        goals,
        skipped=_notes(data),
        intro="opentelemetry-sdk's TracerProvider with one span processor that does nothing, no "
        "meter provider. Our cost per span is (telemetry on - telemetry off) / spans per call "
        "(Retry makes two: the call and its attempt), against the SDK's own bare span. "
        "Measured in a subprocess of its own.",
    )


def _combined(part: str, settings: Settings, processes: int) -> dict[str, Any]:
    """Run one part in `processes` fresh interpreters, one after the other; each figure is
    the median of the per-process medians, the way the standard groups are combined."""
    runs = [
        _run_part(part, dataclasses.replace(settings, seed=settings.seed + index))
        for index in range(processes)
    ]
    if len(runs) == 1:
        return runs[0]
    stats: dict[str, dict[str, Any]] = {}
    for name in runs[0]["stats"]:
        found = [run["stats"][name] for run in runs if name in run["stats"]]
        medians = [values["median_ns"] for values in found]
        stats[name] = {
            "median_ns": statistics.median(medians),
            "spread_ns": (max(medians) - min(medians)) / 2,
            "n": sum(values["n"] for values in found),
            "samples": [sample for values in found for sample in values["samples"]],
        }
    combined = dict(runs[0])
    combined["stats"] = stats
    return combined


def run(settings: Settings, processes: int = 1) -> list[GroupResult]:
    results = [
        _part_a(_combined("a", settings, processes)),
        _part_b(_combined("b", settings, processes)),
    ]
    if processes > 1:
        for result in results:
            result.notes.append(
                f"{processes} processes; each figure is the median of the per-process "
                "medians, ± half their range"
            )
    return results


if __name__ == "__main__":
    part = sys.argv[1]
    child_settings = Settings(**json.loads(sys.argv[2]))
    print(json.dumps(asyncio.run(_child(part, child_settings))))
