"""Hedge: hedged attempts with a fixed or adaptive delay, paid from the retry budget, on
asyncio and trio. Latencies are timers on a FakeClock, so every test is instant and exact."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from resilient import (
    CircuitOpenError,
    Hedge,
    Pipeline,
    Retry,
    RetryBudget,
    Timeout,
    TimeoutExceeded,
)
from resilient.hedge._hedge import hedge_attempt
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


class Upstream:
    """Attempt number i takes `latencies[i]` seconds on the clock, then returns or raises
    `outcomes[i]` (default: the string `"answer <i>"`)."""

    def __init__(
        self, clock: FakeClock, latencies: list[float], outcomes: list[Any] | None = None
    ) -> None:
        self.clock = clock
        self.latencies = latencies
        self.outcomes = outcomes or [f"answer {i}" for i in range(len(latencies))]
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        self.in_flight = 0
        self.attempts: list[int] = []

    async def __call__(self) -> Any:
        index = self.started
        self.started += 1
        self.attempts.append(hedge_attempt())
        self.in_flight += 1
        try:
            await sleep_on(self.clock, self.latencies[index])
        except BaseException:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        self.finished += 1
        outcome = self.outcomes[index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def sleep_on(clock: FakeClock, seconds: float) -> None:
    """Wait `seconds` on the clock's time line, as a timer (the clock jumps to it once
    every task is blocked), so that concurrent waits interleave as in real time."""
    event = anyio.Event()
    timer = clock.call_at(clock.now() + seconds, event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()


# -- who wins -----------------------------------------------------------------------------


async def test_a_fast_primary_is_never_hedged(clock: FakeClock) -> None:
    upstream = Upstream(clock, [0.05])
    assert await Hedge(0.1, clock=clock).call(upstream) == "answer 0"
    assert upstream.started == 1
    assert clock.now() == pytest.approx(0.05)


async def test_hedge_wins_over_a_slow_primary_which_is_cancelled(clock: FakeClock) -> None:
    upstream = Upstream(clock, [1.0, 0.05])
    assert await Hedge(0.1, clock=clock).call(upstream) == "answer 1"
    assert clock.now() == pytest.approx(0.15)
    assert (upstream.started, upstream.finished, upstream.cancelled) == (2, 1, 1)
    assert upstream.in_flight == 0
    assert upstream.attempts == [0, 1]


async def test_hedge_loses_to_the_primary_and_is_cancelled(clock: FakeClock) -> None:
    upstream = Upstream(clock, [0.2, 1.0])
    assert await Hedge(0.1, clock=clock).call(upstream) == "answer 0"
    assert clock.now() == pytest.approx(0.2)
    assert (upstream.started, upstream.cancelled) == (2, 1)


async def test_hedges_start_one_delay_apart_up_to_max_hedges(clock: FakeClock) -> None:
    upstream = Upstream(clock, [5.0, 5.0, 5.0, 0.01])
    hedge = Hedge(0.1, max_hedges=2, clock=clock)
    assert await hedge.call(upstream) == "answer 0"
    assert upstream.started == 3  # the primary and two hedges, never a third
    assert clock.now() == pytest.approx(5.0)


async def test_a_zero_delay_races_every_attempt_at_once(clock: FakeClock) -> None:
    upstream = Upstream(clock, [1.0, 0.5, 0.2])
    assert await Hedge(0.0, max_hedges=2, clock=clock).call(upstream) == "answer 2"
    assert clock.now() == pytest.approx(0.2)
    assert (upstream.started, upstream.cancelled, upstream.in_flight) == (3, 2, 0)
    assert clock.pending_timers == 0


async def test_all_attempts_failing_raise_the_primarys_error(clock: FakeClock) -> None:
    first, second = ConnectionError("primary"), ConnectionError("hedge")
    upstream = Upstream(clock, [0.15, 0.3], [first, second])
    with pytest.raises(ConnectionError) as caught:
        await Hedge(0.1, clock=clock).call(upstream)
    assert caught.value is first
    assert any("all 2 attempts failed" in note for note in caught.value.__notes__)
    assert clock.now() == pytest.approx(0.4)  # it waited for the hedge


async def test_a_failed_primary_starts_the_hedge_at_once(clock: FakeClock) -> None:
    upstream = Upstream(clock, [0.01, 0.05], [ConnectionError("reset"), "ok"])
    assert await Hedge(1.0, clock=clock).call(upstream) == "ok"
    assert clock.now() == pytest.approx(0.06)


async def test_an_error_on_does_not_match_is_an_answer_and_wins(clock: FakeClock) -> None:
    upstream = Upstream(clock, [0.05, 0.01], [KeyError("missing"), "ok"])
    with pytest.raises(KeyError):
        await Hedge(1.0, on=ConnectionError, clock=clock).call(upstream)
    assert upstream.started == 1


async def test_a_final_error_of_the_primary_cancels_a_running_hedge(clock: FakeClock) -> None:
    upstream = Upstream(clock, [0.3, 1.0], [KeyError("gone"), "late"])
    with pytest.raises(KeyError):
        await Hedge(0.1, on=ConnectionError, clock=clock).call(upstream)
    assert (upstream.started, upstream.cancelled, upstream.in_flight) == (2, 1, 0)


async def test_a_final_error_of_a_hedge_interrupts_the_primary(clock: FakeClock) -> None:
    upstream = Upstream(clock, [1.0, 0.05], ["slow", KeyError("gone")])
    with pytest.raises(KeyError):
        await Hedge(0.1, on=ConnectionError, clock=clock).call(upstream)
    assert clock.now() == pytest.approx(0.15)
    assert (upstream.cancelled, upstream.in_flight) == (1, 0)


async def test_a_failed_hedge_leaves_the_primary_to_answer(clock: FakeClock) -> None:
    upstream = Upstream(clock, [1.0, 0.05], ["slow but fine", ConnectionError("reset")])
    assert await Hedge(0.1, clock=clock).call(upstream) == "slow but fine"
    assert clock.now() == pytest.approx(1.0)
    assert upstream.started == 2


async def test_a_rejection_is_an_answer_unless_on_names_it(clock: FakeClock) -> None:
    upstream = Upstream(clock, [0.05, 0.01], [CircuitOpenError("open", policy="b"), "ok"])
    with pytest.raises(CircuitOpenError):
        await Hedge(1.0, clock=clock).call(upstream)
    upstream = Upstream(clock, [0.05, 0.01], [CircuitOpenError("open", policy="b"), "ok"])
    assert await Hedge(1.0, on=CircuitOpenError, clock=clock).call(upstream) == "ok"


async def test_on_result_lets_a_hedge_replace_a_bad_answer(clock: FakeClock) -> None:
    upstream = Upstream(clock, [0.05, 0.05], [503, 200])
    hedge = Hedge(1.0, on_result=lambda status: status >= 500, clock=clock)
    assert await hedge.call(upstream) == 200
    upstream = Upstream(clock, [0.05, 0.05], [503, 502])
    assert await hedge.call(upstream) == 503  # every answer was bad: the primary's


async def test_decorator_runs_each_attempt_afresh(clock: FakeClock) -> None:
    upstream = Upstream(clock, [1.0, 0.05])

    @Hedge(0.1, clock=clock)
    async def fetch() -> Any:
        return await upstream()

    assert await fetch() == "answer 1"
    assert fetch.__name__ == "fetch"


# -- the adaptive delay -------------------------------------------------------------------


async def test_adaptive_delay_follows_the_quantile_of_successes(clock: FakeClock) -> None:
    hedge = Hedge(quantile=0.5, clock=clock)
    assert hedge.current_delay is None
    for _ in range(20):
        await hedge.call(Upstream(clock, [0.1]))  # measured, not hedged
    delay = hedge.current_delay
    assert delay is not None
    assert 0.1 <= delay < 0.105
    upstream = Upstream(clock, [5.0, 0.1])
    start = clock.now()
    assert await hedge.call(upstream) == "answer 1"
    assert clock.now() - start == pytest.approx(delay + 0.1)


async def test_adaptive_delay_is_never_below_min_delay(clock: FakeClock) -> None:
    hedge = Hedge(min_delay=0.02, clock=clock)
    for _ in range(40):
        await hedge.call(Upstream(clock, [0.001]))
    assert hedge.current_delay == 0.02


async def test_no_hedge_before_enough_latencies_are_measured(clock: FakeClock) -> None:
    hedge = Hedge(clock=clock)
    upstream = Upstream(clock, [5.0, 0.01])
    assert await hedge.call(upstream) == "answer 0"
    assert upstream.started == 1


# -- the budget ---------------------------------------------------------------------------


async def test_the_budget_refuses_a_hedge(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)  # one hedge per 10 s
    hedge = Hedge(0.1, budget=budget, clock=clock)
    upstream = Upstream(clock, [1.0, 0.05, 1.0, 0.05])
    assert await hedge.call(upstream) == "answer 1"
    assert await hedge.call(upstream) == "answer 2"  # no hedge: the slow primary answers
    assert upstream.started == 3


async def test_one_budget_covers_a_retry_and_a_hedge(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)  # one extra per 10 s
    hedge = Hedge(0.1, budget=budget, clock=clock)
    retry = Retry(attempts=3, budget=budget, clock=clock)
    assert await hedge.call(Upstream(clock, [1.0, 0.05])) == "answer 1"  # the hedge spends it
    failing = Upstream(clock, [0.01], [ConnectionError("down")])
    with pytest.raises(ConnectionError) as caught:
        await retry.call(failing)
    assert failing.started == 1
    assert any("retry budget is exhausted" in note for note in caught.value.__notes__)


async def test_a_retry_around_a_hedge_counts_each_call_once(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=10.0)
    policy = Pipeline(Retry(budget=budget, clock=clock), Hedge(0.1, budget=budget, clock=clock))
    for _ in range(10):
        await policy.call(Upstream(clock, [0.01]))
    spent = sum(budget.try_spend(clock.now()) for _ in range(20))
    assert spent == 5  # half of 10 calls, not of 20


async def test_no_budget_means_every_slow_call_is_hedged(clock: FakeClock) -> None:
    hedge = Hedge(0.1, budget=None, clock=clock)
    for _ in range(50):
        upstream = Upstream(clock, [1.0, 0.05])
        assert await hedge.call(upstream) == "answer 1"


# -- deadlines and cancellation -----------------------------------------------------------


async def test_inside_a_timeout_hedges_stop_at_the_deadline(clock: FakeClock) -> None:
    upstream = Upstream(clock, [10.0] * 6)
    policy = Pipeline(Timeout(0.5, clock=clock), Hedge(0.2, max_hedges=5, clock=clock))
    with pytest.raises(TimeoutExceeded):
        await policy.call(upstream)
    assert upstream.started == 3  # at 0, 0.2 and 0.4; none after the deadline
    assert upstream.cancelled == 3
    assert upstream.in_flight == 0
    assert clock.pending_timers == 0


async def test_a_timeout_per_attempt_inside_the_hedge(clock: FakeClock) -> None:
    # The hedge wins while the primary sits inside its own Timeout: the Timeout lets the
    # hedge's cancellation through, and the call answers with the hedge.
    upstream = Upstream(clock, [5.0, 0.05])
    policy = Pipeline(Hedge(0.1, clock=clock), Timeout(0.5, clock=clock))
    assert await policy.call(upstream) == "answer 1"
    assert clock.now() == pytest.approx(0.15)
    # The primary's own Timeout fires first: a failure like any other, and a hedge starts.
    upstream = Upstream(clock, [5.0, 0.05])
    start = clock.now()
    policy = Pipeline(Hedge(1.0, clock=clock), Timeout(0.2, clock=clock))
    assert await policy.call(upstream) == "answer 1"
    assert clock.now() - start == pytest.approx(0.25)
    assert clock.pending_timers == 0


async def test_caller_cancelled_while_hedges_run_leaves_no_attempt_behind(
    clock: FakeClock,
) -> None:
    upstream = Upstream(clock, [10.0, 10.0, 10.0])
    hedge = Hedge(0.1, max_hedges=2, clock=clock)
    with anyio.CancelScope() as scope:

        async def cancel_soon() -> None:
            await sleep_on(clock, 0.25)
            scope.cancel()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(cancel_soon)
            await hedge.call(upstream)
    assert scope.cancelled_caught
    assert (upstream.started, upstream.cancelled, upstream.in_flight) == (3, 3, 0)
    assert clock.pending_timers == 0


async def test_a_thousand_tasks_share_one_hedge(clock: FakeClock) -> None:
    hedge = Hedge(0.1, max_hedges=2, budget=None, clock=clock)
    rng = random.Random(11)
    results: dict[int, Any] = {}
    upstreams = []

    async def one(i: int) -> None:
        latencies = [rng.choice([0.01, 0.05, 2.0]) for _ in range(3)]
        upstream = Upstream(clock, latencies, [(i, n) for n in range(3)])
        upstreams.append(upstream)
        results[i] = await hedge.call(upstream)

    async with anyio.create_task_group() as tasks:
        for i in range(1000):
            tasks.start_soon(one, i)
    assert sorted(results) == list(range(1000))
    assert all(result[0] == i for i, result in results.items())
    assert sum(u.in_flight for u in upstreams) == 0
    assert all(u.started == u.finished + u.cancelled for u in upstreams)
    assert clock.pending_timers == 0


# -- telemetry ----------------------------------------------------------------------------


async def test_span_events_say_which_hedge_started_and_which_attempt_won(
    clock: FakeClock, telemetry: Any
) -> None:
    hedge = Hedge(0.1, max_hedges=2, clock=clock, name="hedge-events")
    await hedge.call(Upstream(clock, [1.0, 1.0, 0.01]))
    [span] = telemetry.spans("resilient.hedge")
    events = [(e.name, dict(e.attributes)) for e in span.events]
    assert events == [
        ("resilient.hedge.started", {"resilient.hedge.attempt": 1, "resilient.hedge.delay": 0.1}),
        (
            "resilient.hedge.started",
            {"resilient.hedge.attempt": 2, "resilient.hedge.delay": pytest.approx(0.2)},
        ),
        ("resilient.hedge.won", {"resilient.hedge.attempt": 2}),
    ]
    assert span.attributes["resilient.hedge.winner"] == 2
    assert telemetry.metric_total("resilient.hedge.hedges", policy="hedge-events") == 2


async def test_budget_refusal_is_a_span_event(clock: FakeClock, telemetry: Any) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.0)
    hedge = Hedge(0.1, budget=budget, clock=clock, name="hedge-budget")
    await hedge.call(Upstream(clock, [1.0]))
    [span] = telemetry.spans("resilient.hedge")
    assert [e.name for e in span.events] == [
        "resilient.hedge.budget_exhausted",
        "resilient.hedge.won",
    ]


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"delay": -0.1}, "delay"),
        ({"delay": float("inf")}, "delay"),
        ({"delay": "1"}, "delay"),
        ({"max_hedges": 0}, "max_hedges"),
        ({"max_hedges": 1.5}, "max_hedges"),
        ({"quantile": 0.0}, "quantile"),
        ({"quantile": 1.0}, "quantile"),
        ({"quantile": "p95"}, "quantile"),
        ({"min_delay": -1}, "min_delay"),
        ({"on": "errors"}, "on"),
        ({"on_result": 5}, "on_result"),
        ({"budget": 0.2}, "budget"),
        ({"name": ""}, "name"),
        ({"clock": "now"}, "clock"),
        ({"telemetry": 1}, "telemetry"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Hedge(**kwargs)


def test_defaults_follow_the_design() -> None:
    hedge = Hedge()
    assert (hedge.delay, hedge.max_hedges, hedge.quantile, hedge.min_delay) == (
        None,
        1,
        0.95,
        0.005,
    )
    assert isinstance(hedge.budget, RetryBudget)
    assert hedge.budget is not Hedge().budget
    assert hedge.name == "hedge"


# -- the asyncio engine's timer line, and the real clock ---------------------------------


class StubLoop:
    """The two methods of a loop a due line uses, on a hand-moved time line."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> None:
        self.timers.append((when, callback))

    def run_until(self, now: float) -> None:
        self.now = now
        due = sorted((t for t in self.timers if t[0] <= now), key=lambda t: t[0])
        self.timers = [t for t in self.timers if t[0] > now]
        for _, callback in due:
            callback()


class StubRace:
    def __init__(self, fired: list[str], name: str) -> None:
        self.fired, self.name = fired, name

    def _due(self) -> None:
        self.fired.append(self.name)


def test_due_line_fires_races_in_order_under_one_timer() -> None:
    from resilient.hedge._hedge import _DueLine

    loop = StubLoop()
    line = _DueLine(loop)  # type: ignore[arg-type]
    fired: list[str] = []
    links = {}
    for i, name in enumerate("abcd"):
        loop.now = i * 0.01
        links[name] = line.push(StubRace(fired, name), 0.1)  # type: ignore[arg-type]
    assert len(loop.timers) == 1  # one timer, for the oldest
    links["b"].cancel()  # answered in time: unlinked where it stands
    loop.run_until(0.125)
    assert fired == ["a", "c"]
    loop.run_until(1.0)
    assert fired == ["a", "c", "d"]
    assert line.head.after is None


def test_due_line_gives_a_race_due_earlier_a_timer_of_its_own() -> None:
    from resilient.hedge._hedge import _DueLine

    loop = StubLoop()
    line = _DueLine(loop)  # type: ignore[arg-type]
    fired: list[str] = []
    line.push(StubRace(fired, "slow"), 1.0)  # type: ignore[arg-type]
    line.push(StubRace(fired, "fast"), 0.1)  # type: ignore[arg-type]
    assert len(loop.timers) == 2
    loop.run_until(0.1)
    assert fired == []  # "fast" waits behind "slow": it fires when "slow" does
    loop.run_until(1.0)
    assert fired == ["slow", "fast"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_on_the_real_clock_a_hedge_wins_and_the_primary_is_cancelled() -> None:
    calls: list[str] = []

    async def lookup() -> str:
        n = len(calls)
        calls.append("started")
        try:
            await anyio.sleep(5.0 if n == 0 else 0.001)
        except BaseException:
            calls.append("cancelled")
            raise
        return f"attempt {n}"

    hedge = Hedge(0.01, budget=None)
    with anyio.fail_after(2.0):
        assert await hedge.call(lookup) == "attempt 1"
        assert calls == ["started", "started", "cancelled"]
        assert await Hedge(1.0).call(anyio.sleep, 0.001) is None  # answered in time
        with pytest.raises(TimeoutExceeded):
            await Pipeline(Timeout(0.05), Hedge(0.01, max_hedges=3)).call(lambda: anyio.sleep(5.0))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_each_hedge_runs_in_its_own_callers_context() -> None:
    from contextvars import ContextVar

    caller: ContextVar[int] = ContextVar("caller")
    hedge = Hedge(0.01, budget=None)  # one timer line for every call below
    seen: dict[int, list[tuple[int, int]]] = {}

    async def attempt() -> int:
        mine = caller.get()
        seen.setdefault(mine, []).append((hedge_attempt(), mine))
        await anyio.sleep(1.0 if hedge_attempt() == 0 else 0.001)
        return mine

    async def one(i: int) -> None:
        caller.set(i)
        assert await hedge.call(attempt) == i

    with anyio.fail_after(2.0):
        async with anyio.create_task_group() as tasks:
            for i in range(20):
                tasks.start_soon(one, i)
    assert all(pairs == [(0, i), (1, i)] for i, pairs in seen.items())
    assert len(seen) == 20


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_thousand_tasks_share_one_hedge_on_the_real_clock() -> None:
    hedge = Hedge(0.005, max_hedges=2, budget=None)
    rng = random.Random(3)
    running = 0
    started = finished = cancelled = 0

    async def attempt(i: int) -> int:
        nonlocal running, started, finished, cancelled
        started += 1
        running += 1
        try:
            await anyio.sleep(rng.choice([0.0, 0.001, 0.05]))
        except BaseException:
            cancelled += 1
            raise
        finally:
            running -= 1
        finished += 1
        return i

    async def one(i: int) -> None:
        assert await hedge.call(attempt, i) == i

    with anyio.fail_after(5.0):
        async with anyio.create_task_group() as tasks:
            for i in range(1000):
                tasks.start_soon(one, i)
    assert running == 0
    assert started == finished + cancelled
    assert started > 1000  # some calls were hedged
    line = hedge._due_line
    assert line is not None
    assert line.head.after is None  # no call left waiting for a hedge
