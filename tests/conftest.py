"""Shared fixtures: both anyio backends, a fake clock, in-memory OpenTelemetry, and real
Redis servers (see redis_servers.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from redis_servers import RedisCluster, RedisServer
from resilient.testing import FakeClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every `@pytest.mark.anyio` test runs once on asyncio and once on trio."""
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Telemetry:
    """What the policies under test emitted, read back from the OpenTelemetry SDK."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    baseline: dict[tuple[str, frozenset[tuple[str, Any]]], float] = field(default_factory=dict)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def _collect(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], float]:
        data = self.reader.get_metrics_data()
        values: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}
        if data is None:
            return values
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    for point in m.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # histogram: the number of recordings
                        key = (m.name, frozenset((point.attributes or {}).items()))
                        values[key] = value
        return values

    def metric_points(self, metric: str) -> list[tuple[dict[str, Any], float]]:
        """(attributes, value) of every data point of `metric`, counted since the test began."""
        return [
            (dict(attrs), value - self.baseline.get((name, attrs), 0))
            for (name, attrs), value in self._collect().items()
            if name == metric
        ]

    def metric_total(self, metric: str, policy: str | None = None, **attributes: Any) -> float:
        """Sum of `metric` since the test began over points matching `attributes`
        (`policy=` is short for the `resilient.policy.name` attribute)."""
        if policy is not None:
            attributes["resilient.policy.name"] = policy
        return sum(
            value
            for attrs, value in self.metric_points(metric)
            if all(attrs.get(k) == v for k, v in attributes.items())
        )


_PROVIDERS: Telemetry | None = None


def _install_sdk() -> Telemetry:
    # OpenTelemetry's global providers can be set once per process, so the SDK is installed
    # on first use and shared; each test gets a cleared exporter and fresh metric baselines.
    global _PROVIDERS
    if _PROVIDERS is None:
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _PROVIDERS = Telemetry(exporter, reader)
    return _PROVIDERS


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """The OpenTelemetry SDK with in-memory exporters, cleared for this test.

    Metric values are cumulative across the process, so assert on metrics with a fresh
    policy `name=` per test.
    """
    providers = _install_sdk()
    providers.exporter.clear()
    providers.baseline = providers._collect()
    yield providers
    providers.exporter.clear()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis server: `REDIS_URL`, or one started for the session."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """The URL of one node of a Redis Cluster of three masters: `REDIS_CLUSTER_URL`, or one
    started for the session."""
    given = os.environ.get("REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    cluster = RedisCluster().start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis server of this test's own, to kill, pause and restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests share servers without sharing state."""
    return f"test-{uuid.uuid4().hex[:12]}"
