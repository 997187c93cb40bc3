"""Health: what an orchestrator asks a service, answered from what the service knows.

Framework-free; `resilient.asgi.HealthApp` serves it over HTTP.

- `Watchdog` watches the process itself: how late its event loop wakes up (the loop lag)
  and how much memory it holds. A loop that is blocked (CPU-bound work or a synchronous
  call in a handler) delays every request the process serves; the watchdog says so.
- `HealthChecks` runs the checks a service's readiness depends on, each with a timeout and
  all at once, caches their results for a moment so that a storm of probes is not a storm
  of calls to the dependencies, and folds in the state of the service's circuit breakers,
  shared stores and watchdog. Its `HealthReport` is an `application/health+json` body
  (draft-inadarei-api-health-check).

Statuses are the draft's: `"pass"`, `"warn"` (serving, but something deserves a look) and
`"fail"` (take this instance out of rotation). The worst component decides the whole.

Examples:
    ```python
    from resilient.health import HealthChecks, Watchdog

    watchdog = Watchdog(max_loop_lag=0.5)


    async def database() -> bool:
        return True  # e.g. `await pool.execute("SELECT 1")` answered


    health = HealthChecks(checks={"database": database}, watchdog=watchdog)
    async with watchdog:
        report = await health.run()
    assert report.status == "pass"
    ```
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, Literal

import anyio
import anyio.abc

from resilient._clock import Clock
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_non_negative,
    check_positive,
    short_repr,
)
from resilient.circuit_breaker import CircuitBreaker, CircuitState
from resilient.storage._base import BreakerStore, Store
from resilient.telemetry._core import PolicyTelemetry
from resilient.telemetry._spec import Effect, EventSpec, Instrument

__all__ = (
    "Check",
    "ComponentHealth",
    "HealthChecks",
    "HealthReport",
    "Status",
    "Watchdog",
    "WatchdogStatus",
)

#: A health status, per draft-inadarei-api-health-check.
Status = Literal["pass", "warn", "fail"]

#: A readiness check: an `async def` taking no arguments. `True` or `None` pass; `False`
#: fails; a string fails with that string as the reason; an exception fails with the
#: exception as the reason.
Check = Callable[[], Awaitable[bool | str | None]]

_RANK: Final[dict[str, int]] = {"pass": 0, "warn": 1, "fail": 2}

#: The watchdog warns at this share of `max_loop_lag`, and of `max_memory`.
LAG_WARN_RATIO: Final = 0.5
MEMORY_WARN_RATIO: Final = 0.9

ATTR_LAG: Final = "resilient.watchdog.loop_lag"
ATTR_MEMORY: Final = "resilient.watchdog.memory"
ATTR_MEMORY_CHANGE: Final = "resilient.watchdog.memory_change"
ATTR_FROM: Final = "resilient.health.from"
ATTR_TO: Final = "resilient.health.to"

# -- what the watchdog and the checks report (telemetry as data; see resilient.telemetry) --

LOOP_LAG: Final = Instrument(
    "resilient.watchdog.loop_lag",
    "histogram",
    "s",
    "How late the event loop woke the watchdog, one point per interval.",
)
MEMORY: Final = Instrument(
    "resilient.watchdog.memory",
    "up_down_counter",
    "By",
    "The process's resident memory, as the watchdog last measured it.",
)
#: One measurement (`resilient.watchdog.loop_lag` in seconds).
SAMPLED: Final = EventSpec(
    "resilient.watchdog.sample", span_event=False, effects=(Effect(LOOP_LAG, ATTR_LAG),)
)
#: The same with memory measured (`resilient.watchdog.memory` in bytes); the metric moves by
#: `resilient.watchdog.memory_change`, so that its value is the latest measurement.
SAMPLED_WITH_MEMORY: Final = EventSpec(
    "resilient.watchdog.sample",
    span_event=False,
    effects=(Effect(LOOP_LAG, ATTR_LAG), Effect(MEMORY, ATTR_MEMORY_CHANGE)),
)
#: The watchdog left the memory metric (it stopped): the metric goes back by this much.
MEMORY_RELEASED: Final = EventSpec(
    "resilient.watchdog.stopped", span_event=False, effects=(Effect(MEMORY, ATTR_MEMORY_CHANGE),)
)
#: A status changed (`resilient.health.from`, `resilient.health.to`): the watchdog's, or
#: a `HealthChecks` readiness.
STATUS_CHANGED: Final = EventSpec("resilient.health.status_changed")


def worst(statuses: Iterable[Status]) -> Status:
    """The worst of `statuses` (`"pass"` when there are none)."""
    found: Status = "pass"
    for status in statuses:
        if _RANK[status] > _RANK[found]:
            found = status
    return found


# -- reading the process's memory ------------------------------------------------------------


def _statm_reader() -> Callable[[], int | None] | None:
    """Resident memory from /proc/self/statm (Linux), or None where there is none."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm", "rb") as statm:
            statm.read()
    except (OSError, ValueError, AttributeError):
        return None

    def read() -> int | None:
        try:
            with open("/proc/self/statm", "rb") as statm:
                return int(statm.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            return None

    return read


def _rusage_reader() -> Callable[[], int | None] | None:
    """The peak resident memory from getrusage, where /proc is missing (macOS, BSD)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    # ru_maxrss is in bytes on macOS and in kilobytes elsewhere.
    scale = 1 if sys.platform == "darwin" else 1024

    def read() -> int | None:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale

    return read


@functools.cache
def _memory_reader() -> Callable[[], int | None]:
    return _statm_reader() or _rusage_reader() or (lambda: None)


def read_memory() -> int | None:
    """The process's resident memory in bytes, or None where it cannot be read (see
    Watchdog); the way to read it is found on first use."""
    return _memory_reader()()


# -- the watchdog ----------------------------------------------------------------------------


class WatchdogStatus(str):
    """What a `Watchdog` measured, and what it makes of it: the status itself, a string
    (`"pass"`, `"warn"` or `"fail"`, compared as one), carrying the measurements.

    Attributes:
        status: `"pass"`, `"warn"` or `"fail"` (see `Watchdog`), as a plain `str`.
        loop_lag: how late the event loop last woke the watchdog, in seconds (or, while it
            is overdue right now, how late it is so far); None before the first measurement.
        memory: the process's resident memory in bytes as last measured; None before the
            first measurement or where it cannot be read.
        running: whether the watchdog is measuring (inside `async with watchdog:`).

    Examples:
        >>> seen = WatchdogStatus("warn", loop_lag=0.3, memory=52_428_800, running=True)
        >>> seen == "warn", seen.loop_lag
        (True, 0.3)
    """

    loop_lag: float | None
    memory: int | None
    running: bool

    def __new__(
        cls,
        status: Status,
        loop_lag: float | None = None,
        memory: int | None = None,
        running: bool = False,
    ) -> WatchdogStatus:
        if status not in _RANK:
            raise ValueError(f"status must be 'pass', 'warn' or 'fail', got {short_repr(status)}")
        self = super().__new__(cls, status)
        self.loop_lag = loop_lag
        self.memory = memory
        self.running = running
        return self

    @property
    def status(self) -> Status:
        """The status as a plain string."""
        found: Status = str.__str__(self)  # type: ignore[assignment]  # checked in __new__
        return found

    def __repr__(self) -> str:
        return (
            f"WatchdogStatus({self.status!r}, loop_lag={self.loop_lag!r}, "
            f"memory={self.memory!r}, running={self.running!r})"
        )


def _grade(
    lag: float | None, memory: int | None, max_loop_lag: float, max_memory: int | None
) -> Status:
    """The status a lag and a memory reading earn (pure)."""
    status: Status = "pass"
    if lag is not None:
        if lag > max_loop_lag:
            return "fail"
        if lag > max_loop_lag * LAG_WARN_RATIO:
            status = "warn"
    if memory is not None and max_memory is not None:
        if memory > max_memory:
            return "fail"
        if memory > max_memory * MEMORY_WARN_RATIO:
            status = "warn"
    return status


def _check_max_memory(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"max_memory must be a whole number of bytes > 0 or None, got {short_repr(value)}"
        )
    return value


class Watchdog:
    """Watch the event loop's lag and the process's memory from a background task.

    Inside `async with watchdog:` (for example in the application's lifespan), a task
    sleeps `interval` seconds, again and again, and measures how much later than asked it
    woke up: that overshoot is the *loop lag*, the time every other task also waited
    because something held the loop. Each time it also reads the process's resident memory.
    `status()` grades the latest measurements, as a `WatchdogStatus`: the string `"pass"`,
    `"warn"` or `"fail"`, carrying `loop_lag`, `memory` and `running`:

    | measured | `"warn"` | `"fail"` |
    |---|---|---|
    | loop lag | over half of `max_loop_lag` | over `max_loop_lag` |
    | resident memory | over 90 % of `max_memory` | over `max_memory` |

    A loop that is late right now counts too: `status()` reports the lag so far of a wake-up
    that is overdue, so a probe served the moment a long block ends already sees it. The
    status comes back to `"pass"` after one interval in which the loop kept time. Before
    `async with` and after it, `status()` is `"pass"` with nothing measured (`running` is
    False): a watchdog that was never started does not take an instance out of rotation.

    Memory is the resident set size, read from `/proc/self/statm` on Linux. Where there is no
    `/proc` (macOS, the BSDs) it is the *peak* resident size from `getrusage`, which never
    goes down; on Windows it is not measured (`memory` is None and `max_memory` is ignored).

    Works on asyncio and trio. The lag of a task that blocks the loop can only be measured
    once the loop runs again: the watchdog cannot interrupt a blocking call, it reports it.

    Telemetry: each measurement is a point of the `resilient.watchdog.loop_lag` histogram
    (seconds) and moves `resilient.watchdog.memory` (bytes) to the latest reading; each change
    of status is a `resilient.health.status_changed` event.

    Args:
        max_loop_lag: seconds of loop lag past which the status is `"fail"` (default 0.5);
            past half of it, `"warn"`.
        max_memory: bytes of resident memory past which the status is `"fail"`, or None
            (default) to grade the lag alone; past 90 % of it, `"warn"`.
        interval: seconds between measurements (default 0.5).
        name: the watchdog's name in telemetry (default `"watchdog"`).
        telemetry: `False` silences this watchdog's telemetry.

    Raises:
        ValueError: an argument is out of range (the message names it and its value).

    Examples:
        ```python
        import time

        import anyio
        from resilient.health import Watchdog

        watchdog = Watchdog(max_loop_lag=0.05, interval=0.01)
        async with watchdog:
            time.sleep(0.1)  # a synchronous call holds the loop
            await anyio.sleep(0)
            assert watchdog.status().status == "fail"
            await anyio.sleep(0.05)  # the loop keeps time again
            assert watchdog.status().status == "pass"
        ```
    """

    __slots__ = (
        "_due",
        "_group",
        "_lag",
        "_memory",
        "_reported_memory",
        "_reported_status",
        "_telemetry",
        "interval",
        "max_loop_lag",
        "max_memory",
        "name",
    )

    def __init__(
        self,
        max_loop_lag: float = 0.5,
        max_memory: int | None = None,
        interval: float = 0.5,
        *,
        name: str | None = None,
        telemetry: bool = True,
    ) -> None:
        self.max_loop_lag = check_positive("max_loop_lag", max_loop_lag)
        self.max_memory = _check_max_memory(max_memory)
        self.interval = check_positive("interval", interval)
        self.name = check_name(name, "watchdog")
        self._telemetry = PolicyTelemetry(
            "watchdog", self.name, enabled=check_bool("telemetry", telemetry)
        )
        self._group: anyio.abc.TaskGroup | None = None
        #: When the watchdog's current sleep should end (monotonic), while it sleeps.
        self._due: float | None = None
        self._lag: float | None = None
        self._memory: int | None = None
        self._reported_status: Status = "pass"
        self._reported_memory = 0

    def __repr__(self) -> str:
        return (
            f"Watchdog(max_loop_lag={self.max_loop_lag!r}, max_memory={self.max_memory!r}, "
            f"interval={self.interval!r})"
        )

    def status(self) -> WatchdogStatus:
        """The latest measurements, graded (see the class).

        Examples:
            >>> Watchdog().status()
            WatchdogStatus('pass', loop_lag=None, memory=None, running=False)
        """
        if self._group is None:
            return WatchdogStatus("pass", None, None, running=False)
        lag = self._lag
        due = self._due
        if due is not None:
            overdue = time.monotonic() - due
            if overdue > 0 and (lag is None or overdue > lag):
                lag = overdue
        status = _grade(lag, self._memory, self.max_loop_lag, self.max_memory)
        return WatchdogStatus(status, lag, self._memory, running=True)

    async def __aenter__(self) -> Watchdog:
        if self._group is not None:
            raise RuntimeError("this Watchdog is already running")
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        self._lag = None
        self._memory = None
        # Started once the first measurement is in and the first sleep is due, so that
        # status() inside the block always has something to grade.
        await group.start(self._watch, name=f"resilient watchdog {self.name!r}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group = self._group
        assert group is not None
        group.cancel_scope.cancel()
        try:
            return await group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as grouped:
            # The task group wraps an error raised in the block; the block's own error is
            # what the caller should see, as if no task group were there.
            if exc is not None and grouped.exceptions == (exc,):
                return False
            raise
        finally:
            self._group = None
            self._due = None
            self._stopped()

    async def _watch(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        interval = self.interval
        self._measured(0.0, read_memory())
        due = self._due = time.monotonic() + interval
        task_status.started()
        while True:
            await anyio.sleep(max(0.0, due - time.monotonic()))
            self._due = None
            self._measured(max(0.0, time.monotonic() - due), read_memory())
            due = self._due = time.monotonic() + interval

    def _measured(self, lag: float, memory: int | None) -> None:
        self._lag = lag
        self._memory = memory
        telemetry = self._telemetry
        if not telemetry.quiet():
            attributes: dict[str, Any] = {ATTR_LAG: lag}
            spec = SAMPLED
            if memory is not None:
                attributes[ATTR_MEMORY] = memory
                if telemetry.metrics_ready():
                    attributes[ATTR_MEMORY_CHANGE] = memory - self._reported_memory
                    self._reported_memory = memory
                    spec = SAMPLED_WITH_MEMORY
            telemetry.emit(spec, attributes)
        self._report(_grade(lag, memory, self.max_loop_lag, self.max_memory), lag, memory)

    def _report(self, status: Status, lag: float | None, memory: int | None) -> None:
        previous = self._reported_status
        if status == previous:
            return
        self._reported_status = status
        attributes: dict[str, Any] = {ATTR_FROM: previous, ATTR_TO: status}
        if lag is not None:
            attributes[ATTR_LAG] = lag
        if memory is not None:
            attributes[ATTR_MEMORY] = memory
        self._telemetry.emit(STATUS_CHANGED, attributes)

    def _stopped(self) -> None:
        if self._reported_memory:
            change = -self._reported_memory
            self._reported_memory = 0
            self._telemetry.emit(MEMORY_RELEASED, {ATTR_MEMORY_CHANGE: change})
        self._report("pass", None, None)
        self._lag = None
        self._memory = None


# -- checks and their aggregation ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One entry of a `HealthReport`'s checks: one component, one measurement.

    Attributes:
        status: `"pass"`, `"warn"` or `"fail"`.
        component_type: one of the draft's predefined types: `"component"` (a check or a
            breaker), `"datastore"` (a store) or `"system"` (the watchdog's measurements).
        observed_value: what was measured, if anything (a breaker's state, a lag).
        observed_unit: the unit of `observed_value` (`"s"`, `"bytes"`), if any.
        output: why it does not pass (a check's message or error), if anything.

    Examples:
        >>> ComponentHealth("fail", "component", output="timed out after 1s").to_json()
        {'status': 'fail', 'componentType': 'component', 'output': 'timed out after 1s'}
    """

    status: Status
    component_type: str
    observed_value: Any = None
    observed_unit: str | None = None
    output: str | None = None

    def to_json(self) -> dict[str, Any]:
        """This entry as the draft's check object (camelCase keys, empty ones left out)."""
        found: dict[str, Any] = {"status": self.status, "componentType": self.component_type}
        if self.observed_value is not None:
            found["observedValue"] = self.observed_value
        if self.observed_unit is not None:
            found["observedUnit"] = self.observed_unit
        if self.output is not None:
            found["output"] = self.output
        return found


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The result of `HealthChecks.run()`: the overall status and each component's.

    Attributes:
        status: the worst status of any component (`"pass"` with none).
        checks: each component's results by key, as draft-inadarei-api-health-check keys
            them: a check's own name; `"<breaker name>:circuitBreaker"`;
            `"<store name>:available"`; `"eventLoop:lag"` and `"memory:residentSize"`
            for the watchdog. A key holds a list, since several components may share one
            (two breakers with one name).

    Examples:
        >>> HealthReport("pass").to_json()
        {'status': 'pass'}
    """

    status: Status
    checks: Mapping[str, tuple[ComponentHealth, ...]] = field(default_factory=dict)

    def to_json(self, *, details: bool = False) -> dict[str, Any]:
        """The `application/health+json` body, as a dict for `json.dumps`.

        Args:
            details: include the `checks` map, with names and error text. Off by default:
                names of dependencies and their errors tell an outsider what the service
                runs on and how it fails.
        """
        if not details or not self.checks:
            return {"status": self.status}
        return {
            "status": self.status,
            "checks": {
                key: [entry.to_json() for entry in entries] for key, entries in self.checks.items()
            },
        }


_NO_CHECKS: Final[Mapping[str, Check]] = MappingProxyType({})


def _check_checks(checks: Any) -> dict[str, Check]:
    if not isinstance(checks, Mapping):
        raise ValueError(
            f"checks must be a mapping of names to async callables, got {short_repr(checks)}"
        )
    for name, check in checks.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"checks must be keyed by non-empty strings, got {short_repr(name)}")
        if not callable(check):
            raise ValueError(f"checks[{name!r}] must be an async callable, got {short_repr(check)}")
    return dict(checks)


def _check_items(field_name: str, values: Any, accept: Any, what: str) -> tuple[Any, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{field_name} must be an iterable of {what}, got {short_repr(values)}")
    found = tuple(values)
    for value in found:
        if not isinstance(value, accept):
            raise ValueError(f"{field_name} must hold only {what}, got {short_repr(value)} in it")
    return found


def _store_name(store: object) -> str:
    prefix = getattr(store, "prefix", None)
    return prefix if isinstance(prefix, str) and prefix else type(store).__name__


def _outcome(result: object) -> ComponentHealth:
    if result is None or result is True:
        return ComponentHealth("pass", "component")
    if isinstance(result, str):
        return ComponentHealth("fail", "component", output=result)
    if result is False:
        return ComponentHealth("fail", "component")
    return ComponentHealth(
        "fail",
        "component",
        output=f"the check returned {short_repr(result)}, not a bool, a str or None",
    )


_BREAKER_STATUS: Final[dict[str, Status]] = {
    CircuitState.CLOSED: "pass",
    CircuitState.DISABLED: "pass",
    CircuitState.OPEN: "warn",
    CircuitState.HALF_OPEN: "warn",
    CircuitState.FORCED_OPEN: "warn",
}


class HealthChecks:
    """Readiness: the service's checks, breakers, stores and watchdog, as one report.

    `await run()` returns a `HealthReport`:

    - each check (`async () -> bool | str | None`) runs concurrently with the others, cut
      after `timeout` seconds. `True` or `None` pass; `False` fails; a string fails with
      that string as its output (the reason); an exception fails with the exception's
      type and message; a check still running at `timeout` fails with "timed out". (The
      draft's `warn` is left to the parts below: a check that answers is either ready or not.)
    - their results are kept for `cache` seconds, and probes that arrive while the checks
      run wait for that run rather than starting another: a storm of probes costs each
      dependency at most one call per `cache` seconds (and per `timeout` while it hangs).
    - each breaker that is open, forced open or half-open is `warn`: the service still
      serves (its fallbacks answer, and a half-open breaker is only probing), so taking it
      out of rotation would move the load onto the other instances that see the same
      dependency down. A closed or disabled breaker passes.
    - each store whose `available` is False (a `RedisStore` that counts Redis as down)
      is `fail`; a store with no such property (`MemoryStore`) always passes.
    - the watchdog's status (see `Watchdog`) is folded in as it is.

    Breakers, stores and the watchdog are read afresh on every run (reading them costs
    nothing); only the checks are cached.

    Telemetry: each change of the overall status is a `resilient.health.status_changed`
    event.

    Args:
        checks: readiness checks by name (default none).
        breakers: `CircuitBreaker`s whose state counts (default none).
        stores: stores whose availability counts (default none).
        watchdog: a `Watchdog` whose status counts, or None (default).
        timeout: seconds each check may take (default 1.0).
        cache: seconds a run of the checks is reused (default 1.0; 0 runs them for every
            probe, though concurrent probes still share a run).
        clock: the clock the cache reads (default: the monotonic clock).
        name: the name in telemetry (default `"health"`).
        telemetry: `False` silences its telemetry.

    Raises:
        ValueError: an argument is out of range (the message names it and its value).

    Examples:
        ```python
        from resilient import CircuitBreaker
        from resilient.health import HealthChecks

        payments = CircuitBreaker(name="payments")
        payments.force_open()
        health = HealthChecks(breakers=[payments])
        report = await health.run()
        assert report.status == "warn"
        ```
    """

    __slots__ = (
        "_cached",
        "_cached_at",
        "_clock",
        "_running",
        "_status",
        "_telemetry",
        "breakers",
        "cache",
        "checks",
        "stores",
        "timeout",
        "watchdog",
    )

    def __init__(
        self,
        *,
        checks: Mapping[str, Check] = _NO_CHECKS,
        breakers: Iterable[CircuitBreaker] = (),
        stores: Iterable[Store | BreakerStore] = (),
        watchdog: Watchdog | None = None,
        timeout: float = 1.0,
        cache: float = 1.0,
        clock: Clock | None = None,
        name: str | None = None,
        telemetry: bool = True,
    ) -> None:
        self.checks: Mapping[str, Check] = MappingProxyType(_check_checks(checks))
        self.breakers: tuple[CircuitBreaker, ...] = _check_items(
            "breakers", breakers, CircuitBreaker, "CircuitBreaker objects"
        )
        self.stores: tuple[Store | BreakerStore, ...] = _check_items(
            "stores", stores, (Store, BreakerStore), "stores (resilient.storage)"
        )
        if watchdog is not None and not isinstance(watchdog, Watchdog):
            raise ValueError(f"watchdog must be a Watchdog or None, got {short_repr(watchdog)}")
        self.watchdog = watchdog
        self.timeout = check_positive("timeout", timeout)
        self.cache = check_non_negative("cache", cache)
        self._clock = check_clock(clock)
        self._telemetry = PolicyTelemetry(
            "health", check_name(name, "health"), enabled=check_bool("telemetry", telemetry)
        )
        self._cached: dict[str, tuple[ComponentHealth, ...]] | None = None
        self._cached_at = -math.inf
        #: Set when the run in flight is over (whatever its end), while one is.
        self._running: anyio.Event | None = None
        self._status: Status = "pass"

    def __repr__(self) -> str:
        return (
            f"HealthChecks(checks={list(self.checks)!r}, breakers={len(self.breakers)}, "
            f"stores={len(self.stores)}, watchdog={self.watchdog!r}, "
            f"timeout={self.timeout!r}, cache={self.cache!r})"
        )

    async def run(self) -> HealthReport:
        """Check readiness (see the class); never raises for a failing part."""
        checks: dict[str, tuple[ComponentHealth, ...]] = (
            dict(await self._run_checks()) if self.checks else {}
        )
        for breaker in self.breakers:
            state = breaker.state
            entry = ComponentHealth(
                _BREAKER_STATUS.get(state, "pass"), "component", str(state.value)
            )
            key = f"{breaker.name}:circuitBreaker"
            checks[key] = (*checks.get(key, ()), entry)
        for store in self.stores:
            available = getattr(store, "available", True)
            entry = ComponentHealth(
                "pass" if available else "fail",
                "datastore",
                bool(available),
                output=None if available else "the store counts its backend as down",
            )
            key = f"{_store_name(store)}:available"
            checks[key] = (*checks.get(key, ()), entry)
        if self.watchdog is not None:
            seen = self.watchdog.status()
            max_lag = self.watchdog.max_loop_lag
            lag_status = _grade(seen.loop_lag, None, max_lag, None)
            checks["eventLoop:lag"] = (ComponentHealth(lag_status, "system", seen.loop_lag, "s"),)
            if seen.memory is not None:
                memory_status = _grade(None, seen.memory, max_lag, self.watchdog.max_memory)
                checks["memory:residentSize"] = (
                    ComponentHealth(memory_status, "system", seen.memory, "bytes"),
                )
        status = worst(entry.status for entries in checks.values() for entry in entries)
        if status != self._status:
            previous, self._status = self._status, status
            self._telemetry.emit(STATUS_CHANGED, {ATTR_FROM: previous, ATTR_TO: status})
        return HealthReport(status, checks)

    async def _run_checks(self) -> dict[str, tuple[ComponentHealth, ...]]:
        while True:
            cached = self._cached
            if cached is not None and self._clock.now() - self._cached_at < self.cache:
                return cached
            running = self._running
            if running is None:
                break
            # Another probe is running the checks: share its run. Should it end without a
            # result (its caller was cancelled), go round again and run them here.
            await running.wait()
            if self._cached is not None and self._cached is not cached:
                return self._cached
        done = self._running = anyio.Event()
        try:
            results: dict[str, ComponentHealth] = {}
            async with anyio.create_task_group() as group:
                for name, check in self.checks.items():
                    group.start_soon(self._one, name, check, results)
            found: dict[str, tuple[ComponentHealth, ...]] = {
                name: (results[name],) for name in self.checks
            }
            self._cached = found
            self._cached_at = self._clock.now()
            return found
        finally:
            self._running = None
            done.set()

    async def _one(self, name: str, check: Check, results: dict[str, ComponentHealth]) -> None:
        timeout = self.timeout
        result: ComponentHealth | None = None
        with anyio.move_on_after(timeout):
            try:
                result = _outcome(await check())
            except Exception as error:
                result = ComponentHealth(
                    "fail", "component", output=f"{type(error).__name__}: {error}"
                )
        if result is None:
            result = ComponentHealth("fail", "component", output=f"timed out after {timeout:g}s")
        results[name] = result
