"""Static checks of resilient.health and HealthApp (run by mypy, never executed)."""

from __future__ import annotations

from typing import Any, assert_type

from resilient import CircuitBreaker
from resilient.asgi import HealthApp
from resilient.health import HealthChecks, HealthReport, Status, Watchdog, WatchdogStatus
from resilient.storage import MemoryStore


async def database() -> bool:
    return True


async def reason() -> str | None:
    return None


async def check_health_is_typed() -> None:
    async with Watchdog(max_loop_lag=0.2) as watchdog:
        assert_type(watchdog, Watchdog)
        assert_type(watchdog.status(), WatchdogStatus)
        assert_type(watchdog.status().status, Status)
        assert_type(watchdog.status().loop_lag, float | None)
        assert_type(watchdog.status().memory, int | None)
    health = HealthChecks(
        checks={"db": database, "replica": reason},
        breakers=[CircuitBreaker()],
        stores=[MemoryStore()],
        watchdog=Watchdog(),
    )
    report = await health.run()
    assert_type(report, HealthReport)
    assert_type(report.to_json(details=True), dict[str, Any])
    app = HealthApp(checks={"db": database}, details=True)
    assert_type(app.health, HealthChecks)


def check_wrong_health_arguments_are_type_errors() -> None:
    HealthApp(checks={"db": "SELECT 1"})  # type: ignore[dict-item]
    HealthApp(breakers=[object()])  # type: ignore[list-item]
    Watchdog(max_memory="1G")  # type: ignore[arg-type]
