"""HealthChecks: readiness from checks, breakers, stores and a watchdog, cached and cut."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from resilient import CircuitBreaker
from resilient.health import ComponentHealth, HealthChecks, HealthReport, Watchdog
from resilient.storage import MemoryStore
from resilient.telemetry import Event, subscribe
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


class Counting:
    """A check that counts its calls and answers `result` after `delay` seconds."""

    def __init__(self, result: bool | str | None = True, delay: float = 0.0) -> None:
        self.result = result
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> bool | str | None:
        self.calls += 1
        if self.delay:
            await anyio.sleep(self.delay)
        return self.result


class DownStore(MemoryStore):
    """A store whose backend is down, as a RedisStore reports it through `available`."""

    @property
    def available(self) -> bool:
        return False


async def passing() -> bool:
    return True


async def broken() -> bool:
    raise ConnectionRefusedError("connection refused")


async def hanging() -> None:
    await anyio.sleep_forever()


async def odd() -> Any:
    return 42


async def test_no_checks_pass() -> None:
    report = await HealthChecks().run()
    assert report == HealthReport("pass", {})
    assert report.to_json(details=True) == {"status": "pass"}


@pytest.mark.parametrize(
    ("result", "status", "output"),
    [
        (True, "pass", None),
        (None, "pass", None),
        (False, "fail", None),
        ("replica lag 40 s", "fail", "replica lag 40 s"),
    ],
)
async def test_what_a_check_returns_decides_its_status(
    result: bool | str | None, status: str, output: str | None
) -> None:
    report = await HealthChecks(checks={"db": Counting(result)}).run()
    assert report.status == status
    assert report.checks["db"] == (ComponentHealth(status, "component", output=output),)  # type: ignore[arg-type]


async def test_a_check_that_raises_fails_with_the_error() -> None:
    report = await HealthChecks(checks={"db": broken, "cache": passing}).run()
    assert report.status == "fail"
    assert report.checks["db"][0].output == "ConnectionRefusedError: connection refused"
    assert report.checks["cache"][0].status == "pass"


async def test_a_check_returning_something_else_fails_and_says_so() -> None:
    report = await HealthChecks(checks={"odd": odd}).run()
    assert report.status == "fail"
    assert "42" in (report.checks["odd"][0].output or "")


async def test_a_hanging_check_is_cut_at_the_timeout() -> None:
    health = HealthChecks(checks={"stuck": hanging, "db": passing}, timeout=0.05)
    with anyio.fail_after(5):
        report = await health.run()
    assert report.status == "fail"
    assert report.checks["stuck"][0].output == "timed out after 0.05s"
    assert report.checks["db"][0].status == "pass"


async def test_checks_run_concurrently() -> None:
    # Each check waits for the other: run one after the other, both would time out.
    first, second = anyio.Event(), anyio.Event()

    async def a() -> bool:
        first.set()
        await second.wait()
        return True

    async def b() -> bool:
        second.set()
        await first.wait()
        return True

    report = await HealthChecks(checks={"a": a, "b": b}, timeout=5).run()
    assert report.status == "pass"


async def test_results_are_cached_for_cache_seconds(clock: FakeClock) -> None:
    check = Counting()
    health = HealthChecks(checks={"db": check}, cache=2.0, clock=clock)
    await health.run()
    await health.run()
    clock.advance(1.9)
    await health.run()
    assert check.calls == 1
    clock.advance(0.1)
    await health.run()
    assert check.calls == 2


async def test_cache_zero_runs_the_checks_for_every_probe() -> None:
    check = Counting()
    health = HealthChecks(checks={"db": check}, cache=0)
    for _ in range(3):
        await health.run()
    assert check.calls == 3


async def test_concurrent_probes_share_one_run_of_the_checks() -> None:
    check = Counting(delay=0.05)
    health = HealthChecks(checks={"db": check}, cache=0)
    reports: list[HealthReport] = []

    async def probe() -> None:
        reports.append(await health.run())

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(probe)
    assert check.calls == 1
    assert len(reports) == 50
    assert all(report.status == "pass" for report in reports)


async def test_a_cancelled_probe_does_not_strand_the_probes_sharing_its_run() -> None:
    entered = anyio.Event()
    release = anyio.Event()
    calls = 0

    async def db() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await release.wait()
        return True

    health = HealthChecks(checks={"db": db}, cache=10)
    follower: list[HealthReport] = []

    async def first() -> None:
        with anyio.CancelScope() as scope:
            cancel_first.append(scope)
            await health.run()

    async def second() -> None:
        follower.append(await health.run())

    cancel_first: list[anyio.CancelScope] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await entered.wait()
            group.start_soon(second)
            await anyio.sleep(0.01)
            cancel_first[0].cancel()
    assert follower[0].status == "pass"
    assert calls == 2


@pytest.mark.parametrize(
    ("setup", "status"),
    [
        ("closed", "pass"),
        ("open", "warn"),
        ("forced_open", "warn"),
        ("disabled", "pass"),
    ],
)
async def test_an_open_breaker_warns(setup: str, status: str) -> None:
    breaker = CircuitBreaker("payments", minimum_calls=1)
    if setup == "open":
        with pytest.raises(ConnectionRefusedError):
            await breaker.call(broken)
    elif setup == "forced_open":
        breaker.force_open()
    elif setup == "disabled":
        breaker.disable()
    assert breaker.state == setup
    report = await HealthChecks(breakers=[breaker]).run()
    assert report.status == status
    assert report.checks["payments:circuitBreaker"] == (
        ComponentHealth(status, "component", setup),  # type: ignore[arg-type]
    )


async def test_a_half_open_breaker_warns(clock: FakeClock) -> None:
    breaker = CircuitBreaker("payments", minimum_calls=1, break_duration=1.0, clock=clock)
    with pytest.raises(ConnectionRefusedError):
        await breaker.call(broken)
    clock.advance(1.0)
    probing, release = anyio.Event(), anyio.Event()

    async def probe() -> None:
        probing.set()
        await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(breaker.call, probe)
        await probing.wait()
        assert breaker.state == "half_open"
        report = await HealthChecks(breakers=[breaker]).run()
        release.set()
    assert report.status == "warn"


async def test_breakers_sharing_a_name_are_listed_under_one_key() -> None:
    open_one = CircuitBreaker("payments")
    open_one.force_open()
    report = await HealthChecks(breakers=[CircuitBreaker("payments"), open_one]).run()
    assert [entry.status for entry in report.checks["payments:circuitBreaker"]] == [
        "pass",
        "warn",
    ]
    assert report.status == "warn"


async def test_a_down_store_fails_and_a_store_without_availability_passes() -> None:
    report = await HealthChecks(stores=[MemoryStore()]).run()
    assert report.status == "pass"
    assert report.checks["MemoryStore:available"][0].observed_value is True
    report = await HealthChecks(stores=[MemoryStore(), DownStore()]).run()
    assert report.status == "fail"
    assert report.checks["DownStore:available"][0].status == "fail"


async def test_a_watchdog_past_its_threshold_fails_readiness() -> None:
    watchdog = Watchdog(max_loop_lag=0.1, interval=0.01)
    health = HealthChecks(watchdog=watchdog)
    assert (await health.run()).status == "pass"  # not running: nothing measured
    async with watchdog:
        time.sleep(0.3)  # noqa: ASYNC251 - a blocked loop is the point
        report = await health.run()
        assert report.status == "fail"
        (lag,) = report.checks["eventLoop:lag"]
        assert lag.observed_unit == "s"
        assert lag.observed_value >= 0.1
        assert report.checks["memory:residentSize"][0].observed_unit == "bytes"
        with anyio.fail_after(5):
            while (await health.run()).status != "pass":  # noqa: ASYNC110 - polled
                await anyio.sleep(0.01)


async def test_the_worst_part_decides_and_each_change_is_an_event(clock: FakeClock) -> None:
    check = Counting()
    breaker = CircuitBreaker("payments")
    health = HealthChecks(checks={"db": check}, breakers=[breaker], cache=0, name="ready")
    events: list[Event] = []
    with subscribe(events.append, policy=health):
        assert (await health.run()).status == "pass"
        breaker.force_open()
        assert (await health.run()).status == "warn"
        check.result = "down"
        assert (await health.run()).status == "fail"
        assert (await health.run()).status == "fail"
        check.result = True
        breaker.reset()
        assert (await health.run()).status == "pass"
    changes = [
        (e.attributes["resilient.health.from"], e.attributes["resilient.health.to"])
        for e in events
        if e.name == "resilient.health.status_changed"
    ]
    assert changes == [("pass", "warn"), ("warn", "fail"), ("fail", "pass")]


async def test_details_show_names_and_errors_only_when_asked() -> None:
    report = await HealthChecks(checks={"db": broken}).run()
    assert report.to_json() == {"status": "fail"}
    assert report.to_json(details=True) == {
        "status": "fail",
        "checks": {
            "db": [
                {
                    "status": "fail",
                    "componentType": "component",
                    "output": "ConnectionRefusedError: connection refused",
                }
            ]
        },
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"checks": [passing]}, "checks"),
        ({"checks": {"": passing}}, "checks"),
        ({"checks": {"db": "SELECT 1"}}, "checks"),
        ({"breakers": "payments"}, "breakers"),
        ({"breakers": [object()]}, "breakers"),
        ({"stores": [object()]}, "stores"),
        ({"stores": 3}, "stores"),
        ({"watchdog": 0.5}, "watchdog"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": None}, "timeout"),
        ({"cache": -1}, "cache"),
        ({"cache": float("nan")}, "cache"),
        ({"clock": object()}, "clock"),
        ({"telemetry": "yes"}, "telemetry"),
    ],
)
def test_arguments_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HealthChecks(**kwargs)


def test_defaults_are_the_documented_ones() -> None:
    health = HealthChecks()
    assert (health.timeout, health.cache, health.watchdog) == (1.0, 1.0, None)
    assert dict(health.checks) == {}
    assert health.breakers == ()
    assert health.stores == ()
