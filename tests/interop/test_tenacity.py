"""TenacityBackoff: tenacity's own wait and stop strategies drive a Retry, on asyncio and trio.

Each test runs the real tenacity strategies inside `Retry` on a `FakeClock`, and reads the
attempts' times off the clock: the delays are exactly what the strategies chose.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio.lowlevel
import pytest
import tenacity
from opentelemetry.trace import StatusCode
from tenacity import (
    RetryCallState,
    stop_after_attempt,
    stop_after_delay,
    stop_before_delay,
    stop_never,
    stop_when_event_set,
    wait_chain,
    wait_exception,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_incrementing,
    wait_none,
    wait_random,
    wait_random_exponential,
)

from resilient import Backoff, Retry, Timeout, TimeoutExceeded
from resilient.interop.tenacity import TenacityBackoff
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """These adapters run on both backends (the folder's default is asyncio only)."""
    return str(request.param)


class Upstream:
    """Fails with `error` (or returns `bad`) `failures` times, then returns "ok"; records
    the clock's time of each call."""

    def __init__(
        self,
        clock: FakeClock,
        failures: int = 1_000,
        error: Exception | None = None,
        bad: object = None,
    ) -> None:
        self.clock = clock
        self.failures = failures
        self.error = ConnectionError("refused") if error is None and bad is None else error
        self.bad = bad
        self.times: list[float] = []

    @property
    def delays(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]

    async def __call__(self) -> object:
        self.times.append(self.clock.now())
        await anyio.lowlevel.checkpoint()
        if len(self.times) <= self.failures:
            if self.error is not None:
                raise self.error
            return self.bad
        return "ok"


def retry_with(backoff: Backoff, clock: FakeClock, attempts: int = 6, **kwargs: Any) -> Retry:
    return Retry(attempts=attempts, backoff=backoff, budget=None, clock=clock, **kwargs)


# -- wait strategies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        (wait_fixed(2), [2.0, 2.0, 2.0, 2.0]),
        (wait_none(), [0.0, 0.0, 0.0, 0.0]),
        (wait_incrementing(start=1, increment=2), [1.0, 3.0, 5.0, 7.0]),
        (wait_incrementing(start=1, increment=2, max=4), [1.0, 3.0, 4.0, 4.0]),
        (wait_exponential(multiplier=1, max=5), [1.0, 2.0, 4.0, 5.0]),
        (wait_exponential(multiplier=0.5, min=1, exp_base=3), [1.0, 1.5, 4.5, 13.5]),
        (wait_chain(wait_fixed(1), wait_fixed(1), wait_fixed(3)), [1.0, 1.0, 3.0, 3.0]),
        (wait_fixed(1) + wait_incrementing(start=0, increment=1), [1.0, 2.0, 3.0, 4.0]),
        (wait_fixed(1) + wait_fixed(2) + wait_exponential(max=4), [4.0, 5.0, 7.0, 7.0]),
    ],
    ids=[
        "fixed",
        "none",
        "incrementing",
        "incrementing-max",
        "exponential",
        "exponential-min-base",
        "chain",
        "sum",
        "sum-of-three",
    ],
)
async def test_deterministic_waits_sleep_exactly_what_the_strategy_says(
    clock: FakeClock, wait: Any, expected: list[float]
) -> None:
    upstream = Upstream(clock, failures=4)
    assert await retry_with(TenacityBackoff(wait), clock).call(upstream) == "ok"
    assert upstream.delays == pytest.approx(expected)


async def test_the_delays_match_tenacity_retrying_the_same_call(clock: FakeClock) -> None:
    """The same strategy under tenacity's own AsyncRetrying sleeps the same delays."""
    wait = wait_chain(wait_fixed(0.5), wait_exponential(multiplier=1, max=8)) + wait_fixed(0.25)
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async for attempt in tenacity.AsyncRetrying(
        wait=wait, stop=stop_after_attempt(6), sleep=record, reraise=True
    ):
        with attempt:
            if attempt.retry_state.attempt_number < 6:
                raise ConnectionError("refused")

    upstream = Upstream(clock, failures=5)
    await retry_with(TenacityBackoff(wait), clock).call(upstream)
    assert upstream.delays == pytest.approx(slept)
    assert len(slept) == 5


@pytest.mark.parametrize(
    ("wait", "low", "high"),
    [
        (wait_random(1, 3), [1.0] * 4, [3.0] * 4),
        (wait_fixed(1) + wait_random(0, 1), [1.0] * 4, [2.0] * 4),
        (wait_random_exponential(multiplier=1, max=6), [0.0] * 4, [1.0, 2.0, 4.0, 6.0]),
        (
            wait_exponential_jitter(initial=1, max=10, jitter=1),
            [1.0, 2.0, 4.0, 8.0],
            [2.0, 3.0, 5.0, 9.0],
        ),
    ],
    ids=["random", "fixed-plus-random", "random-exponential", "exponential-jitter"],
)
async def test_random_waits_stay_within_their_bounds(
    clock: FakeClock, wait: Any, low: list[float], high: list[float]
) -> None:
    random.seed(1234)
    seen: set[float] = set()
    for _ in range(10):
        upstream = Upstream(clock, failures=4)
        await retry_with(TenacityBackoff(wait), clock).call(upstream)
        for delay, lo, hi in zip(upstream.delays, low, high, strict=True):
            assert lo - 1e-9 <= delay <= hi + 1e-9
        seen.update(upstream.delays)
    assert len(seen) > 4  # drawn, not fixed


async def test_wait_exception_reads_the_error_of_the_last_attempt(clock: FakeClock) -> None:
    class Throttled(Exception):
        def __init__(self, retry_after: float) -> None:
            super().__init__(f"retry after {retry_after}s")
            self.retry_after = retry_after

    errors = [Throttled(3.0), Throttled(0.5), ConnectionError("reset")]

    async def call() -> str:
        times.append(clock.now())
        await anyio.lowlevel.checkpoint()
        if errors:
            raise errors.pop(0)
        return "ok"

    def wait_for(error: BaseException) -> float:
        return error.retry_after if isinstance(error, Throttled) else 7.0

    times: list[float] = []
    assert await retry_with(TenacityBackoff(wait_exception(wait_for)), clock).call(call) == "ok"
    assert times == [0.0, 3.0, 3.5, 10.5]


async def test_a_handwritten_strategy_gets_a_real_retry_call_state(clock: FakeClock) -> None:
    states: list[tuple[Any, ...]] = []

    def wait(state: RetryCallState) -> float:
        assert isinstance(state, RetryCallState)
        assert state.outcome is not None
        assert state.outcome.done()
        error = state.outcome.exception()
        states.append(
            (
                state.attempt_number,
                state.outcome.failed,
                str(error),
                state.seconds_since_start,
                state.idle_for,
                state.outcome.attempt_number,
            )
        )
        return 1.5 * state.attempt_number

    errors = iter([ValueError("first"), ValueError("second")])

    async def call() -> str:
        await clock.sleep(0.25)  # each attempt takes a quarter second
        error = next(errors, None)
        if error is not None:
            raise error
        return "ok"

    assert await retry_with(TenacityBackoff(wait), clock, on=ValueError).call(call) == "ok"
    assert states == [
        (1, True, "first", 0.25, 0.0, 1),
        (2, True, "second", pytest.approx(2.0), 1.5, 2),
    ]


async def test_a_result_rejected_by_on_result_is_the_outcome(clock: FakeClock) -> None:
    seen: list[object] = []

    def wait(state: RetryCallState) -> float:
        assert state.outcome is not None
        assert not state.outcome.failed
        seen.append(state.outcome.result())
        return 1.0

    upstream = Upstream(clock, failures=2, bad="busy")
    retry = retry_with(TenacityBackoff(wait), clock, on_result=lambda r: r == "busy")
    assert await retry.call(upstream) == "ok"
    assert seen == ["busy", "busy"]


async def test_a_negative_wait_counts_as_no_wait(clock: FakeClock) -> None:
    upstream = Upstream(clock, failures=2)
    await retry_with(TenacityBackoff(lambda state: -3), clock).call(upstream)
    assert upstream.delays == [0.0, 0.0]


# -- stop strategies ------------------------------------------------------------------------


async def test_stop_after_attempt_stops_and_the_note_says_why(clock: FakeClock) -> None:
    upstream = Upstream(clock)
    retry = retry_with(TenacityBackoff(wait_fixed(1), stop=stop_after_attempt(3)), clock, 50)
    with pytest.raises(ConnectionError) as caught:
        await retry.call(upstream)
    assert upstream.times == [0.0, 1.0, 2.0]
    (note,) = caught.value.__notes__
    assert note.startswith("resilient: Retry 'retry' gave up after 3 attempts: ")
    assert "stop strategy stop_after_attempt(max_attempt_number=3) said stop" in note
    stats = retry.statistics
    assert (stats.failures, stats.stopped, stats.exhausted) == (1, 1, 0)


async def test_stop_after_delay_stops_once_the_time_has_passed(clock: FakeClock) -> None:
    upstream = Upstream(clock)
    retry = retry_with(TenacityBackoff(wait_fixed(2), stop=stop_after_delay(5)), clock, 50)
    with pytest.raises(ConnectionError) as caught:
        await retry.call(upstream)
    # After the attempt at 4 s, 4 < 5: one more; after the one at 6 s, 6 >= 5: stop.
    assert upstream.times == [0.0, 2.0, 4.0, 6.0]
    assert "stop_after_delay(max_delay=5.0) said stop (6s after" in caught.value.__notes__[0]


async def test_stop_before_delay_sees_the_upcoming_sleep(clock: FakeClock) -> None:
    upstream = Upstream(clock)
    retry = retry_with(TenacityBackoff(wait_fixed(2), stop=stop_before_delay(5)), clock, 50)
    with pytest.raises(ConnectionError):
        await retry.call(upstream)
    # After the attempt at 4 s the next would start at 6 s >= 5: stop without sleeping.
    assert upstream.times == [0.0, 2.0, 4.0]
    assert clock.now() == 4.0


async def test_stop_when_event_set_stops_when_another_task_sets_it(clock: FakeClock) -> None:
    event = threading.Event()
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            event.set()  # e.g. the service is shutting down
        raise ConnectionError("refused")

    retry = retry_with(TenacityBackoff(wait_fixed(1), stop=stop_when_event_set(event)), clock, 50)
    with pytest.raises(ConnectionError) as caught:
        await retry.call(call)
    assert calls == 2
    assert "stop_when_event_set(" in caught.value.__notes__[0]


@pytest.mark.parametrize(
    ("stop", "attempts"),
    [
        (stop_after_attempt(6) | stop_after_delay(2.5), 4),  # the delay comes first
        (stop_after_attempt(2) | stop_after_delay(100), 2),  # the attempts come first
        (stop_after_attempt(2) & stop_after_delay(2.5), 4),  # both must hold
        (stop_after_attempt(5) & stop_after_delay(1), 5),
        (stop_never, 8),  # only Retry's own attempts stop it
    ],
    ids=["or-delay", "or-attempts", "and-delay", "and-attempts", "never"],
)
async def test_combined_stops(clock: FakeClock, stop: Any, attempts: int) -> None:
    upstream = Upstream(clock)
    retry = retry_with(TenacityBackoff(wait_fixed(1), stop=stop), clock, attempts=8)
    with pytest.raises(ConnectionError) as caught:
        await retry.call(upstream)
    assert len(upstream.times) == attempts
    note = caught.value.__notes__[0]
    if stop is stop_never:
        assert "stop strategy" not in note
        assert retry.statistics.exhausted == 1
    else:
        assert type(stop).__name__ in note
        assert retry.statistics.stopped == 1


async def test_retrys_own_attempts_still_apply(clock: FakeClock) -> None:
    upstream = Upstream(clock)
    retry = retry_with(TenacityBackoff(wait_fixed(1), stop=stop_after_attempt(10)), clock, 3)
    with pytest.raises(ConnectionError):
        await retry.call(upstream)
    assert len(upstream.times) == 3
    assert (retry.statistics.exhausted, retry.statistics.stopped) == (1, 0)


async def test_a_stop_on_results_returns_the_last_result(clock: FakeClock) -> None:
    upstream = Upstream(clock, bad="busy")
    retry = retry_with(
        TenacityBackoff(wait_fixed(1), stop=stop_after_attempt(2)),
        clock,
        10,
        on_result=lambda r: r == "busy",
    )
    assert await retry.call(upstream) == "busy"
    assert len(upstream.times) == 2
    assert retry.statistics.stopped == 1


async def test_the_enclosing_deadline_still_applies(clock: FakeClock) -> None:
    upstream = Upstream(clock)
    retry = retry_with(TenacityBackoff(wait_fixed(2), stop=stop_after_delay(100)), clock, 50)
    with pytest.raises(ConnectionError) as caught:
        await Timeout(5.0, clock=clock).call(retry.call, upstream)
    assert upstream.times == [0.0, 2.0, 4.0]
    assert "enclosing deadline" in caught.value.__notes__[0]
    assert not isinstance(caught.value, TimeoutExceeded)


async def test_the_block_form_uses_the_same_strategies(clock: FakeClock) -> None:
    retry = retry_with(
        TenacityBackoff(wait_incrementing(start=1, increment=1), stop=stop_after_delay(2.5)),
        clock,
        50,
    )
    times: list[float] = []

    async def block() -> None:
        async for attempt in retry.attempts():
            with attempt:
                times.append(clock.now())
                raise ConnectionError("refused")

    with pytest.raises(ConnectionError) as caught:
        await block()
    assert times == [0.0, 1.0, 3.0]
    assert "stop_after_delay" in caught.value.__notes__[0]


async def test_the_block_form_passes_results_to_the_strategies(clock: FakeClock) -> None:
    seen: list[object] = []

    def wait(state: RetryCallState) -> float:
        assert state.outcome is not None
        seen.append(state.outcome.result())
        return 1.0

    retry = retry_with(TenacityBackoff(wait), clock, on_result=lambda r: r < 2)
    async for attempt in retry.attempts():
        with attempt:
            attempt.result = attempt.number - 1
    assert seen == [0, 1]


async def test_stopping_is_recorded_in_telemetry(telemetry: Any, clock: FakeClock) -> None:
    retry = Retry(
        attempts=10,
        backoff=TenacityBackoff(wait_fixed(1), stop=stop_after_attempt(2)),
        name="tenacity-stopped",
        clock=clock,
    )
    with pytest.raises(ConnectionError):
        await retry.call(Upstream(clock))
    (span,) = telemetry.spans("resilient.retry")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["resilient.outcome"] == "stopped"
    (gave_up,) = [e for e in span.events if e.name == "resilient.retry.gave_up"]
    assert gave_up.attributes["resilient.retry.reason"] == "stopped"
    calls = telemetry.metric_total(
        "resilient.calls", policy="tenacity-stopped", **{"resilient.outcome": "stopped"}
    )
    assert calls == 1


async def test_a_stop_spends_no_retry_budget(clock: FakeClock) -> None:
    retry = Retry(
        attempts=10,
        backoff=TenacityBackoff(wait_fixed(1), stop=stop_after_attempt(1)),
        clock=clock,
    )
    budget = retry.budget
    assert budget is not None
    for _ in range(30):  # more than the budget's floor of 10 retries/s
        with pytest.raises(ConnectionError) as caught:
            await retry.call(Upstream(clock))
        assert "stop_after_attempt" in caught.value.__notes__[0]
    assert retry.statistics.budget_exhausted == 0


# -- errors ---------------------------------------------------------------------------------


async def test_a_wait_strategy_that_raises_ends_the_call_with_its_error(
    clock: FakeClock,
) -> None:
    def broken(state: RetryCallState) -> float:
        raise KeyError("no such delay")

    retry = retry_with(TenacityBackoff(broken), clock)
    with pytest.raises(KeyError):
        await retry.call(Upstream(clock))
    assert (retry.statistics.calls, retry.statistics.failures) == (1, 1)


async def test_wait_exception_on_a_result_raises_as_in_tenacity(clock: FakeClock) -> None:
    retry = retry_with(
        TenacityBackoff(wait_exception(lambda e: 1.0)), clock, on_result=lambda r: r == "busy"
    )
    with pytest.raises(RuntimeError, match="exception is None"):
        await retry.call(Upstream(clock, bad="busy"))


async def test_a_wait_that_is_not_a_number_is_refused(clock: FakeClock) -> None:
    retry = retry_with(TenacityBackoff(lambda state: float("nan")), clock)
    with pytest.raises(ValueError, match="not a finite number of seconds"):
        await retry.call(Upstream(clock))
    assert retry.statistics.failures == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"wait": 2.0}, "wait"), ({"wait": wait_fixed(1), "stop": 3}, "stop")],
)
def test_the_constructor_validates(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be"):
        TenacityBackoff(**kwargs)


# -- the Backoff face -----------------------------------------------------------------------


def test_it_is_a_backoff_with_delay_iteration_and_a_readable_repr() -> None:
    backoff = TenacityBackoff(wait_exponential(max=5), stop=stop_after_delay(30))
    assert isinstance(backoff, Backoff)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert backoff.base(2) == 2.0
    delays: Iterator[float] = iter(backoff)
    assert [next(delays) for _ in range(3)] == [1.0, 2.0, 4.0]
    assert repr(backoff) == (
        "TenacityBackoff(wait_exponential(multiplier=1, min=0.0, max=5.0, exp_base=2), "
        "stop=stop_after_delay(max_delay=30.0))"
    )
    assert backoff == TenacityBackoff(backoff.wait, stop=backoff.stop)
    assert backoff != TenacityBackoff(wait_exponential(max=5), stop=backoff.stop)
    with pytest.raises(AttributeError, match="immutable"):
        backoff.wait = wait_fixed(1)


def test_one_instance_serves_concurrent_calls_without_shared_state() -> None:
    backoff = TenacityBackoff(wait_incrementing(start=1, increment=1))
    first = backoff._plan_retry(1, None, ValueError("a"), None, 0.0, 0.0)
    backoff._plan_retry(5, 4.0, ValueError("b"), None, 9.0, 10.0)
    assert backoff._plan_retry(1, None, ValueError("a"), None, 0.0, 0.0) == first == 1.0


def test_without_tenacity_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['tenacity'] = None\n"
        "try:\n"
        "    import resilient.interop.tenacity\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'resilient-patterns[tenacity]'" in done.stdout
