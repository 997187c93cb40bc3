"""Bulkhead: a concurrency cap with a bounded FIFO queue, on asyncio and trio."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import anyio
import pytest
from opentelemetry.trace import StatusCode

import resilient.bulkhead as bulkhead_module
from gates import Gate, settle
from resilient import Bulkhead, BulkheadFullError, Pipeline, Timeout, TimeoutExceeded
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio


# -- the three faces ----------------------------------------------------------------------


async def test_decorated_call_runs_and_returns_its_result() -> None:
    bulkhead = Bulkhead(2)

    @bulkhead
    async def double(x: int) -> int:
        assert bulkhead.in_flight == 1
        return 2 * x

    assert await double(21) == 42
    assert bulkhead.in_flight == 0


async def test_call_passes_arguments_through() -> None:
    async def add(a: int, *, b: int) -> int:
        return a + b

    assert await Bulkhead(1).call(add, 1, b=2) == 3


async def test_async_with_holds_a_slot_for_the_block() -> None:
    bulkhead = Bulkhead(1)
    async with bulkhead:
        assert bulkhead.in_flight == 1
        with pytest.raises(BulkheadFullError):
            await bulkhead.call(Gate())
    assert bulkhead.in_flight == 0


async def test_async_with_releases_the_slot_when_the_block_raises() -> None:
    bulkhead = Bulkhead(1)
    with pytest.raises(KeyError):
        async with bulkhead:
            raise KeyError("boom")
    assert bulkhead.in_flight == 0


async def test_failing_call_releases_its_slot_and_its_error_is_not_wrapped() -> None:
    bulkhead = Bulkhead(1)

    @bulkhead
    async def fail() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        await fail()
    assert bulkhead.in_flight == 0


async def test_works_as_a_pipeline_stage() -> None:
    bulkhead = Bulkhead(1)
    pipeline = Pipeline(Timeout(5), bulkhead)

    async def work() -> int:
        assert bulkhead.in_flight == 1
        return 7

    assert await pipeline.call(work) == 7
    assert bulkhead.in_flight == 0


async def test_decorating_a_plain_function_raises_type_error() -> None:
    def plain() -> None: ...

    with pytest.raises(TypeError, match="async def"):
        Bulkhead(1)(plain)  # type: ignore[arg-type]


# -- capacity and queue -------------------------------------------------------------------


async def test_rejects_at_once_when_full_and_no_queue_by_default() -> None:
    bulkhead = Bulkhead(2)
    gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        tg.start_soon(bulkhead.call, gate)
        await settle()
        with pytest.raises(BulkheadFullError) as info:
            await bulkhead.call(gate)
        assert info.value.policy == "bulkhead"
        assert info.value.retry_after is None
        assert gate.entered == 2
        gate.opened.set()
    assert bulkhead.in_flight == 0


async def test_rejects_at_once_when_the_queue_is_full() -> None:
    bulkhead = Bulkhead(1, max_waiting=2)
    gate = Gate()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(bulkhead.call, gate)
        await settle()
        assert (bulkhead.in_flight, bulkhead.waiting) == (1, 2)
        with pytest.raises(BulkheadFullError, match="queued"):
            await bulkhead.call(gate)
        gate.opened.set()
    assert gate.entered == 3
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


async def test_queued_callers_are_served_in_fifo_order() -> None:
    bulkhead = Bulkhead(1, max_waiting=10)
    gate = Gate()
    order: list[int] = []

    async def record(i: int) -> None:
        order.append(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        for i in range(6):
            tg.start_soon(bulkhead.call, record, i)
            await settle()  # each joins the queue before the next arrives
        assert bulkhead.waiting == 6
        gate.opened.set()
    assert order == list(range(6))


async def test_released_slot_goes_to_the_waiter_not_to_a_newcomer() -> None:
    bulkhead = Bulkhead(1, max_waiting=1)
    order: list[str] = []
    release = anyio.Event()

    async def waiter_work() -> None:
        order.append("waiter")

    async def newcomer_work() -> None:
        order.append("newcomer")

    async def holder() -> None:
        async with bulkhead:
            await release.wait()
        # The slot was handed to the waiter: nothing is free for the newcomer, which queues.
        assert (bulkhead.in_flight, bulkhead.waiting) == (1, 0)
        await bulkhead.call(newcomer_work)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await settle()
        tg.start_soon(bulkhead.call, waiter_work)
        await settle()
        release.set()
    assert order == ["waiter", "newcomer"]
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


async def test_queued_caller_is_rejected_after_max_wait(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=2.0, clock=clock)
    gate = Gate()
    outcome: list[BaseException] = []

    async def queued() -> None:
        try:
            await bulkhead.call(gate)
        except BulkheadFullError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        tg.start_soon(queued)
        await settle()
        clock.advance(1.9)
        await settle()
        assert outcome == []
        assert bulkhead.waiting == 1
        clock.advance(0.1)
        await settle()
        assert len(outcome) == 1
        assert "within 2s" in str(outcome[0])
        assert bulkhead.waiting == 0
        gate.opened.set()
    assert bulkhead.in_flight == 0


async def test_queued_caller_that_gets_a_slot_in_time_runs(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=2.0, clock=clock)
    gate = Gate()
    results: list[str] = []

    async def queued() -> None:
        results.append(await bulkhead.call(gate))

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        tg.start_soon(queued)
        await settle()
        clock.advance(1.0)
        gate.opened.set()
        await settle()
        clock.advance(5.0)  # the stale max_wait timer fires into an exited scope: harmless
    assert results == ["done"]
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


async def test_enclosing_timeout_shortens_the_wait(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=10.0, clock=clock)
    gate = Gate()
    errors: list[BaseException] = []

    async def queued() -> None:
        try:
            async with Timeout(1.0, clock=clock):
                await bulkhead.call(gate)
        except (TimeoutExceeded, BulkheadFullError) as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        tg.start_soon(queued)
        await settle()
        clock.advance(0.9)
        await settle()
        assert errors == []
        clock.advance(0.1)
        await settle()
        assert len(errors) == 1  # after 1 s, not max_wait's 10 s
        assert bulkhead.waiting == 0
        gate.opened.set()
    assert bulkhead.in_flight == 0


async def test_cancelled_waiter_gives_its_place_back() -> None:
    bulkhead = Bulkhead(1, max_waiting=1)
    gate = Gate()
    ran: list[int] = []

    async def work(i: int) -> None:
        ran.append(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(bulkhead.call, work, 1)
            await settle()
            assert bulkhead.waiting == 1
            with pytest.raises(BulkheadFullError):
                await bulkhead.call(work, 2)
            doomed.cancel_scope.cancel()
        assert bulkhead.waiting == 0
        tg.start_soon(bulkhead.call, work, 3)  # the freed place is usable again
        await settle()
        assert bulkhead.waiting == 1
        gate.opened.set()
    assert ran == [3]
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


class Queued:
    """Callers queued behind a held slot, each in a cancel scope of its own."""

    def __init__(self, bulkhead: Bulkhead, tg: anyio.abc.TaskGroup) -> None:
        self.bulkhead = bulkhead
        self.tg = tg
        self.scopes: dict[int, anyio.CancelScope] = {}
        self.ran: list[int] = []

    async def _work(self, i: int) -> None:
        self.ran.append(i)

    async def _caller(self, i: int) -> None:
        with self.scopes[i]:
            await self.bulkhead.call(self._work, i)

    async def arrive(self, i: int) -> None:
        self.scopes[i] = anyio.CancelScope()
        self.tg.start_soon(self._caller, i)
        await settle()  # in line before the next one arrives

    async def cancel(self, i: int) -> None:
        self.scopes[i].cancel()
        await settle()


async def test_cancelling_queued_waiters_newest_first_never_searches_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared = 0

    def counting_eq(self: object, other: object) -> bool:
        nonlocal compared
        compared += 1
        return self is other

    # A search for the waiter (deque.remove) compares it with every waiter ahead of it.
    monkeypatch.setattr(bulkhead_module._Waiter, "__eq__", counting_eq)
    bulkhead = Bulkhead(1, max_waiting=300)
    gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        line = Queued(bulkhead, tg)
        for i in range(300):
            line.scopes[i] = anyio.CancelScope()
            tg.start_soon(line._caller, i)
        await settle()
        assert bulkhead.waiting == 300
        for i in reversed(range(300)):
            await line.cancel(i)
            assert bulkhead.waiting == i
        gate.opened.set()
    assert compared == 0
    assert line.ran == []
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


@pytest.mark.parametrize("seed", range(6))
async def test_fifo_order_holds_with_cancellations_interleaved(seed: int) -> None:
    rng = random.Random(seed)
    bulkhead = Bulkhead(1, max_waiting=30)
    gate = Gate()
    live: list[int] = []  # the reference: who is in line, in order
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        line = Queued(bulkhead, tg)
        for i in range(30):
            if live and rng.random() < 0.4:
                await line.cancel(live.pop(rng.randrange(len(live))))
            await line.arrive(i)
            live.append(i)
            assert bulkhead.waiting == len(live)
        gate.opened.set()
    assert line.ran == live
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


async def test_max_waiting_counts_only_the_waiters_still_in_line() -> None:
    bulkhead = Bulkhead(1, max_waiting=3)
    gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        line = Queued(bulkhead, tg)
        for i in range(3):
            await line.arrive(i)
        await line.cancel(1)  # from the middle of the line
        assert bulkhead.waiting == 2
        await line.arrive(3)  # its place is free again
        assert bulkhead.waiting == 3
        with pytest.raises(BulkheadFullError, match="3 queued"):
            await bulkhead.call(gate)
        gate.opened.set()
    assert line.ran == [0, 2, 3]
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


async def test_slot_of_a_waiter_cancelled_once_served_goes_past_the_cancelled_ones() -> None:
    bulkhead = Bulkhead(1, max_waiting=3)
    release = anyio.Event()
    ran: list[int] = []

    async def work(i: int) -> None:
        await anyio.lowlevel.checkpoint()
        ran.append(i)

    async with anyio.create_task_group() as tg:
        scopes = [anyio.CancelScope() for _ in range(3)]

        async def caller(i: int) -> None:
            with scopes[i]:
                await bulkhead.call(work, i)

        async def holder() -> None:
            async with bulkhead:
                await release.wait()
            # The slot now belongs to 0, which has not resumed yet; 1 is still in line.
            assert (bulkhead.in_flight, bulkhead.waiting) == (1, 2)
            scopes[0].cancel()
            scopes[1].cancel()

        tg.start_soon(holder)
        await settle()
        for i in range(3):
            tg.start_soon(caller, i)
            await settle()
        release.set()
    assert ran == [2]
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("cancel_first", [False, True])
async def test_asyncio_task_cancelled_around_the_hand_over_of_its_slot_passes_it_on(
    cancel_first: bool,
) -> None:
    # Task.cancel() reaches a task even when the slot has already woken it (an anyio
    # cancel scope waits for its next checkpoint instead), and a slot may be handed to a
    # waiter whose cancellation has not run yet: either way the slot goes on to the next.
    bulkhead = Bulkhead(1, max_waiting=3)
    ran: list[int] = []

    async def work(i: int) -> None:
        ran.append(i)

    async with bulkhead:
        tasks = [asyncio.create_task(bulkhead.call(work, i)) for i in range(3)]
        await settle()
        assert bulkhead.waiting == 3
        if cancel_first:
            tasks[0].cancel()
    assert (bulkhead.in_flight, bulkhead.waiting) == (1, 2)  # handed to 0, not resumed yet
    tasks[0].cancel()
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert [task.cancelled() for task in tasks] == [True, True, False]
    assert ran == [2]
    assert (bulkhead.in_flight, bulkhead.waiting) == (0, 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_never_exceeds_max_concurrent_under_a_thousand_tasks_with_cancellations(
    seed: int,
) -> None:
    rng = random.Random(seed)
    limit = 7
    bulkhead = Bulkhead(limit, max_waiting=400)
    running = 0
    peak = 0
    outcomes = {"ran": 0, "rejected": 0, "cancelled": 0}

    async def work(steps: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            for _ in range(steps):
                await anyio.lowlevel.checkpoint()
        finally:
            running -= 1

    scopes: list[anyio.CancelScope] = []

    async def caller(steps: int) -> None:
        scope = anyio.CancelScope()
        scopes.append(scope)
        with scope:
            try:
                await bulkhead.call(work, steps)
            except BulkheadFullError:
                outcomes["rejected"] += 1
                return
            outcomes["ran"] += 1
        if scope.cancelled_caught:
            outcomes["cancelled"] += 1

    async def chaos() -> None:
        for _ in range(600):
            await anyio.lowlevel.checkpoint()
            if scopes:
                rng.choice(scopes).cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(chaos)
        for _ in range(1000):
            tg.start_soon(caller, rng.randint(0, 5))
            if rng.random() < 0.3:
                await anyio.lowlevel.checkpoint()
    assert peak == limit
    assert sum(outcomes.values()) == 1000
    assert outcomes["ran"] > 0
    assert outcomes["cancelled"] > 0
    assert (bulkhead.in_flight, bulkhead.waiting, running) == (0, 0, 0)


# -- telemetry ----------------------------------------------------------------------------


async def test_a_call_is_a_span_and_counts_in_flight(telemetry: Any) -> None:
    bulkhead = Bulkhead(2, name="bh-span")

    async def work() -> int:
        assert telemetry.metric_total("resilient.bulkhead.in_flight", **_named("bh-span")) == 1
        return 1

    assert await bulkhead.call(work) == 1
    (span,) = telemetry.spans("resilient.bulkhead")
    assert span.attributes["resilient.policy.name"] == "bh-span"
    assert "resilient.outcome" not in span.attributes  # a success leaves it unset
    assert telemetry.metric_total("resilient.bulkhead.in_flight", **_named("bh-span")) == 0


async def test_rejection_ends_the_span_with_error_status(telemetry: Any) -> None:
    bulkhead = Bulkhead(1, name="bh-reject")
    async with bulkhead:
        with pytest.raises(BulkheadFullError):
            await bulkhead.call(Gate())
    rejected = [
        s
        for s in telemetry.spans("resilient.bulkhead")
        if s.attributes.get("resilient.outcome") == "rejected"
    ]
    (span,) = rejected
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "BulkheadFullError"
    assert telemetry.metric_total(
        "resilient.calls", **{"resilient.outcome": "rejected"}, **_named("bh-reject")
    )


async def test_queueing_is_a_span_event_with_the_wait(telemetry: Any, clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_waiting=1, name="bh-queue", clock=clock)
    gate = Gate()

    async def quick() -> None: ...

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, gate)
        await settle()
        tg.start_soon(bulkhead.call, quick)
        await settle()
        assert telemetry.metric_total("resilient.bulkhead.queued", **_named("bh-queue")) == 1
        clock.advance(0.25)
        gate.opened.set()
    queued = [
        s
        for s in telemetry.spans("resilient.bulkhead")
        if any(e.name == "resilient.bulkhead.queued" for e in s.events)
    ]
    (span,) = queued
    dequeued = next(e for e in span.events if e.name == "resilient.bulkhead.dequeued")
    assert dequeued.attributes["resilient.wait.duration"] == pytest.approx(0.25)
    assert telemetry.metric_total("resilient.bulkhead.queued", **_named("bh-queue")) == 0
    assert telemetry.metric_total("resilient.wait.duration", **_named("bh-queue")) == 1
    assert telemetry.metric_total("resilient.bulkhead.in_flight", **_named("bh-queue")) == 0


async def test_async_with_is_a_span_covering_the_block(telemetry: Any) -> None:
    bulkhead = Bulkhead(1, name="bh-with")
    with pytest.raises(KeyError):
        async with bulkhead:
            raise KeyError("x")
    (span,) = telemetry.spans("resilient.bulkhead")
    assert span.attributes["resilient.outcome"] == "failure"
    assert bulkhead.in_flight == 0
    assert telemetry.metric_total("resilient.bulkhead.in_flight", **_named("bh-with")) == 0


async def test_telemetry_false_emits_nothing(telemetry: Any) -> None:
    bulkhead = Bulkhead(1, name="bh-silent", telemetry=False)

    async def work() -> None: ...

    await bulkhead.call(work)
    async with bulkhead:
        pass
    assert telemetry.spans("resilient.bulkhead") == []
    assert not any(
        attrs.get("resilient.policy.name") == "bh-silent"
        for attrs, _ in telemetry.metric_points("resilient.bulkhead.in_flight")
    )


def _named(name: str) -> dict[str, str]:
    return {"resilient.policy.name": name}


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": -1}, "max_concurrent"),
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_concurrent": "3"}, "max_concurrent"),
        ({"max_concurrent": 1, "max_waiting": -1}, "max_waiting"),
        ({"max_concurrent": 1, "max_waiting": 0.5}, "max_waiting"),
        ({"max_concurrent": 1, "max_wait": 0}, "max_wait"),
        ({"max_concurrent": 1, "max_wait": -1.0}, "max_wait"),
        ({"max_concurrent": 1, "max_wait": float("inf")}, "max_wait"),
        ({"max_concurrent": 1, "max_wait": float("nan")}, "max_wait"),
        ({"max_concurrent": 1, "max_wait": 10**400}, "max_wait"),
        ({"max_concurrent": 1, "name": ""}, "name"),
        ({"max_concurrent": 1, "name": 3}, "name"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Bulkhead(**kwargs)


def test_defaults_follow_the_design() -> None:
    bulkhead = Bulkhead(3)
    assert (bulkhead.max_concurrent, bulkhead.max_waiting, bulkhead.max_wait) == (3, 0, None)
    assert bulkhead.name == "bulkhead"
    assert "Bulkhead(3" in repr(bulkhead)
