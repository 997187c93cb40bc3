"""PyBreakerPolicy: a real pybreaker.CircuitBreaker run around async calls, on asyncio and trio.

pybreaker reads the wall clock (`datetime.now(UTC)`) for `opened_at` and `reset_timeout`:
the `wall` fixture points it, and the adapter, at a fake clock, so that waits are instant.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pybreaker
import pytest
from opentelemetry.trace import StatusCode

import resilient.interop.pybreaker as adapter
from resilient import Backoff, CircuitOpenError, Fallback, Pipeline, RejectedError, Retry
from resilient.interop.pybreaker import PyBreakerOpenError, PyBreakerPolicy
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
NO_WAIT = Backoff(initial=0.0, max_delay=0.0, jitter="none")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """These adapters run on both backends (the folder's default is asyncio only)."""
    return str(request.param)


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock that pybreaker and the adapter read as `datetime.now(UTC)`."""
    clock = FakeClock()

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> FakeDatetime:
            moment = EPOCH + timedelta(seconds=clock.now())
            return cls.fromtimestamp(moment.timestamp(), tz)

    monkeypatch.setattr(pybreaker, "datetime", FakeDatetime)
    monkeypatch.setattr(adapter, "datetime", FakeDatetime)
    return clock


class Recorder(pybreaker.CircuitBreakerListener):
    """Writes down what pybreaker tells its listeners."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def before_call(
        self, cb: pybreaker.CircuitBreaker, func: Any, *args: Any, **kwargs: Any
    ) -> None:
        self.seen.append(("before_call", func.__name__, args, kwargs))

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.seen.append(("failure", type(exc).__name__))

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        self.seen.append(("success",))

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self.seen.append(("state_change", old_state.name if old_state else None, new_state.name))


async def refused(*args: Any, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    raise ConnectionError("refused")


async def ok(*args: Any, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "ok"


async def fail(policy: PyBreakerPolicy, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            await policy.call(refused)


# -- the broken decorator, and the fix ------------------------------------------------------


async def test_pybreakers_own_decorator_never_counts_async_failures() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=3)

    @breaker
    async def charge() -> str:
        return await refused()

    for _ in range(10):
        with pytest.raises(ConnectionError):
            await charge()
    # The decorator saw coroutines being created, successfully: the breaker stays closed.
    assert breaker.current_state == "closed"
    assert breaker.fail_counter == 0


async def test_failures_open_the_breaker_and_open_rejects_without_calling(
    wall: FakeClock,
) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=30, name="payments")
    policy = PyBreakerPolicy(breaker)
    calls = 0

    @policy
    async def charge(order: int) -> str:
        nonlocal calls
        calls += 1
        return await refused()

    for n in range(2):
        with pytest.raises(ConnectionError):
            await charge(n)
        assert breaker.fail_counter == n + 1
    with pytest.raises(ConnectionError) as tripped:
        await charge(2)  # the third failure trips it, and raises its own error
    assert tripped.value.__notes__ == [
        "resilient: this failure opened pybreaker circuit breaker 'payments'"
    ]
    assert breaker.current_state == "open"

    wall.advance(10)
    with pytest.raises(PyBreakerOpenError) as rejected:
        await charge(3)
    assert calls == 3
    error = rejected.value
    assert isinstance(error, CircuitOpenError)
    assert isinstance(error, pybreaker.CircuitBreakerError)
    assert error.policy == "payments"
    assert error.retry_after == pytest.approx(20.0)
    assert "pybreaker circuit breaker 'payments' is open; retry after 20s" in str(error)


async def test_the_tripping_call_raises_its_own_error_whatever_throw_new_error_on_trip() -> None:
    for throw in (True, False):
        breaker = pybreaker.CircuitBreaker(fail_max=1, throw_new_error_on_trip=throw)
        policy = PyBreakerPolicy(breaker)
        with pytest.raises(ConnectionError):
            await policy.call(refused)
        assert breaker.current_state == "open"


async def test_an_excluded_error_in_half_open_counts_as_a_successful_trial(
    wall: FakeClock,
) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, exclude=[LookupError])
    policy = PyBreakerPolicy(breaker)
    await fail(policy, 1)
    wall.advance(1)

    async def not_found() -> None:
        raise LookupError("no such quote")

    with pytest.raises(LookupError):
        await policy.call(not_found)
    assert breaker.current_state == "closed"


async def test_a_success_resets_the_failure_counter() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=3)
    policy = PyBreakerPolicy(breaker)
    await fail(policy, 2)
    assert await policy.call(ok) == "ok"
    assert breaker.fail_counter == 0
    await fail(policy, 2)
    assert breaker.current_state == "closed"


# -- half-open ------------------------------------------------------------------------------


async def test_after_reset_timeout_one_trial_runs_and_its_success_closes(
    wall: FakeClock,
) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=5)
    policy = PyBreakerPolicy(breaker)
    await fail(policy, 1)
    wall.advance(5)

    trial_started, release = anyio.Event(), anyio.Event()

    async def slow_trial() -> str:
        trial_started.set()
        await release.wait()
        return "recovered"

    results: list[str] = []

    async def run_trial() -> None:
        results.append(await policy.call(slow_trial))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_trial)
        await trial_started.wait()
        assert breaker.current_state == "half-open"
        with pytest.raises(
            PyBreakerOpenError, match="half-open and its trial call is still running"
        ) as busy:
            await policy.call(ok)
        assert busy.value.retry_after is None
        release.set()
    assert results == ["recovered"]
    assert breaker.current_state == "closed"
    assert await policy.call(ok) == "ok"


async def test_a_failed_trial_reopens_for_another_reset_timeout(wall: FakeClock) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=5)
    policy = PyBreakerPolicy(breaker)
    await fail(policy, 1)
    wall.advance(5)
    with pytest.raises(ConnectionError) as trial:
        await policy.call(refused)
    assert "opened pybreaker circuit breaker" in trial.value.__notes__[0]
    assert breaker.current_state == "open"
    with pytest.raises(PyBreakerOpenError) as rejected:
        await policy.call(ok)
    assert rejected.value.retry_after == pytest.approx(5.0)


async def test_success_threshold_needs_that_many_trials_one_at_a_time(wall: FakeClock) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, success_threshold=3)
    policy = PyBreakerPolicy(breaker)
    await fail(policy, 1)
    wall.advance(1)
    for _ in range(2):
        assert await policy.call(ok) == "ok"
        assert breaker.current_state == "half-open"
    assert await policy.call(ok) == "ok"
    assert breaker.current_state == "closed"


async def test_a_cancelled_trial_frees_the_half_open_state(wall: FakeClock) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1)
    policy = PyBreakerPolicy(breaker)
    await fail(policy, 1)
    wall.advance(1)

    with anyio.move_on_after(0.01):
        await policy.call(anyio.sleep_forever)
    assert breaker.current_state == "half-open"  # cancellation said nothing either way
    assert breaker.fail_counter == 1
    assert await policy.call(ok) == "ok"  # the next call is the trial
    assert breaker.current_state == "closed"


async def test_two_policies_on_one_breaker_share_its_single_trial(wall: FakeClock) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1)
    first, second = PyBreakerPolicy(breaker, name="a"), PyBreakerPolicy(breaker, name="b")
    await fail(first, 1)
    wall.advance(1)
    async with first:
        with pytest.raises(PyBreakerOpenError):
            await second.call(ok)
    assert breaker.current_state == "closed"


# -- what counts ----------------------------------------------------------------------------


async def test_excluded_exceptions_count_as_successes_as_in_pybreaker() -> None:
    class NotFound(Exception):
        pass

    exclude: list[Any] = [NotFound, lambda e: isinstance(e, KeyError)]
    breaker = pybreaker.CircuitBreaker(fail_max=2, exclude=exclude)
    policy = PyBreakerPolicy(breaker)

    async def missing() -> None:
        raise NotFound("no such order")

    async def key_error() -> None:
        raise KeyError("sku")

    await fail(policy, 1)
    with pytest.raises(NotFound):
        await policy.call(missing)
    assert breaker.fail_counter == 0  # reset, as a success does
    for _ in range(5):
        with pytest.raises(KeyError):
            await policy.call(key_error)
    assert breaker.current_state == "closed"


async def test_cancellation_is_not_a_failure() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1)
    policy = PyBreakerPolicy(breaker)
    recorder = Recorder()
    breaker.add_listener(recorder)
    for _ in range(3):
        with anyio.move_on_after(0.01):
            await policy.call(anyio.sleep_forever)
    assert breaker.current_state == "closed"
    assert breaker.fail_counter == 0
    assert [event[0] for event in recorder.seen] == ["before_call"] * 3


async def test_a_call_that_ends_after_the_breaker_opened_counts_nothing() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=2)
    policy = PyBreakerPolicy(breaker)
    recorder = Recorder()
    started, release = anyio.Event(), anyio.Event()

    async def slow_failure() -> None:
        started.set()
        await release.wait()
        raise ConnectionError("late")

    async def run_slow() -> None:
        with pytest.raises(ConnectionError) as late:
            await policy.call(slow_failure)
        assert not getattr(late.value, "__notes__", [])

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_slow)
        await started.wait()
        await fail(policy, 2)
        assert breaker.current_state == "open"
        breaker.add_listener(recorder)
        release.set()
    assert recorder.seen == []  # the late failure belonged to the closed state, now gone
    assert breaker.current_state == "open"


async def test_listeners_hear_every_step_with_the_function_and_its_arguments(
    wall: FakeClock,
) -> None:
    recorder = Recorder()
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, listeners=[recorder])
    policy = PyBreakerPolicy(breaker)
    assert await policy.call(ok, 1, key="a") == "ok"
    with pytest.raises(ConnectionError):
        await policy.call(refused, 2)
    with pytest.raises(PyBreakerOpenError):
        await policy.call(ok, 3)
    wall.advance(1)
    assert await policy.call(ok, 4) == "ok"
    assert recorder.seen == [
        ("before_call", "ok", (1,), {"key": "a"}),
        ("success",),
        ("before_call", "refused", (2,), {}),
        ("failure", "ConnectionError"),
        ("state_change", "closed", "open"),
        # the rejected call reaches no listener, as in pybreaker
        ("state_change", "open", "half-open"),
        ("before_call", "ok", (4,), {}),
        ("state_change", "half-open", "closed"),
        ("success",),
    ]


async def test_a_listener_that_raises_in_before_call_stops_the_call(wall: FakeClock) -> None:
    class Veto(pybreaker.CircuitBreakerListener):
        def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
            raise PermissionError("maintenance window")

    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1)
    policy = PyBreakerPolicy(breaker)
    await fail(policy, 1)
    wall.advance(1)
    veto = Veto()
    breaker.add_listener(veto)
    with pytest.raises(PermissionError):
        await policy.call(ok)
    breaker.remove_listener(veto)
    assert await policy.call(ok) == "ok"  # the vetoed trial did not keep the trial slot


# -- concurrency and the lock ---------------------------------------------------------------


async def test_the_lock_is_not_held_while_the_call_runs() -> None:
    breaker = pybreaker.CircuitBreaker()
    policy = PyBreakerPolicy(breaker)

    def other_thread_takes_the_lock() -> bool:
        taken = breaker._lock.acquire(blocking=False)
        if taken:
            breaker._lock.release()
        return taken

    async def check() -> bool:
        return await anyio.to_thread.run_sync(other_thread_takes_the_lock)

    assert await policy.call(check) is True


async def test_closed_calls_run_concurrently() -> None:
    policy = PyBreakerPolicy(pybreaker.CircuitBreaker())
    running = 0
    most = 0
    gate = anyio.Event()

    async def call() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(policy.call, call)
        while most < 10:
            await anyio.lowlevel.checkpoint()
        gate.set()
    assert most == 10


# -- the faces ------------------------------------------------------------------------------


async def test_the_block_form_counts_failures_and_rejects_on_entry() -> None:
    recorder = Recorder()
    breaker = pybreaker.CircuitBreaker(fail_max=2, listeners=[recorder])
    policy = PyBreakerPolicy(breaker)

    async def block() -> None:
        async with policy:
            raise ConnectionError("refused")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await block()
    with pytest.raises(PyBreakerOpenError):
        async with policy:
            pass
    assert recorder.seen[0] == ("before_call", "_async_with_block", (), {})


async def test_in_a_pipeline_retry_does_not_retry_the_rejection_and_fallback_answers(
    wall: FakeClock,
) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60)
    calls = 0

    async def upstream() -> str:
        nonlocal calls
        calls += 1
        return await refused()

    stack = Pipeline(
        Fallback(value="cached", on=RejectedError),
        Retry(attempts=5, backoff=NO_WAIT, on=ConnectionError, budget=None),
        PyBreakerPolicy(breaker),
    )
    assert await stack.call(upstream) == "cached"
    # Two attempts opened the breaker; the third was rejected, and not retried.
    assert calls == 2
    assert breaker.current_state == "open"


def test_it_decorates_async_functions_only() -> None:
    policy = PyBreakerPolicy(pybreaker.CircuitBreaker())
    with pytest.raises(TypeError, match="async def"):
        policy(lambda: None)  # type: ignore[arg-type, return-value]


def test_the_constructor_validates_and_names() -> None:
    with pytest.raises(ValueError, match=r"^breaker must be a pybreaker\.CircuitBreaker"):
        PyBreakerPolicy(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^name must be"):
        PyBreakerPolicy(pybreaker.CircuitBreaker(), name="")
    assert PyBreakerPolicy(pybreaker.CircuitBreaker()).name == "pybreaker"
    assert PyBreakerPolicy(pybreaker.CircuitBreaker(name="db")).name == "db"
    assert PyBreakerPolicy(pybreaker.CircuitBreaker(name="db"), name="orders").name == "orders"
    assert PyBreakerPolicy(pybreaker.CircuitBreaker()).state == "closed"


def test_the_rejection_pickles() -> None:
    error = PyBreakerOpenError("open", policy="db", retry_after=2.0)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is PyBreakerOpenError
    assert (str(again), again.policy, again.retry_after) == ("open", "db", 2.0)


# -- telemetry ------------------------------------------------------------------------------


async def test_telemetry_records_outcomes_rejections_and_transitions(
    telemetry: Any, wall: FakeClock
) -> None:
    policy = PyBreakerPolicy(pybreaker.CircuitBreaker(fail_max=1), name="pb-telemetry")
    await fail(policy, 1)
    with pytest.raises(PyBreakerOpenError):
        await policy.call(ok)
    failed, rejected = telemetry.spans("resilient.circuit_breaker")
    assert failed.attributes["resilient.outcome"] == "failure"
    (transition,) = [e for e in failed.events if e.name == "resilient.circuit_breaker.transition"]
    assert transition.attributes["resilient.circuit_breaker.from"] == "closed"
    assert transition.attributes["resilient.circuit_breaker.to"] == "open"
    assert rejected.status.status_code == StatusCode.ERROR
    assert rejected.attributes["resilient.outcome"] == "rejected"
    assert rejected.attributes["error.type"] == "PyBreakerOpenError"
    total: Callable[..., float] = telemetry.metric_total
    assert total("resilient.calls", policy="pb-telemetry", **{"resilient.outcome": "rejected"}) == 1
    assert (
        total(
            "resilient.circuit_breaker.transitions",
            policy="pb-telemetry",
            **{"resilient.circuit_breaker.to": "open"},
        )
        == 1
    )


def test_without_pybreaker_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pybreaker'] = None\n"
        "try:\n"
        "    import resilient.interop.pybreaker\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'resilient-patterns[pybreaker]'" in done.stdout
