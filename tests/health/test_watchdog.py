"""Watchdog: loop lag and memory measured from a background task, graded pass/warn/fail."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from resilient.health import Watchdog, WatchdogStatus, _grade, read_memory
from resilient.telemetry import Event, subscribe

pytestmark = pytest.mark.anyio


def block_the_loop(seconds: float) -> None:
    """Hold the event loop, as a synchronous call in a handler would."""
    time.sleep(seconds)


async def wait_for(watchdog: Watchdog, status: str, within: float = 5.0) -> WatchdogStatus:
    with anyio.fail_after(within):
        # Polled: the status is read, not signalled.
        while (seen := watchdog.status()).status != status:  # noqa: ASYNC110
            await anyio.sleep(0.005)
    return seen


async def test_a_blocked_loop_fails_and_recovers_to_pass() -> None:
    watchdog = Watchdog(max_loop_lag=0.1, interval=0.01)
    async with watchdog:
        await wait_for(watchdog, "pass")
        block_the_loop(0.3)
        seen = watchdog.status()
        assert seen.status == "fail"
        assert seen.loop_lag is not None
        assert seen.loop_lag >= 0.1
        recovered = await wait_for(watchdog, "pass")
        assert recovered.loop_lag is not None
        assert recovered.loop_lag <= 0.05


async def test_the_lag_of_a_block_that_ended_is_seen_once_the_watchdog_wakes() -> None:
    watchdog = Watchdog(max_loop_lag=0.1, interval=0.01)
    lags: list[float] = []

    def listener(event: Event) -> None:
        if event.name == "resilient.watchdog.sample":
            lags.append(event.attributes["resilient.watchdog.loop_lag"])

    with subscribe(listener):
        async with watchdog:
            await anyio.sleep(0.03)
            block_the_loop(0.2)
            await anyio.sleep(0.05)
    assert max(lags) >= 0.15


async def test_half_the_lag_limit_warns() -> None:
    assert _grade(0.3, None, 0.5, None) == "warn"
    assert _grade(0.25, None, 0.5, None) == "pass"
    assert _grade(0.51, None, 0.5, None) == "fail"
    assert _grade(None, None, 0.5, None) == "pass"


async def test_memory_past_ninety_percent_warns_and_past_the_limit_fails() -> None:
    assert _grade(0.0, 89, 0.5, 100) == "pass"
    assert _grade(0.0, 91, 0.5, 100) == "warn"
    assert _grade(0.0, 101, 0.5, 100) == "fail"
    assert _grade(0.0, 10**12, 0.5, None) == "pass"


async def test_memory_over_max_memory_fails_a_running_watchdog() -> None:
    resident = read_memory()
    assert resident is not None  # Linux: /proc/self/statm
    watchdog = Watchdog(max_memory=resident // 2, interval=0.01)
    async with watchdog:
        seen = await wait_for(watchdog, "fail")
    assert seen.memory is not None
    assert seen.memory > resident // 2


async def test_memory_is_the_resident_size() -> None:
    watchdog = Watchdog(interval=0.01)
    async with watchdog:
        await anyio.sleep(0.03)
        seen = watchdog.status()
    resident = read_memory()
    assert seen.memory is not None
    assert resident is not None
    # Resident memory of a Python process: megabytes, well under what the machine has.
    assert 1 << 20 < seen.memory < 1 << 40
    assert abs(seen.memory - resident) < 64 << 20


async def test_a_watchdog_not_running_passes_with_nothing_measured() -> None:
    watchdog = Watchdog()
    assert repr(watchdog.status()) == repr(WatchdogStatus("pass", None, None, running=False))
    async with watchdog:
        assert watchdog.status().running
    assert repr(watchdog.status()) == repr(WatchdogStatus("pass", None, None, running=False))


async def test_a_watchdog_runs_again_after_it_stopped_but_not_twice_at_once() -> None:
    watchdog = Watchdog(interval=0.01)
    async with watchdog:
        with pytest.raises(RuntimeError, match="already running"):
            await watchdog.__aenter__()
    async with watchdog:
        await wait_for(watchdog, "pass")
        assert watchdog.status().loop_lag is not None


async def test_an_error_inside_the_block_propagates_and_stops_the_watchdog() -> None:
    watchdog = Watchdog(interval=0.01)
    with pytest.raises(ZeroDivisionError):
        async with watchdog:
            1 / 0  # noqa: B018
    assert not watchdog.status().running


async def test_cancelling_the_block_stops_the_watchdog() -> None:
    watchdog = Watchdog(interval=0.01)
    with anyio.move_on_after(0.05):
        async with watchdog:
            await anyio.sleep(10)
    assert not watchdog.status().running


async def test_status_changes_are_events_and_lag_and_memory_are_metrics(
    telemetry: Any,
) -> None:
    events: list[Event] = []
    watchdog = Watchdog(max_loop_lag=0.1, interval=0.01, name="loop")
    with subscribe(events.append):
        async with watchdog:
            await anyio.sleep(0.03)
            block_the_loop(0.25)
            await wait_for(watchdog, "pass")
            memory = telemetry.metric_total("resilient.watchdog.memory", policy="loop")
            resident = read_memory()
            assert resident is not None
            assert abs(memory - resident) < 64 << 20
    changes = [
        (e.attributes["resilient.health.from"], e.attributes["resilient.health.to"])
        for e in events
        if e.name == "resilient.health.status_changed"
    ]
    assert ("pass", "fail") in changes
    assert changes[-1][1] == "pass"
    assert all(e.kind == "watchdog" and e.policy == "loop" for e in events)
    assert telemetry.metric_total("resilient.watchdog.loop_lag", policy="loop") >= 3
    # Once stopped, the memory it reported is taken back.
    assert telemetry.metric_total("resilient.watchdog.memory", policy="loop") == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_loop_lag": 0}, "max_loop_lag"),
        ({"max_loop_lag": -1}, "max_loop_lag"),
        ({"max_loop_lag": float("nan")}, "max_loop_lag"),
        ({"max_loop_lag": "1"}, "max_loop_lag"),
        ({"max_memory": 0}, "max_memory"),
        ({"max_memory": 1.5e9}, "max_memory"),
        ({"max_memory": True}, "max_memory"),
        ({"interval": 0}, "interval"),
        ({"interval": float("inf")}, "interval"),
        ({"name": ""}, "name"),
        ({"telemetry": 1}, "telemetry"),
    ],
)
def test_arguments_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field) as raised:
        Watchdog(**kwargs)  # type: ignore[arg-type]
    assert repr(next(iter(kwargs.values())))[:3] in str(raised.value)


def test_defaults_are_the_documented_ones() -> None:
    watchdog = Watchdog()
    assert (watchdog.max_loop_lag, watchdog.max_memory, watchdog.interval) == (0.5, None, 0.5)


async def test_the_status_is_the_string_it_grades_to() -> None:
    watchdog = Watchdog(max_loop_lag=0.1, interval=0.01)
    async with watchdog:
        block_the_loop(0.3)
        seen = watchdog.status()
        assert seen == "fail"
        assert seen.status == "fail"
        assert type(seen.status) is str
        assert seen in {"fail"}
        assert f"{seen}" == "fail"


def test_a_status_is_one_of_the_three() -> None:
    with pytest.raises(ValueError, match="status"):
        WatchdogStatus("ok")  # type: ignore[arg-type]
