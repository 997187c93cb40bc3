"""CircuitBreaker(store=RedisStore(...)): one state per breaker name for every process.

Two breakers with the same name on two stores stand for two processes (each store has its
own client and connections); one test runs two real OS processes. The scripts run on a
fixed time from a fake clock, so that breaks end without sleeping.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio

import resilient.telemetry
from redis_servers import RedisServer
from resilient import CircuitBreaker, CircuitOpenError, StorageUnavailableError
from resilient.storage import BreakerStore, MemoryStore, RedisStore
from resilient.telemetry import Event
from resilient.testing import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

WORKER = Path(__file__).with_name("breaker_worker.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server_clock() -> FakeClock:
    """The time the scripts decide on (the server's clock, fixed for the test)."""
    return FakeClock(start=1000.0, autojump=False)


@pytest.fixture
async def stores(
    redis_url: str, prefix: str, server_clock: FakeClock
) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one Redis and one prefix: two processes' views of it."""
    # A long timeout: these tests are about the shared state, not about a slow Redis (a
    # loaded machine can take more than the default 0.25 s to answer).
    pair = (
        RedisStore(redis_url, prefix=prefix, on_unavailable="deny", timeout=5.0),
        RedisStore(redis_url, prefix=prefix, on_unavailable="deny", timeout=5.0),
    )
    for store in pair:
        store._now = server_clock.now
    yield pair
    for store in pair:
        await store.aclose()


async def fail() -> None:
    raise ConnectionError("down")


async def succeed() -> str:
    return "ok"


async def failures(breaker: CircuitBreaker, count: int) -> None:
    for _ in range(count):
        with pytest.raises(ConnectionError):
            await breaker.call(fail)


async def outcome_of(breaker: CircuitBreaker, step: str) -> tuple[str, float | None]:
    try:
        await breaker.call(fail if step == "f" else succeed)
    except ConnectionError:
        return "failed", None
    except CircuitOpenError as exc:
        return "rejected", exc.retry_after
    return "ran", None


@pytest.mark.parametrize("window_calls", [None, 5])
async def test_a_shared_breaker_decides_like_one_in_memory(
    stores: tuple[RedisStore, RedisStore], server_clock: FakeClock, window_calls: int | None
) -> None:
    settings: dict[str, Any] = {
        "minimum_calls": 3,
        "window": 10.0,
        "window_calls": window_calls,
        "break_duration": 2.0,
        "max_break_duration": 5.0,
        "half_open_calls": 2,
    }
    shared = CircuitBreaker("api", store=stores[0], **settings)
    in_memory = CircuitBreaker("api", clock=server_clock, **settings)
    steps = "ssfsffsfssfffsssffsfsfffssssfsffffssss"
    for i, step in enumerate(steps * 2):
        server_clock.advance((0.5, 0.0, 1.5, 0.0, 3.0)[i % 5])
        on_redis = await outcome_of(shared, step)
        assert on_redis == await outcome_of(in_memory, step), f"step {i}"
        assert shared.state == in_memory.state, f"step {i}"
        if on_redis[0] != "rejected":  # the shared window as of this process's last outcome
            assert shared.metrics() == in_memory.metrics(), f"step {i}"


class SlowRecordStore(RedisStore):
    """A RedisStore whose outcomes take `delay` seconds more to arrive."""

    delay = 0.15

    async def breaker_record(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return await super().breaker_record(*args, **kwargs)


async def test_an_outcome_has_reached_the_store_when_the_call_returns(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    tasks = asyncio.all_tasks()
    here = CircuitBreaker("api", minimum_calls=2, store=stores[0])
    there = CircuitBreaker("api", minimum_calls=2, store=stores[1])
    await failures(here, 2)
    with pytest.raises(CircuitOpenError):
        await there.call(succeed)
    # Nothing is left running once the calls have returned (but the stores' connections).
    left = {t for t in asyncio.all_tasks() if "Multiplexer" not in t.get_coro().__qualname__}
    assert left == tasks


@pytest.mark.parametrize("face", ["call", "async with"])
@pytest.mark.parametrize("cancel", ["asyncio.wait_for", "anyio.fail_after"])
async def test_an_outcome_in_flight_survives_the_cancellation_of_its_call(
    redis_url: str, prefix: str, server_clock: FakeClock, face: str, cancel: str
) -> None:
    async with SlowRecordStore(
        redis_url, prefix=prefix, on_unavailable="deny", timeout=2.0
    ) as store:
        store._now = server_clock.now
        breaker = CircuitBreaker("api", minimum_calls=2, store=store)
        await breaker.call(succeed)  # one success, and a connection ready

        async def fail_through_the_breaker() -> None:
            if face == "call":
                await breaker.call(fail)
            else:
                async with breaker:
                    await fail()

        async def cancelled_after(seconds: float) -> None:
            if cancel == "asyncio.wait_for":
                await asyncio.wait_for(fail_through_the_breaker(), seconds)
            else:
                with anyio.fail_after(seconds):
                    await fail_through_the_breaker()

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await cancelled_after(0.05)  # while the outcome is on its way
        # The cancellation waited for the outcome (bounded by the store's timeout)...
        assert SlowRecordStore.delay <= time.monotonic() - started < store.timeout + MARGIN
        assert breaker.state == "open"
        # ...which every process now sees.
        with pytest.raises(CircuitOpenError):
            await CircuitBreaker("api", minimum_calls=2, store=store).call(succeed)


def test_redis_store_can_share_breaker_state_and_memory_store_cannot() -> None:
    assert isinstance(RedisStore("redis://127.0.0.1:1/0"), BreakerStore)
    assert not isinstance(MemoryStore(), BreakerStore)


def test_a_subclass_refuses_a_store_rather_than_ignore_it() -> None:
    class Mine(CircuitBreaker):
        __slots__ = ()

    with pytest.raises(ValueError, match="store is not supported on a subclass"):
        Mine(store=RedisStore("redis://127.0.0.1:1/0"))


async def test_failures_in_one_process_open_the_circuit_in_the_other(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    seen: list[tuple[str, str]] = []
    here = CircuitBreaker("payments", minimum_calls=4, store=stores[0])
    there = CircuitBreaker(
        "payments",
        minimum_calls=4,
        store=stores[1],
        on_state_change=lambda old, new: seen.append((old.value, new.value)),
    )
    assert await there.call(succeed) == "ok"
    await failures(here, 2)
    assert here.state == "closed"  # 3 calls: fewer than minimum_calls
    await failures(here, 1)
    assert here.state == "open"
    with pytest.raises(CircuitOpenError) as caught:
        await there.call(succeed)
    assert caught.value.retry_after == pytest.approx(5.0)
    assert there.state == "open"
    assert seen == [("closed", "open")]


async def test_breakers_with_other_names_do_not_share(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    payments = CircuitBreaker("payments", minimum_calls=2, store=stores[0])
    search = CircuitBreaker("search", minimum_calls=2, store=stores[1])
    await failures(payments, 2)
    assert await search.call(succeed) == "ok"
    assert search.state == "closed"


async def test_the_window_counts_the_outcomes_of_every_process(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    here = CircuitBreaker("db", minimum_calls=4, failure_ratio=0.5, store=stores[0])
    there = CircuitBreaker("db", minimum_calls=4, failure_ratio=0.5, store=stores[1])
    await here.call(succeed)
    await there.call(succeed)
    await failures(here, 1)
    assert here.metrics().calls == 3
    await failures(there, 1)  # 2 of 4 failed, counted from both processes
    assert there.state == "open"
    m = there.metrics()
    assert (m.calls, m.failures, m.failure_ratio) == (4, 2, 0.5)


async def test_a_time_window_forgets_outcomes_older_than_the_window(
    stores: tuple[RedisStore, RedisStore], server_clock: FakeClock
) -> None:
    here = CircuitBreaker("db", minimum_calls=2, window=10.0, store=stores[0])
    there = CircuitBreaker("db", minimum_calls=2, window=10.0, store=stores[1])
    await failures(here, 1)
    server_clock.advance(11.0)
    await failures(there, 1)
    assert there.state == "closed"
    assert there.metrics().calls == 1


async def test_a_count_window_keeps_the_last_calls_of_every_process(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    here = CircuitBreaker("db", window_calls=3, minimum_calls=3, store=stores[0])
    there = CircuitBreaker("db", window_calls=3, minimum_calls=3, store=stores[1])
    await failures(here, 1)
    for _ in range(3):
        await there.call(succeed)  # the failure slides out
    assert (there.metrics().calls, there.metrics().failures) == (3, 0)
    await failures(here, 1)
    assert here.state == "closed"  # 1 of the last 3
    await failures(here, 1)
    assert here.state == "open"  # 2 of the last 3
    assert here.metrics().failures == 2


async def open_then_wait_out_the_break(
    here: CircuitBreaker, server_clock: FakeClock, seconds: float = 5.0
) -> None:
    await failures(here, 2)
    assert here.state == "open"
    server_clock.advance(seconds)


async def test_half_open_admits_its_probes_across_processes(
    stores: tuple[RedisStore, RedisStore], server_clock: FakeClock
) -> None:
    here = CircuitBreaker("api", minimum_calls=2, half_open_calls=2, store=stores[0])
    there = CircuitBreaker("api", minimum_calls=2, half_open_calls=2, store=stores[1])
    await open_then_wait_out_the_break(here, server_clock)
    async with here:
        assert here.state == "half_open"
        async with there:
            with pytest.raises(CircuitOpenError, match="every probe slot is taken"):
                await here.call(succeed)
            with pytest.raises(CircuitOpenError, match="every probe slot is taken"):
                await there.call(succeed)
    assert here.state == "closed"  # its probe was the last one needed
    assert here.metrics().calls == 0  # closing empties the window
    assert await there.call(succeed) == "ok"
    assert there.state == "closed"


async def test_a_failed_probe_opens_again_for_twice_as_long(
    stores: tuple[RedisStore, RedisStore], server_clock: FakeClock
) -> None:
    here = CircuitBreaker("api", minimum_calls=2, store=stores[0])
    there = CircuitBreaker("api", minimum_calls=2, store=stores[1])
    await open_then_wait_out_the_break(here, server_clock)
    await failures(there, 1)
    assert there.state == "open"
    with pytest.raises(CircuitOpenError) as caught:
        await here.call(succeed)
    assert caught.value.retry_after == pytest.approx(10.0)


async def test_a_cancelled_probe_frees_its_slot_for_another_process(
    stores: tuple[RedisStore, RedisStore], server_clock: FakeClock
) -> None:
    here = CircuitBreaker("api", minimum_calls=2, store=stores[0])
    there = CircuitBreaker("api", minimum_calls=2, store=stores[1])
    await open_then_wait_out_the_break(here, server_clock)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    probe = asyncio.create_task(here.call(hang))
    await started.wait()
    with pytest.raises(CircuitOpenError):
        await there.call(succeed)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await there.call(succeed) == "ok"
    assert there.state == "closed"


async def test_a_probe_slot_held_past_the_longest_break_goes_to_the_next_caller(
    stores: tuple[RedisStore, RedisStore], server_clock: FakeClock
) -> None:
    # A process that died holding the probe slot must not keep the fleet half-open.
    here = CircuitBreaker("api", minimum_calls=2, max_break_duration=30.0, store=stores[0])
    there = CircuitBreaker("api", minimum_calls=2, max_break_duration=30.0, store=stores[1])
    await open_then_wait_out_the_break(here, server_clock)
    async with here:  # takes the only slot and never reports, as a dead process would
        with pytest.raises(CircuitOpenError, match="every probe slot is taken"):
            await there.call(succeed)
        server_clock.advance(30.0)
        assert await there.call(succeed) == "ok"
        assert there.state == "closed"
    assert here.state == "closed"  # the stale probe changed nothing


async def test_an_outcome_from_before_a_state_change_is_not_counted(
    stores: tuple[RedisStore, RedisStore], server_clock: FakeClock
) -> None:
    here = CircuitBreaker("api", minimum_calls=2, store=stores[0])
    there = CircuitBreaker("api", minimum_calls=2, store=stores[1])
    release = asyncio.Event()

    async def slow_failure() -> None:
        await release.wait()
        raise ConnectionError("late")

    late = asyncio.create_task(here.call(slow_failure))
    await asyncio.sleep(0.05)  # admitted while closed
    await open_then_wait_out_the_break(there, server_clock)
    assert await there.call(succeed) == "ok"  # the probe closes it: a new epoch
    release.set()
    with pytest.raises(ConnectionError):
        await late
    assert here.state == "closed"
    assert here.metrics().calls == 0


async def test_manual_control_acts_on_this_process_only(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    here = CircuitBreaker("api", store=stores[0])
    there = CircuitBreaker("api", store=stores[1])
    here.force_open()
    with pytest.raises(CircuitOpenError, match="forced open"):
        await here.call(succeed)
    assert await there.call(succeed) == "ok"
    here.reset()
    assert await here.call(succeed) == "ok"


def test_two_processes_share_one_circuit(redis_url: str, prefix: str) -> None:
    done = subprocess.run(
        [sys.executable, str(WORKER), redis_url, prefix, "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "open"

    async def from_this_process() -> str:
        async with RedisStore(redis_url, prefix=prefix, on_unavailable="deny") as store:
            breaker = CircuitBreaker("payments", minimum_calls=5, store=store)
            try:
                await breaker.call(succeed)
            except CircuitOpenError:
                return "rejected"
            return "admitted"

    assert asyncio.run(from_this_process()) == "rejected"


async def test_a_breaker_on_redis_cluster_keeps_its_keys_in_one_slot(
    redis_cluster_url: str, prefix: str, server_clock: FakeClock
) -> None:
    client = redis.asyncio.RedisCluster.from_url(redis_cluster_url)
    store = RedisStore(client, prefix=prefix, on_unavailable="deny", timeout=5.0)
    store._now = server_clock.now
    try:
        here = CircuitBreaker("api", window_calls=4, minimum_calls=2, store=store)
        there = CircuitBreaker("api", window_calls=4, minimum_calls=2, store=store)
        await there.call(succeed)
        await failures(here, 1)  # the count window's ring and hash, in one script
        assert here.state == "open"
        with pytest.raises(CircuitOpenError):
            await there.call(succeed)
    finally:
        await client.aclose()


# -- Redis down ------------------------------------------------------------------------

TIMEOUT = 0.2
MARGIN = 0.4


async def calls_while_down(breaker: CircuitBreaker, count: int) -> list[tuple[str, float]]:
    """How each of `count` calls that fail ended, and how long it took."""
    ended = []
    for _ in range(count):
        started = time.monotonic()
        try:
            await breaker.call(fail)
            outcome = "ran"
        except ConnectionError:
            outcome = "failed"
        except CircuitOpenError:
            outcome = "rejected"
        except StorageUnavailableError:
            outcome = "unavailable"
        ended.append((outcome, time.monotonic() - started))
    return ended


@pytest.mark.parametrize("mode", ["allow", "deny", "local"])
async def test_redis_killed_mid_run(redis_server: RedisServer, prefix: str, mode: Any) -> None:
    store = RedisStore(redis_server.url, prefix=prefix, on_unavailable=mode, timeout=TIMEOUT)
    breaker = CircuitBreaker("api", minimum_calls=4, store=store)
    events: list[Event] = []
    subscription = resilient.telemetry.subscribe(events.append, policy=store)
    try:
        assert await breaker.call(succeed) == "ok"
        redis_server.kill()
        ended = await calls_while_down(breaker, 10)
        assert not store.available
        assert max(seconds for _, seconds in ended) < TIMEOUT + MARGIN
        outcomes = [outcome for outcome, _ in ended]
        if mode == "deny":
            assert set(outcomes) == {"unavailable"}
        else:
            # This process's breaker decides: it counts its own failures and opens.
            assert outcomes[:4] == ["failed"] * 4
            assert set(outcomes[4:]) == {"rejected"}
            assert breaker.state == "open"
        redis_server.start()
        await asyncio.sleep(4.5)  # past the store's longest cool-down
        for _ in range(3):
            try:
                await breaker.call(succeed)
            except CircuitOpenError:
                pass
        assert store.available
        assert breaker.state == "closed"  # Redis's state: nothing failed there
    finally:
        subscription.close()
        await store.aclose()
    names = [event.name for event in events]
    assert names.count("resilient.storage.down") == names.count("resilient.storage.up") == 1
    fallbacks = [e for e in events if e.name == "resilient.storage.fallback"]
    assert len(fallbacks) >= 10  # every admission while down, and the outcomes not sent
    assert {e.attributes["resilient.storage.on_unavailable"] for e in fallbacks} == {mode}
