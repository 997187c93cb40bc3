"""ResilientTransport against a real uvicorn server on loopback: what is retried, what is
not, server signals, and what is left behind."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest
from upstream import Upstream

from resilient import (
    AdaptiveThrottle,
    Backoff,
    Bulkhead,
    Chaos,
    CircuitBreaker,
    CircuitOpenError,
    Hedge,
    RateLimitedError,
    RateLimiter,
    Retry,
    RetryBudget,
    ThrottledError,
    TimeoutExceeded,
)
from resilient.httpx import ResilientTransport
from resilient.testing import FakeClock

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.001, max_delay=0.002)


@pytest.fixture
def anyio_backend() -> str:
    # Each test talks to a real server; the policies beneath are tested on trio elsewhere,
    # and one test below runs the transport on trio.
    return "asyncio"


def client(upstream: Upstream, **kwargs: Any) -> httpx.AsyncClient:
    kwargs.setdefault("retry", Retry(backoff=FAST))
    return httpx.AsyncClient(transport=ResilientTransport(**kwargs), base_url=upstream.url)


def fake_clock_client(upstream: Upstream, clock: FakeClock, **kwargs: Any) -> httpx.AsyncClient:
    """Time moves only through the transport's own sleeps, not while the server answers."""
    kwargs.setdefault("retry", Retry(backoff=FAST, clock=clock))
    kwargs.setdefault("breaker", CircuitBreaker(clock=clock))
    return client(upstream, clock=clock, **kwargs)


# -- construction ----------------------------------------------------------------------------


def test_attempt_timeout_longer_than_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match=r"attempt_timeout must be <= timeout \(5.0\), got 6"):
        ResilientTransport(timeout=5, attempt_timeout=6)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 0),
        ("attempt_timeout", -1),
        ("max_retry_after", float("nan")),
        ("retry", "three"),
        ("breaker", Retry()),
        ("bulkhead", 4),
        ("limiter", CircuitBreaker()),
        ("per_host", "yes"),
        ("max_hosts", 0),
        ("max_hosts", 2.5),
        ("transport", object()),
    ],
)
def test_bad_arguments_name_the_field(field: str, value: object) -> None:
    args: tuple[Any, ...] = (value,) if field == "transport" else ()
    kwargs = {} if field == "transport" else {field: value}
    with pytest.raises(ValueError, match=field):
        ResilientTransport(*args, **kwargs)


@pytest.mark.parametrize("field", ["hedge", "chaos"])
def test_hedge_and_chaos_take_their_policy_or_none(field: str) -> None:
    ResilientTransport(**{field: None})
    with pytest.raises(ValueError, match=f"{field} must be a"):
        ResilientTransport(**{field: Retry()})


def test_timeouts_may_be_switched_off() -> None:
    transport = ResilientTransport(timeout=None, attempt_timeout=None)
    assert (transport.timeout, transport.attempt_timeout) == (None, None)


# -- what is retried ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(upstream: Upstream, path: str, code: int) -> None:
    async with client(upstream) as http:
        response = await http.get(f"{path}?fail=2&code={code}")
    assert (response.status_code, response.text) == (200, "ok 3")
    assert upstream.hits[path] == 3


@pytest.mark.parametrize("code", [400, 401, 404, 409, 501])
async def test_final_statuses_are_returned_at_once(
    upstream: Upstream, path: str, code: int
) -> None:
    async with client(upstream) as http:
        response = await http.get(f"{path}?fail=2&code={code}")
    assert response.status_code == code
    assert upstream.hits[path] == 1


async def test_the_last_response_is_returned_when_attempts_run_out(
    upstream: Upstream, path: str
) -> None:
    async with client(upstream) as http:
        response = await http.get(f"{path}?always=1&code=503")
    assert (response.status_code, response.text) == (503, "failing")
    assert upstream.hits[path] == 3


@pytest.mark.parametrize("mode", ["reset", "cut"])
async def test_a_dropped_connection_is_retried_for_a_get(
    upstream: Upstream, path: str, mode: str
) -> None:
    # "cut" drops the connection halfway through the body: the error is raised while the
    # body is read, inside the attempt, and retried like any other.
    async with client(upstream) as http:
        response = await http.get(f"{path}?fail=2&mode={mode}")
    assert (response.status_code, response.text) == (200, "ok 3")


async def test_an_attempt_that_hangs_times_out_and_is_retried(
    upstream: Upstream, path: str
) -> None:
    async with client(upstream, attempt_timeout=0.2) as http:
        response = await http.get(f"{path}?fail=1&mode=hang&delay=2")
    assert (response.status_code, response.text) == (200, "ok 2")


async def test_a_slow_body_counts_against_the_attempt_timeout(
    upstream: Upstream, path: str
) -> None:
    async with client(upstream, attempt_timeout=0.2) as http:
        response = await http.get(f"{path}?fail=1&mode=slowbody&delay=2")
    assert response.text == "ok 2"


async def test_the_total_timeout_bounds_every_attempt(upstream: Upstream, path: str) -> None:
    async with client(upstream, timeout=0.3, attempt_timeout=0.2) as http:
        with pytest.raises(TimeoutExceeded, match=r"call timed out after 0.3s") as caught:
            await http.get(f"{path}?always=1&mode=hang&delay=2")
    assert caught.value.timeout == 0.3
    assert upstream.hits[path] == 2


async def test_with_a_bulkhead_the_total_timeout_bounds_the_first_attempt_too(
    upstream: Upstream, path: str
) -> None:
    # The bulkhead's queue is outside the attempt timeout: the total bounds the wait there.
    bulkhead = Bulkhead(1, max_waiting=1)
    http = client(upstream, timeout=1.0, attempt_timeout=0.9, bulkhead=bulkhead)
    async with http, anyio.create_task_group() as tg:
        tg.start_soon(http.get, f"{path}?fail=1&mode=hang&delay=0.8")
        await anyio.sleep(0.05)
        started = anyio.current_time()
        with pytest.raises(TimeoutExceeded):
            # Queued behind the first call for about 0.75 s; its own attempt would end
            # 0.9 s later, past the total, which cuts it at 1 s.
            await http.get(f"{path}-b?always=1&mode=hang&delay=2")
        assert anyio.current_time() - started < 1.4


# -- what is not retried -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_post_without_an_idempotency_key_is_sent_once(
    upstream: Upstream, path: str, method: str
) -> None:
    async with client(upstream) as http:
        response = await http.request(method, f"{path}?fail=2", content=b"order")
    assert response.status_code == 503
    assert upstream.hits[path] == 1


async def test_a_post_without_a_key_is_not_retried_after_a_reset(
    upstream: Upstream, path: str
) -> None:
    async with client(upstream) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(f"{path}?fail=2&mode=reset", content=b"order")
    assert upstream.hits[path] == 1


async def test_a_post_with_an_idempotency_key_is_retried(upstream: Upstream, path: str) -> None:
    async with client(upstream) as http:
        response = await http.post(
            f"{path}?fail=2", content=b"order", headers={"Idempotency-Key": "a1"}
        )
    assert response.text == "ok 3"
    assert upstream.app.methods[path] == ["POST"] * 3


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_post_that_never_went_out_is_retried() -> None:
    retry = Retry(backoff=FAST)
    transport = ResilientTransport(retry=retry)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{unused_port()}/", content=b"order")
    assert retry.statistics.attempts == 3


async def test_a_body_that_cannot_be_replayed_is_not_retried(upstream: Upstream, path: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"chunk"

    async with client(upstream) as http:
        response = await http.put(f"{path}?fail=2", content=body())
    assert response.status_code == 503
    assert upstream.hits[path] == 1


async def test_an_open_breaker_rejects_without_sending(upstream: Upstream, path: str) -> None:
    breaker = CircuitBreaker(minimum_calls=2, failure_ratio=0.5, break_duration=60)
    async with client(upstream, breaker=breaker, retry=None) as http:
        for _ in range(2):
            assert (await http.get(f"{path}?always=1")).status_code == 503
        with pytest.raises(CircuitOpenError):
            await http.get(f"{path}?always=1")
        transport = http._transport
        assert isinstance(transport, ResilientTransport)
        assert transport.host(upstream.url).breaker.state == "open"  # type: ignore[union-attr]
    assert upstream.hits[path] == 2


async def test_each_host_has_its_own_breaker_named_after_it(upstream: Upstream, path: str) -> None:
    breaker = CircuitBreaker(minimum_calls=1, break_duration=60)
    transport = ResilientTransport(breaker=breaker, retry=None)
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get(f"{upstream.url}{path}?always=1")
        with pytest.raises(CircuitOpenError):
            await http.get(f"{upstream.url}{path}")
        other = f"http://localhost:{upstream.port}"
        assert (await http.get(f"{other}{path}-b")).status_code == 200
    first, second = transport.host(upstream.url), transport.host(other)
    assert first.breaker is not second.breaker
    assert first.breaker is not None
    assert first.breaker.name == f"127.0.0.1:{upstream.port}"
    assert second.breaker is not None
    assert second.breaker.name == f"localhost:{upstream.port}"
    assert breaker.state == "closed"  # the template itself is never used


async def test_429_does_not_count_against_the_breaker(upstream: Upstream, path: str) -> None:
    breaker = CircuitBreaker(minimum_calls=1)
    async with client(upstream, breaker=breaker, retry=None) as http:
        for _ in range(3):
            assert (await http.get(f"{path}?always=1&code=429")).status_code == 429
        transport = http._transport
        assert isinstance(transport, ResilientTransport)
        metrics = transport.host(upstream.url).breaker.metrics()  # type: ignore[union-attr]
    assert (metrics.calls, metrics.failures) == (3, 0)


async def test_per_host_false_shares_the_given_policies(upstream: Upstream) -> None:
    breaker, bulkhead = CircuitBreaker(), Bulkhead(5)
    limiter = RateLimiter(100)
    transport = ResilientTransport(
        breaker=breaker, bulkhead=bulkhead, limiter=limiter, per_host=False
    )
    one, two = transport.host(upstream.url), transport.host("https://example.com")
    assert one.breaker is two.breaker is breaker
    assert one.bulkhead is bulkhead
    assert one.limiter is limiter


async def test_a_per_host_limiter_rejects_past_its_rate(upstream: Upstream, path: str) -> None:
    async with client(upstream, limiter=RateLimiter(2, per=60)) as http:
        await http.get(path)
        await http.get(path)
        with pytest.raises(RateLimitedError):
            await http.get(path)
    assert upstream.hits[path] == 2


async def test_a_user_predicate_decides_what_is_retried(upstream: Upstream, path: str) -> None:
    retry = Retry(backoff=FAST, on_result=lambda response: response.status_code == 404)
    async with client(upstream, retry=retry) as http:
        assert (await http.get(f"{path}?fail=1&code=404")).text == "ok 2"
        assert (await http.get(f"{path}-b?fail=1&code=503")).status_code == 503


# -- server signals ----------------------------------------------------------------------------


async def test_retry_after_seconds_is_never_undercut(upstream: Upstream, path: str) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock) as http:
        response = await http.get(f"{path}?fail=1&retry_after=7")
    assert response.text == "ok 2"
    assert clock.now() >= 7.0


async def test_retry_after_as_an_http_date_is_honoured(upstream: Upstream, path: str) -> None:
    clock = FakeClock(autojump=False)
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=9), usegmt=True)
    async with fake_clock_client(upstream, clock) as http:
        response = await http.get(path, params={"fail": 1, "retry_after": when})
    assert response.text == "ok 2"
    assert 7.0 <= clock.now() <= 10.0


@pytest.mark.parametrize("value", ["soon", "-5", "1e3", "", "99999999999999999999999999"])
async def test_a_malformed_retry_after_is_ignored(
    upstream: Upstream, path: str, value: str
) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock, max_retry_after=60) as http:
        response = await http.get(path, params={"fail": 1, "retry_after": value})
    if value.startswith("9999"):  # a number, but past max_retry_after: no retry
        assert (response.status_code, upstream.hits[path]) == (503, 1)
    else:
        assert response.text == "ok 2"
        assert clock.now() < 1.0  # the backoff's own delay


async def test_a_retry_after_past_the_cap_returns_the_response_at_once(
    upstream: Upstream, path: str
) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock, max_retry_after=10, timeout=None) as http:
        response = await http.get(f"{path}?fail=1&retry_after=3600")
    assert (response.status_code, upstream.hits[path], clock.now()) == (503, 1, 0.0)


async def test_a_retry_after_past_the_deadline_returns_the_response_at_once(
    upstream: Upstream, path: str
) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock, timeout=10, attempt_timeout=5) as http:
        response = await http.get(f"{path}?fail=1&retry_after=20")
    assert (response.status_code, upstream.hits[path], clock.now()) == (503, 1, 0.0)


async def test_a_429_with_retry_after_pauses_every_call_to_the_host(
    upstream: Upstream, path: str
) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock, retry=None) as http:
        assert (await http.get(f"{path}?always=1&code=429&retry_after=5")).status_code == 429
        assert clock.now() == 0.0
        assert (await http.get(f"{path}-other")).status_code == 200
        assert clock.now() == 5.0
        # Another host is not paused.
        await http.get(f"http://localhost:{upstream.port}{path}")
        assert clock.now() == 5.0


async def test_a_pause_past_the_deadline_fails_at_once(upstream: Upstream, path: str) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock, retry=None, timeout=3, attempt_timeout=1) as http:
        await http.get(f"{path}?always=1&code=503&retry_after=5")
        with pytest.raises(RateLimitedError) as caught:
            await http.get(f"{path}-other")
    assert caught.value.retry_after == pytest.approx(5.0)
    assert upstream.hits[f"{path}-other"] == 0


async def test_ratelimit_with_no_quota_left_pauses_the_host(upstream: Upstream, path: str) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock) as http:
        response = await http.get(path, params={"ok_ratelimit": '"default";r=0;t=4'})
        assert response.status_code == 200
        await http.get(f"{path}-next")
    assert clock.now() == 4.0


async def test_ratelimit_sent_on_several_lines_is_read_as_one_list(
    upstream: Upstream, path: str
) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock) as http:
        await http.get(path, params={"ok_ratelimit": ['"burst";r=5;t=1', '"day";r=0;t=9']})
        await http.get(f"{path}-next")
    assert clock.now() == 9.0


async def test_ratelimit_sets_the_least_delay_of_a_429(upstream: Upstream, path: str) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock) as http:
        response = await http.get(
            path, params={"fail": 1, "code": 429, "ratelimit": '"burst";r=0;t=6, "day";r=9'}
        )
    assert response.text == "ok 2"
    assert clock.now() >= 6.0


async def test_ratelimit_past_the_deadline_raises_rate_limited(
    upstream: Upstream, path: str
) -> None:
    clock = FakeClock(autojump=False)
    async with fake_clock_client(upstream, clock, timeout=2, attempt_timeout=1) as http:
        await http.get(path, params={"ok_ratelimit": '"default";r=0;t=30'})
        with pytest.raises(RateLimitedError):
            await http.get(path)
    assert upstream.hits[path] == 1


# -- what is left behind -----------------------------------------------------------------------


async def test_a_total_outage_is_not_amplified_past_the_budget(
    upstream: Upstream, path: str
) -> None:
    budget = RetryBudget()
    retry = Retry(backoff=FAST, budget=budget)
    calls = 200
    http = client(upstream, retry=retry, breaker=None)
    async with http, anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(http.get, f"{path}?always=1")
    # Every call went out once; retries are what the budget allowed over its window.
    allowance = budget.ratio * calls + budget.min_per_second * budget.window
    assert calls < upstream.hits[path] <= calls + allowance
    assert retry.statistics.budget_exhausted > 0


async def test_the_default_breaker_cuts_an_outage_further(upstream: Upstream, path: str) -> None:
    calls = 200
    async with client(upstream) as http:
        for _ in range(calls):
            try:
                await http.get(f"{path}?always=1")
            except CircuitOpenError:
                pass
    # 20 calls (the breaker's minimum) with their retries, then nothing until the break ends.
    assert upstream.hits[path] <= 20 * 3


def pool_of(http: httpx.AsyncClient) -> Any:
    transport = http._transport
    assert isinstance(transport, ResilientTransport)
    inner = transport._transport
    assert isinstance(inner, httpx.AsyncHTTPTransport)
    return inner._pool


async def test_no_connection_leaks_after_a_thousand_retried_requests(
    upstream: Upstream, path: str
) -> None:
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=10))
    transport = ResilientTransport(inner, retry=Retry(backoff=FAST, budget=None), breaker=None)
    requests = 1000
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        limit = anyio.Semaphore(20)

        async def one(i: int) -> None:
            async with limit:
                if i % 2:
                    response = await http.get(f"{path}-{i}?fail=1")
                else:  # half of them streamed: the retried response is closed unread
                    async with http.stream(
                        "GET", f"{path}-{i}?fail=1", extensions={"resilient.stream": True}
                    ) as response:
                        await response.aread()
                assert response.text == "ok 2"

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(requests):
                    tg.start_soon(one, i)
        pool = pool_of(http)
        assert len(pool.connections) <= 10
        assert all(connection.is_idle() for connection in pool.connections)
        assert not pool._requests
    assert sum(upstream.hits[f"{path}-{i}"] for i in range(requests)) == 2 * requests


async def test_cancelling_a_call_while_its_retry_sleeps_leaves_nothing(
    upstream: Upstream, path: str
) -> None:
    retry = Retry(backoff=FAST)
    breaker = CircuitBreaker(half_open_calls=1)
    async with client(upstream, retry=retry, breaker=breaker, bulkhead=Bulkhead(1)) as http:
        with anyio.move_on_after(0.3) as scope:
            await http.get(f"{path}?fail=1&retry_after=5")
        assert scope.cancelled_caught
        assert upstream.hits[path] == 1
        assert retry.statistics.cancelled == 1
        transport = http._transport
        assert isinstance(transport, ResilientTransport)
        assert transport.host(upstream.url).bulkhead.in_flight == 0  # type: ignore[union-attr]
        assert all(connection.is_idle() for connection in pool_of(http).connections)
    # The budget was refunded: the retry never ran.
    assert retry.statistics.retries == 0


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_transport_runs_on_trio(upstream: Upstream, path: str) -> None:
    async with client(upstream) as http:
        response = await http.get(f"{path}?fail=1&mode=reset")
    assert response.text == "ok 2"


# -- the extra ---------------------------------------------------------------------------------


def run_without(module: str, code: str) -> str:
    script = f"import sys; sys.modules[{module!r}] = None\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    return done.stdout + done.stderr


def test_without_httpx_the_import_names_the_extra() -> None:
    out = run_without("httpx", "import resilient.httpx")
    assert (
        "ImportError: resilient.httpx needs httpx: pip install 'resilient-patterns[httpx]'" in out
    )


def test_resilient_imports_without_httpx() -> None:
    assert run_without("httpx", "import resilient; print('ok')").strip() == "ok"


def test_without_http_sf_reading_ratelimit_names_the_extra() -> None:
    code = "from resilient._ratelimit_fields import parse_ratelimit\nparse_ratelimit('x')"
    assert "pip install 'resilient-patterns[httpx]'" in run_without("http_sf", code)


async def test_attempts_that_all_time_out_raise_the_attempt_timeout_not_the_total(
    upstream: Upstream, path: str
) -> None:
    retry = Retry(attempts=2, backoff=FAST)
    async with client(upstream, retry=retry, attempt_timeout=0.1, timeout=30) as http:
        with pytest.raises(TimeoutExceeded) as caught:
            await http.get(f"{path}?always=1&mode=hang&delay=1")
    assert caught.value.timeout == 0.1
    assert upstream.hits[path] == 2


# -- hedging and fault injection ---------------------------------------------------------------


async def test_a_slow_get_is_hedged_and_the_first_answer_wins(
    upstream: Upstream, path: str
) -> None:
    transport = ResilientTransport(hedge=Hedge(0.05))
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        started = anyio.current_time()
        response = await http.get(f"{path}?fail=1&mode=hang&delay=3")
        elapsed = anyio.current_time() - started
    assert response.text == "ok 2"  # the hedge's answer; the primary was cancelled
    assert elapsed < 2.0
    # Two copies went out, admitted by the host's breaker as one attempt.
    breaker = transport.host(upstream.url).breaker
    assert breaker is not None
    assert breaker.metrics().calls == 1


async def test_a_quick_answer_sends_no_hedge(upstream: Upstream, path: str) -> None:
    async with client(upstream, hedge=Hedge(0.5)) as http:
        response = await http.get(path)
    assert (response.text, upstream.hits[path]) == ("ok 1", 1)


async def test_a_hedge_that_loses_is_cancelled_when_the_primary_answers(
    upstream: Upstream, path: str
) -> None:
    # Both copies take 0.2 s: the primary, sent 0.05 s before the hedge, answers first.
    hedge = Hedge(0.05)
    async with client(upstream, hedge=hedge) as http:
        tasks = asyncio.all_tasks()
        response = await http.get(f"{path}?fail=2&mode=hang&delay=0.2")
        assert response.text == "late"
        assert upstream.hits[path] == 2
        await asyncio.sleep(0)
        assert asyncio.all_tasks() - tasks == set()  # the losing copy is not left running


async def test_a_hedge_the_budget_refuses_is_never_sent(upstream: Upstream, path: str) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.0)
    async with client(upstream, retry=None, hedge=Hedge(0.05, budget=budget)) as http:
        response = await http.get(f"{path}?fail=1&mode=hang&delay=0.3")
    assert (response.text, upstream.hits[path]) == ("late", 1)


async def test_cancelling_a_hedged_call_leaves_no_copy_running(
    upstream: Upstream, path: str
) -> None:
    async with client(upstream, hedge=Hedge(0.05), attempt_timeout=5) as http:
        tasks = asyncio.all_tasks()
        with anyio.move_on_after(0.3):
            await http.get(f"{path}?always=1&mode=hang&delay=3")
        await asyncio.sleep(0)
        assert asyncio.all_tasks() - tasks == set()
    assert upstream.hits[path] == 2  # the primary and one hedge went out, both cancelled


async def test_one_hedge_shared_by_many_concurrent_calls(upstream: Upstream, path: str) -> None:
    # 60 calls at once through one transport and one Hedge (within httpx's pool of 100
    # connections): every 10th call's first request hangs, and its hedge answers instead.
    hedge = Hedge(0.1, budget=None)
    async with client(upstream, hedge=hedge, attempt_timeout=5) as http:

        async def get(i: int) -> str:
            mode = "&mode=hang&delay=2&fail=1" if i % 10 == 0 else ""
            response = await http.get(f"{path}/{i}?x=1{mode}")
            return response.text

        started = anyio.current_time()
        texts = await asyncio.gather(*(get(i) for i in range(60)))
        elapsed = anyio.current_time() - started
    assert all(text.startswith("ok") for text in texts)
    assert elapsed < 2.0  # no call waited for a hanging copy
    # Each hanging primary was hedged; a busy machine may hedge a few quick ones too, but
    # never more than once each.
    assert all(upstream.hits[f"{path}/{i}"] == 2 for i in range(0, 60, 10))
    assert all(upstream.hits[f"{path}/{i}"] <= 2 for i in range(60))


async def test_a_post_without_a_key_is_never_hedged(upstream: Upstream, path: str) -> None:
    async with client(upstream, hedge=Hedge(0.05), attempt_timeout=5) as http:
        response = await http.post(f"{path}?fail=1&mode=hang&delay=0.3", content=b"order")
    assert (response.text, upstream.hits[path]) == ("late", 1)


async def test_chaos_injects_a_response_that_goes_through_the_whole_stack(
    upstream: Upstream, path: str
) -> None:
    retry = Retry(backoff=FAST)
    chaos = Chaos(result=httpx.Response(503, headers={"x-chaos": "1"}), rate=1.0)
    async with client(upstream, retry=retry, chaos=chaos) as http:
        first = await http.get(path)
        second = await http.get(path)
    assert (first.status_code, first.headers["x-chaos"]) == (503, "1")
    assert second.status_code == 503
    assert first is not second
    assert retry.statistics.attempts == 6  # each injected 503 was retried
    assert upstream.hits[path] == 0


async def test_chaos_injects_a_fault_that_is_classified_like_a_real_one(
    upstream: Upstream, path: str
) -> None:
    injected = iter([True, False])
    chaos = Chaos(
        fault=lambda: httpx.ConnectError("injected"),
        rate=1.0,
        enabled=lambda: next(injected, False),
    )
    async with client(upstream, chaos=chaos) as http:
        # The injected connect error means the POST never left: it is retried.
        response = await http.post(path, content=b"order")
    assert (response.text, upstream.hits[path]) == ("ok 1", 1)


# -- adaptive throttling per host ----------------------------------------------------------------


async def test_a_host_that_refuses_most_attempts_is_throttled_before_they_go_out(
    upstream: Upstream, path: str
) -> None:
    # The upstream answers 503 to every request; the throttle (k=2) lets through about
    # what it could accept at twice its acceptance, here none, down to 1 - max_reject.
    throttle = AdaptiveThrottle(min_requests=10, max_reject=0.8, rng=random.Random(3))
    transport = ResilientTransport(retry=None, breaker=None, throttle=throttle)
    outcomes: Counter[str] = Counter()
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as http:
        for _ in range(200):
            try:
                response = await http.get(f"{path}?always=1&code=503")
                outcomes[str(response.status_code)] += 1
            except ThrottledError:
                outcomes["throttled"] += 1
    sent = upstream.hits[path]
    assert outcomes["503"] == sent
    assert outcomes["throttled"] == 200 - sent
    # The SRE formula: (requests - 2 * accepts) / (requests + 1), capped at 0.8.
    assert 0.15 * 200 < sent < 0.4 * 200
    host = transport.host(upstream.url)
    assert host.throttle is not None
    assert host.throttle is not throttle
    assert host.throttle.name == host.name


async def test_a_throttle_counts_answers_as_accepted_and_never_throttles_a_healthy_host(
    upstream: Upstream, path: str
) -> None:
    throttle = AdaptiveThrottle(min_requests=5)
    async with client(upstream, throttle=throttle) as http:
        statuses = [(await http.get(f"{path}?always=1&code=404")).status_code for _ in range(50)]
    assert statuses == [404] * 50
    assert upstream.hits[path] == 50


def test_a_throttle_must_be_an_adaptive_throttle() -> None:
    with pytest.raises(ValueError, match="throttle must be a AdaptiveThrottle"):
        ResilientTransport(throttle=0.5)  # type: ignore[arg-type]


# -- the host table ----------------------------------------------------------------------------


def test_the_host_table_forgets_the_least_recently_called_host_at_rest() -> None:
    clock = FakeClock()
    transport = ResilientTransport(max_hosts=3, clock=clock)
    assert ResilientTransport().max_hosts == 1024
    a, b, c = (transport.host(f"https://{name}.example") for name in "abc")
    transport.host("https://d.example")  # full: the least recently created, a, goes
    assert set(transport._hosts.values()) == {b, c, transport.host("https://d.example")}
    assert transport.host("https://a.example") is not a  # called again: a fresh start


def test_a_breaking_or_cooling_host_is_not_forgotten() -> None:
    clock = FakeClock()
    transport = ResilientTransport(max_hosts=2, clock=clock)
    broken = transport.host("https://broken.example")
    assert broken.breaker is not None
    broken.breaker.force_open()
    cooling = transport.host("https://cooling.example")
    cooling.paused_until = clock.now() + 30.0
    fresh = transport.host("https://fresh.example")  # nothing at rest to forget: grows
    assert {broken, cooling, fresh} <= set(transport._hosts.values())
    clock.advance(31.0)  # the cooldown is over: cooling is at rest now
    transport.host("https://later.example")
    assert cooling not in transport._hosts.values()
    assert broken in transport._hosts.values()


async def test_calls_keep_their_host_recent_and_stay_bounded(upstream: Upstream, path: str) -> None:
    # Two names for the loopback upstream: two hosts, on a table of two.
    transport = ResilientTransport(max_hosts=2, retry=Retry(backoff=FAST))
    port = upstream.port
    async with httpx.AsyncClient(transport=transport) as http:
        for name in ("127.0.0.1", "localhost", "127.0.0.1"):
            response = await http.get(f"http://{name}:{port}{path}")
            assert response.status_code == 200
        recent = transport.host(f"http://127.0.0.1:{port}")
        transport.host("https://third.example")  # full: localhost was called least recently
        assert set(transport._hosts.values()) == {recent, transport.host("https://third.example")}
        assert (await http.get(f"http://localhost:{port}{path}")).status_code == 200
        assert len(transport._hosts) == 2
    assert upstream.hits[path] == 4
