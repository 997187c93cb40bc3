"""What a policy holds for telemetry while nothing records it: nothing.

A service may build thousands of policies (a breaker per upstream host). With no
OpenTelemetry provider set, none of them carries attribute dictionaries; the first call
recorded once a provider is set builds them. The cases run in a fresh interpreter, where
no provider is set yet.
"""

from __future__ import annotations

from test_switches import run_python  # the suite's helper for a fresh interpreter


def test_policies_used_while_no_sdk_is_set_build_no_opentelemetry_side() -> None:
    out = run_python(
        """
        import asyncio
        from resilient import Bulkhead, CircuitBreaker, RateLimiter, Retry, Timeout

        breaker = CircuitBreaker()
        policies = [breaker, Retry(), Bulkhead(10), RateLimiter(10), Timeout(1)]

        async def ok():
            return 1

        async def main():
            for policy in policies:
                await policy.call(ok)
            async with breaker:
                pass

        asyncio.run(main())
        print([policy._telemetry._otel is None for policy in policies])
        """
    )
    assert out == str([True] * 5)


def test_the_first_recorded_call_builds_the_opentelemetry_side_and_is_recorded() -> None:
    out = run_python(
        """
        import asyncio
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from resilient import CircuitBreaker

        breaker = CircuitBreaker(name="late-sdk")

        async def ok():
            return 1

        asyncio.run(breaker.call(ok))
        print(breaker._telemetry._otel is None)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        asyncio.run(breaker.call(ok))
        print(breaker._telemetry._otel is None)
        points = [
            (dict(point.attributes), point.value)
            for resource in reader.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "resilient.calls"
            for point in metric.data.data_points
        ]
        print(points)
        """
    )
    built_before, built_after, points = out.splitlines()
    assert (built_before, built_after) == ("True", "False")
    assert points == str(
        [
            (
                {
                    "resilient.policy.kind": "circuit_breaker",
                    "resilient.policy.name": "late-sdk",
                    "resilient.outcome": "success",
                },
                1,
            )
        ]
    )


def test_a_circuit_breaker_takes_at_most_one_and_a_half_kib() -> None:
    out = run_python(
        """
        import gc
        import tracemalloc
        from resilient import CircuitBreaker

        CircuitBreaker()  # anything built once per process is built before measuring
        gc.collect()
        tracemalloc.start()
        breakers = [CircuitBreaker() for _ in range(1000)]
        print(tracemalloc.get_traced_memory()[0] // len(breakers))
        """
    )
    assert int(out) <= 1536
