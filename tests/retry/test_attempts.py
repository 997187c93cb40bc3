"""The block form: `async for attempt in retry.attempts(): with attempt: ...`."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from resilient import Pipeline, Timeout
from resilient.retry import Attempt, Backoff, Retry, RetryBudget
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

NO_JITTER = Backoff(initial=1.0, multiplier=2.0, max_delay=100.0, jitter="none")


async def failing_block(retry: Retry, seen: list[int], error: type[Exception]) -> None:
    """A retried block whose every attempt raises `error`; records the attempt numbers."""
    async for attempt in retry.attempts():
        with attempt:
            seen.append(attempt.number)
            raise error(f"attempt {attempt.number}")


async def test_the_block_is_retried_until_it_succeeds(clock: FakeClock) -> None:
    retry = Retry(attempts=5, backoff=NO_JITTER, clock=clock)
    seen = []
    async for attempt in retry.attempts():
        with attempt:
            seen.append(attempt.number)
            await anyio.lowlevel.checkpoint()
            if attempt.number < 3:
                raise ConnectionError
    assert seen == [1, 2, 3]
    assert clock.now() == 3.0
    stats = retry.statistics
    assert (stats.calls, stats.attempts, stats.successes) == (1, 3, 1)


async def test_a_successful_first_block_runs_once(clock: FakeClock) -> None:
    retry = Retry(clock=clock)
    seen = []
    async for attempt in retry.attempts():
        with attempt:
            seen.append(attempt.number)
    assert seen == [1]
    assert retry.statistics.successes == 1


async def test_giving_up_re_raises_the_last_exception_with_a_note(clock: FakeClock) -> None:
    retry = Retry(attempts=2, name="sync", clock=clock)
    with pytest.raises(ConnectionError, match="attempt 2") as caught:
        await failing_block(retry, [], ConnectionError)
    assert caught.value.__notes__ == ["resilient: Retry 'sync' gave up after 2 attempts"]


async def test_an_exception_outside_on_leaves_the_block_at_once(clock: FakeClock) -> None:
    retry = Retry(on=ConnectionError, clock=clock)
    seen: list[int] = []
    with pytest.raises(KeyError):
        await failing_block(retry, seen, KeyError)
    assert seen == [1]
    assert retry.statistics.failures == 1


async def test_attempt_result_lets_on_result_retry_the_block(clock: FakeClock) -> None:
    states = iter(["queued", "running", "done"])
    retry = Retry(attempts=5, on_result=lambda state: state != "done", clock=clock)
    async for attempt in retry.attempts():
        with attempt:
            attempt.result = next(states)
    assert attempt.result == "done"
    assert attempt.number == 3


async def test_when_attempts_run_out_on_results_the_loop_just_ends(clock: FakeClock) -> None:
    retry = Retry(attempts=2, on_result=lambda state: state != "done", clock=clock)
    async for attempt in retry.attempts():
        with attempt:
            attempt.result = "queued"
    assert attempt.number == 2
    assert retry.statistics.exhausted == 1


async def test_the_block_form_never_sleeps_past_max_duration(clock: FakeClock) -> None:
    retry = Retry(attempts=10, backoff=NO_JITTER, max_duration=2.0, clock=clock)
    seen: list[int] = []
    with pytest.raises(ConnectionError) as caught:
        await failing_block(retry, seen, ConnectionError)
    assert seen == [1, 2]
    assert "max_duration" in caught.value.__notes__[0]


async def test_the_block_form_never_sleeps_past_the_enclosing_timeout(clock: FakeClock) -> None:
    retry = Retry(attempts=10, backoff=NO_JITTER, clock=clock)

    with pytest.raises(ConnectionError) as caught:
        await Pipeline(Timeout(2.0, clock=clock)).call(failing_block, retry, [], ConnectionError)
    assert clock.now() == 1.0
    assert "enclosing deadline" in caught.value.__notes__[0]


async def test_the_block_form_draws_on_the_budget(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)
    retry = Retry(attempts=5, budget=budget, clock=clock)
    seen: list[int] = []
    with pytest.raises(ConnectionError) as caught:
        await failing_block(retry, seen, ConnectionError)
    assert seen == [1, 2]
    assert "retry budget" in caught.value.__notes__[0]


async def test_cancellation_inside_the_block_is_not_retried(clock: FakeClock) -> None:
    retry = Retry(clock=clock)
    seen = []
    with anyio.CancelScope() as scope:
        async for attempt in retry.attempts():
            with attempt:
                seen.append(attempt.number)
                scope.cancel()
                await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert seen == [1]
    assert (retry.statistics.cancelled, retry.statistics.failures) == (1, 0)


async def test_cancellation_during_the_sleep_refunds_the_budget(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)
    retry = Retry(attempts=3, backoff=Backoff(0.01, jitter="none"), budget=budget, clock=clock)
    with anyio.CancelScope() as scope:
        async for attempt in retry.attempts():
            with attempt:
                scope.cancel()  # takes effect at the sleep's checkpoint
                raise ConnectionError
    assert scope.cancelled_caught
    assert attempt.number == 1
    assert retry.statistics.cancelled == 1
    assert budget.try_spend(clock.now())


async def test_an_attempt_used_without_with_is_an_error(clock: FakeClock) -> None:
    retry = Retry(clock=clock)
    with pytest.raises(RuntimeError, match="with attempt"):
        async for _attempt in retry.attempts():
            pass


async def test_attempts_of_one_policy_run_concurrently_without_sharing_state(
    clock: FakeClock,
) -> None:
    retry = Retry(attempts=3, budget=None, clock=clock)
    numbers: dict[int, list[int]] = {}

    async def worker(i: int) -> None:
        async for attempt in retry.attempts():
            with attempt:
                numbers.setdefault(i, []).append(attempt.number)
                await anyio.lowlevel.checkpoint()
                if attempt.number <= i % 3 and attempt.number < 3:
                    raise ConnectionError

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(worker, i)
    assert all(numbers[i] == list(range(1, min(i % 3, 2) + 2)) for i in range(30))
    assert retry.statistics.calls == retry.statistics.successes == 30


def test_attempt_repr_names_the_number_and_policy() -> None:
    iterator = Retry(name="sync").attempts()
    assert repr(Attempt(iterator, 2)) == "<Attempt 2 of 'sync'>"
