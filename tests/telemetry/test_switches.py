"""The telemetry fast path and its switches.

OpenTelemetry's global providers can be set once per process, so the "no SDK yet" cases run
in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import resilient.telemetry
from resilient.telemetry._core import PolicyTelemetry


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_nothing_is_recorded_while_no_sdk_is_configured_and_spans_start_once_it_is() -> None:
    out = run_python(
        """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from resilient import Timeout

        async def ok():
            return 1

        timeout = Timeout(1, name="late-sdk")
        print(timeout._telemetry.start() is None)
        asyncio.run(timeout.call(ok))

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        asyncio.run(timeout.call(ok))
        print([s.name for s in exporter.get_finished_spans()])
        """
    )
    assert out.splitlines() == ["True", "['resilient.timeout']"]


def test_a_provider_named_by_environment_variable_is_picked_up() -> None:
    out = run_python(
        """
        from resilient.telemetry._core import PolicyTelemetry
        record = PolicyTelemetry("timeout", "env").start()
        print(record is not None and record.span is not None)
        """,
        env={"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"},
    )
    assert out == "True"


@pytest.mark.parametrize("field", ["spans", "metrics"])
def test_configure_rejects_non_bool(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a bool"):
        resilient.telemetry.configure(**{field: "yes"})  # type: ignore[arg-type]


def test_configure_none_leaves_settings_alone() -> None:
    before = (resilient.telemetry.settings.spans, resilient.telemetry.settings.metrics)
    resilient.telemetry.configure()
    after = (resilient.telemetry.settings.spans, resilient.telemetry.settings.metrics)
    assert before == after


def test_metrics_only_still_records_calls(telemetry) -> None:  # type: ignore[no-untyped-def]
    resilient.telemetry.configure(spans=False)
    try:
        record = PolicyTelemetry("timeout", "metrics-only").start()
        assert record is not None
        assert record.span is None
        record.end("success")
    finally:
        resilient.telemetry.configure(spans=True)
    assert telemetry.metric_total("resilient.calls", policy="metrics-only") == 1


def test_everything_off_means_no_record(telemetry) -> None:  # type: ignore[no-untyped-def]
    resilient.telemetry.configure(spans=False, metrics=False)
    try:
        assert PolicyTelemetry("timeout", "off").start() is None
    finally:
        resilient.telemetry.configure(spans=True, metrics=True)


def test_each_recorded_call_adds_one_duration_by_outcome(telemetry) -> None:  # type: ignore[no-untyped-def]
    tel = PolicyTelemetry("timeout", "durations")
    for outcome in ("success", "success", "timeout"):
        record = tel.start()
        assert record is not None
        record.end(outcome)
    assert telemetry.metric_total("resilient.call.duration", policy="durations") == 3
    assert (
        telemetry.metric_total(
            "resilient.call.duration", policy="durations", **{"resilient.outcome": "timeout"}
        )
        == 1
    )
