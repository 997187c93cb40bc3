"""ResilientTransport: the standard resilience stack around any httpx transport."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from itertools import islice
from types import EllipsisType, TracebackType
from typing import Any, Final

import httpx

from resilient._clock import Clock
from resilient._deadline import time_left
from resilient._policy import Policy
from resilient._ratelimit_fields import parse_ratelimit, parse_retry_after, seconds_until_quota
from resilient._validate import (
    check_bool,
    check_clock,
    check_optional_positive,
    check_positive,
    check_positive_int,
    short_repr,
)
from resilient.bulkhead import Bulkhead
from resilient.chaos import Chaos
from resilient.circuit_breaker import CircuitBreaker
from resilient.exceptions import RateLimitedError, TimeoutExceeded
from resilient.hedge import Hedge
from resilient.hedge._hedge import hedge_attempt
from resilient.httpx._classify import (
    is_breaker_failure,
    is_breaker_failure_response,
    is_never_sent,
    is_refusal_response,
    is_transient_error,
    is_transient_response,
    may_resend,
)
from resilient.rate_limit import RateLimiter
from resilient.retry import Retry
from resilient.retry._retry import ATTEMPT_STARTED, ATTR_ATTEMPT, SPAN_ATTEMPT, _Call
from resilient.telemetry import _otel
from resilient.telemetry._core import QUIET, CallRecord
from resilient.telemetry._spec import ATTR_ERROR_TYPE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT
from resilient.throttle import AdaptiveThrottle
from resilient.timeout import Timeout

__all__ = ("STREAM", "Host", "ResilientTransport")

#: The request extension that asks for the response body unread (`client.stream(...,
#: extensions={STREAM: True})`): see `ResilientTransport`.
STREAM: Final = "resilient.stream"

#: Statuses whose `Retry-After` pauses every call to the host (a shared cooldown).
_COOLDOWN_STATUSES: Final = frozenset({429, 503})

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

#: How many of the least recently called hosts a full host table looks at to forget one.
_FORGET_SCAN: Final = 8

# OpenTelemetry HTTP semantic conventions (stable).
_METHOD: Final = "http.request.method"
_URL: Final = "url.full"
_RESEND_COUNT: Final = "http.request.resend_count"
_STATUS_CODE: Final = "http.response.status_code"

_Send = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


class _Sent:
    """How many requests a traced call has sent (each one's `http.request.resend_count`),
    and what its hedged copies report: the attempt's record and attributes."""

    __slots__ = ("attributes", "count", "record")

    def __init__(self, record: CallRecord) -> None:
        self.record = record
        self.count = 0
        self.attributes: dict[str, Any] = {}


#: The traced call whose attempt is being hedged: each copy opens its own CLIENT span.
_hedging: ContextVar[_Sent | None] = ContextVar("resilient_httpx_hedging", default=None)


def _chain(policies: tuple[Policy, ...], fn: Callable[..., Awaitable[Any]]) -> Any:
    """`fn` under `policies`, the first outermost: each binds the one inside it, once."""
    target: Any = fn
    for policy in reversed(policies):
        target = policy._bind(target)
    return target


async def _traced_send(
    send: _Send,
    request: httpx.Request,
    sent: _Sent,
    attributes: dict[str, Any],
    *,
    nested: bool,
) -> httpx.Response:
    """`send(request)` as one CLIENT span, the trace context in the request's headers."""
    if sent.count:
        attributes = {**attributes, _RESEND_COUNT: sent.count}
    sent.count += 1
    record = sent.record
    span, token = record.child(SPAN_ATTEMPT, attributes, client=True, nested=nested)
    if span is not None:
        _otel.inject(request.headers)
    try:
        response = await send(request)
    except Exception as error:
        record.end_child(span, token, error)
        raise
    except BaseException:
        record.end_child(span, token, None)
        raise
    if span is not None:
        status = response.status_code
        span.set_attribute(_STATUS_CODE, status)
        if status >= 400:
            span.set_attribute(ATTR_ERROR_TYPE, str(status))
    record.end_child(span, token, None)
    return response


class Host:
    """One upstream (scheme, host, port) of a `ResilientTransport`: its own copies of the
    per-host policies, and its cooldown. Get it with `transport.host(url)`.

    Attributes:
        name: the host's name: `api.example.com`, or `api.example.com:8443` on a port that
            is not its scheme's default. Each copy of a template is named after it.
        limiter: this host's `RateLimiter`, or None.
        breaker: this host's `CircuitBreaker`, or None.
        throttle: this host's `AdaptiveThrottle`, or None.
        bulkhead: this host's `Bulkhead`, or None.
        paused_until: the clock reading until which calls to this host wait, because it
            sent `Retry-After` with a 429 or 503, or `RateLimit` with no quota left
            (`-inf` when it never did).

    Examples:
        ```python
        host = transport.host("https://api.example.com")
        print(host.name, host.breaker.state)
        ```
    """

    __slots__ = (
        "attempt",
        "breaker",
        "bulkhead",
        "call",
        "hedged",
        "limiter",
        "name",
        "paused_until",
        "throttle",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.limiter: RateLimiter | None = None
        self.breaker: CircuitBreaker | None = None
        self.throttle: AdaptiveThrottle | None = None
        self.bulkhead: Bulkhead | None = None
        #: The clock reading until which calls to this host wait (a shared cooldown).
        self.paused_until = float("-inf")
        self.attempt: _Send
        self.hedged: _Send | None = None
        self.call: Callable[[httpx.Request, Host], Coroutine[Any, Any, httpx.Response]]


def _check_policy(field: str, value: object, kind: type[Policy]) -> Any:
    if value is None or isinstance(value, kind):
        return value
    raise ValueError(
        f"{field} must be a {kind.__name__}, None (off) or left to its default, "
        f"got {short_repr(value)}"
    )


class ResilientTransport(httpx.AsyncBaseTransport):
    """An httpx transport that retries safely, honours `Retry-After`, and breaks per host.

    `httpx.AsyncClient(transport=ResilientTransport())` runs every request through this
    stack, outermost first:

    1. a per-host `RateLimiter` (`limiter`, off unless given);
    2. a total `Timeout` of `timeout` seconds (30 s) over every attempt and wait;
    3. a `Retry` (`retry`: 3 attempts in all, 0.1 s backoff doubling, full jitter, a retry
       budget of 20 % of calls plus 10/s);
    4. a per-host `CircuitBreaker` (`breaker`: 50 % failures over 30 s, at least 20 calls,
       a 5 s break doubling to 60 s);
    5. a per-host `Bulkhead` (`bulkhead`, off unless given);
    6. a per-host `AdaptiveThrottle` (`throttle`, off unless given);
    7. an attempt `Timeout` of `attempt_timeout` seconds (10 s) for each attempt, body
       included.

    A `hedge` runs around each attempt, inside the breaker and the bulkhead (an attempt
    is admitted once however many copies go out; each copy has its own attempt
    timeout), a `chaos` policy at the wire, inside the attempt timeout; both are off
    unless given.

    Args:
        transport: the transport that sends the requests (default: a new
            `httpx.AsyncHTTPTransport()`).
        retry: a `Retry`, or None for a single attempt. With its default `on` (`Exception`)
            and `on_result` (None), the transport retries its transient outcomes: 408,
            429, 500, 502, 503 and 504 responses, connect, read and write errors and
            timeouts, and attempt timeouts. A `Retry` given with its own `on` or
            `on_result` decides instead (a predicate over the exception or the response).
        breaker: a `CircuitBreaker` template, or None (off). Each host gets its own copy,
            named after the host. A template left with the default `on` and `on_result`
            counts 500, 502, 503, 504, transport errors and attempt timeouts as failures
            (not 429, nor 4xx). An open breaker raises `CircuitOpenError`: the request did
            not go out.
        timeout: the total time for a call, in seconds, or None (off). Default 30.0.
        attempt_timeout: the time for each attempt, in seconds, or None (off); at most
            `timeout`. Default 10.0.
        bulkhead: a `Bulkhead` template (a copy per host), or None (off, the default).
        limiter: a `RateLimiter` template (a copy per host), or None (off, the default).
        throttle: an `AdaptiveThrottle` template (a copy per host), or None (off, the
            default): client-side throttling (Google SRE's "Handling Overload"). Once a
            host turns many attempts away, a share of the next ones fail at once with
            `ThrottledError` without going out, in proportion to how many it refuses. A
            template left with the default `on_result` counts 429 and 503 responses as
            refusals (`is_refusal_response`); with the default `on`, errors count as
            answers, not refusals. It sits inside the breaker and the bulkhead, so their
            own rejections never count against the host.
        hedge: a `Hedge`, or None (off, the default): while an attempt is slower than its
            delay, another copy of the request goes out, and the first acceptable answer
            wins. Only requests that are safe to send twice are hedged (the rules of safe
            retries below), and never one that asked for its body unread. One policy for
            every host: give each host its own transport (see the docs) to hedge at each
            host's own latency.
        chaos: a `Chaos`, or None (off, the default): fault injection at the wire, inside
            the attempt timeout, so that what it injects goes through the whole stack. It
            may inject an exception (`httpx.ConnectError(...)`), latency, or a response
            (`httpx.Response(503)`, copied afresh for each call it is injected into).
        per_host: True (default) gives each (scheme, host, port) its own copy of the
            `breaker`, `bulkhead` and `limiter` templates; False shares the objects given
            between every host.
        max_hosts: how many hosts the transport keeps policies and cooldowns for
            (default 1024). Past it, adding a host forgets the least recently called one
            at rest (its breaker closed and no cooldown running), so that a client
            calling ever new hosts (webhooks, a crawler) holds a bounded table; a host
            forgotten and called again starts afresh. Raise it for a client that calls
            more hosts than that in turn.
        max_retry_after: the longest wait a `Retry-After` or `RateLimit` field may impose,
            in seconds (default 60.0). A server asking for more gets its response
            returned at once, and its host is paused for `max_retry_after`.
        clock: the time source of the default policies and of cooldowns (default: the
            monotonic clock).

    Raises:
        ValueError: an argument is out of range or of the wrong kind (naming the field
            and the value), or `attempt_timeout` exceeds `timeout`.

    **Safe retries.** GET, HEAD, OPTIONS, PUT, DELETE and TRACE are retried; POST and
    PATCH only with an `Idempotency-Key` header, or when the request provably never went
    out (the connection could not be made). A body from an iterator, which cannot be sent
    twice, is never retried. A response that is retried is closed first, its connection
    back in the pool. When retrying stops on a status, the last response is returned.

    **Bodies.** Each attempt reads the whole response body before the transport hands the
    response over, so that an error while reading it is retried like any other and
    `attempt_timeout` bounds it. For a download too large for memory, ask for the body
    unread with the request extension `resilient.stream`:
    `client.stream("GET", url, extensions={"resilient.stream": True})`; such a response
    is still retried on a transient status, but never once it is handed over.

    **Server signals.** `Retry-After` (seconds or an HTTP-date) and the `RateLimit` field
    (draft-ietf-httpapi-ratelimit-headers) set the least delay before the next attempt:
    never earlier than the server said. When the wait does not fit before the deadline,
    the last response is returned at once. A 429 or 503 with `Retry-After`, and any
    response whose `RateLimit` says no quota remains (`r=0`) for `t` seconds, pause every
    call to that host until then; a call that cannot wait that long within its deadline
    fails at once with `RateLimitedError`.

    **Telemetry.** The logical call is the `Retry`'s INTERNAL span; each attempt is its
    `resilient.retry.attempt` child, a CLIENT span, with `http.request.method`,
    `server.address`, `server.port`, `url.full`, `http.response.status_code`,
    `error.type` and, from the second request on, `http.request.resend_count`. A hedged
    attempt's copies are each such a CLIENT span, under the hedge's span. The trace
    context is sent in the request headers, and HTTP client instrumentations
    (opentelemetry-instrumentation-httpx) are suppressed inside an attempt span, so a
    request is traced once.

    Examples:
        ```python
        import httpx
        from resilient import CircuitBreaker
        from resilient.httpx import ResilientTransport

        transport = ResilientTransport(
            breaker=CircuitBreaker(failure_ratio=0.3, break_duration=10),
            attempt_timeout=2.0,
        )
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get("https://api.example.com/users/42")
        ```
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        retry: Retry | EllipsisType | None = ...,
        breaker: CircuitBreaker | EllipsisType | None = ...,
        timeout: float | None = 30.0,
        attempt_timeout: float | None = 10.0,
        bulkhead: Bulkhead | None = None,
        limiter: RateLimiter | None = None,
        throttle: AdaptiveThrottle | None = None,
        hedge: Hedge | None = None,
        chaos: Chaos | None = None,
        per_host: bool = True,
        max_hosts: int = 1024,
        max_retry_after: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        if transport is None:
            transport = httpx.AsyncHTTPTransport()
        elif not isinstance(transport, httpx.AsyncBaseTransport):
            raise ValueError(
                "transport must be an httpx.AsyncBaseTransport or None, "
                f"got {short_repr(transport)}"
            )
        self._transport = transport
        self._clock = check_clock(clock)
        self._now = self._clock.now
        self.timeout = check_optional_positive("timeout", timeout)
        self.attempt_timeout = check_optional_positive("attempt_timeout", attempt_timeout)
        if (
            self.timeout is not None
            and self.attempt_timeout is not None
            and self.attempt_timeout > self.timeout
        ):
            raise ValueError(
                f"attempt_timeout must be <= timeout ({self.timeout!r}), "
                f"got {short_repr(attempt_timeout)}"
            )
        self.max_retry_after = check_positive("max_retry_after", max_retry_after)
        self.hedge: Hedge | None = _check_policy("hedge", hedge, Hedge)
        self.chaos: Chaos | None = _check_policy("chaos", chaos, Chaos)
        self.per_host = check_bool("per_host", per_host)
        self.max_hosts = check_positive_int("max_hosts", max_hosts)

        if retry is ...:
            retry = Retry(name="httpx", clock=self._clock)
        self.retry: Retry | None = _check_policy("retry", retry, Retry)
        if breaker is ...:
            breaker = CircuitBreaker(clock=self._clock)
        self.breaker: CircuitBreaker | None = _check_policy("breaker", breaker, CircuitBreaker)
        self.bulkhead: Bulkhead | None = _check_policy("bulkhead", bulkhead, Bulkhead)
        self.limiter: RateLimiter | None = _check_policy("limiter", limiter, RateLimiter)
        self.throttle: AdaptiveThrottle | None = _check_policy(
            "throttle", throttle, AdaptiveThrottle
        )

        retry_ = self.retry
        self._retry_error: Callable[[Exception], bool] = is_transient_error
        self._retry_response: Callable[[httpx.Response], bool] = is_transient_response
        if retry_ is not None:
            if retry_.on is not Exception:
                self._retry_error = retry_._should_retry
            if retry_.on_result is not None:
                self._retry_response = retry_.on_result
        self._total = None if self.timeout is None else Timeout(self.timeout, clock=self._clock)
        self._per_attempt = (
            None
            if self.attempt_timeout is None
            else Timeout(self.attempt_timeout, name="httpx.attempt", clock=self._clock)
        )
        # The first attempt of a call is already bounded by the attempt timeout, which is
        # at most the total: the total deadline is published only once a call needs more
        # than one attempt (or waits for a cooldown), which spares every call that
        # succeeds at once a second timeout. A bulkhead may queue the first attempt
        # outside its attempt timeout, so with one the total bounds the call from the start.
        self._lazy_total = (
            self.timeout is not None
            and self.attempt_timeout is not None
            and self.bulkhead is None
            and self.retry is not None
        )
        # The hosts, least recently called first.
        self._hosts: OrderedDict[tuple[bytes, bytes, int | None], Host] = OrderedDict()
        self._shared: Host | None = None

    def __repr__(self) -> str:
        return (
            f"ResilientTransport({self._transport!r}, retry={self.retry!r}, "
            f"breaker={self.breaker!r}, timeout={self.timeout!r}, "
            f"attempt_timeout={self.attempt_timeout!r}, bulkhead={self.bulkhead!r}, "
            f"limiter={self.limiter!r}, throttle={self.throttle!r}, per_host={self.per_host!r})"
        )

    # -- the hosts -------------------------------------------------------------------------

    def host(self, url: httpx.URL | str) -> Host:
        """The policies and cooldown of the host `url` names (created on first use).

        Examples:
            ```python
            transport.host("https://api.example.com").breaker.state
            ```
        """
        url = httpx.URL(url) if isinstance(url, str) else url
        key = (url.raw_scheme, url.raw_host, url.port)
        hosts = self._hosts
        host = hosts.get(key)
        if host is None:
            if len(hosts) >= self.max_hosts:
                self._forget_a_host()
            host = hosts[key] = self._new_host(url)
        return host

    def _forget_a_host(self) -> None:
        """Drop the least recently called host at rest, among the oldest few: the table
        stays bounded without a scan (when all of those are busy breaking or cooling
        down, it grows by one instead)."""
        now = self._now()
        for key, host in islice(self._hosts.items(), _FORGET_SCAN):
            breaker = host.breaker
            if host.paused_until > now or (breaker is not None and breaker.state != "closed"):
                continue
            del self._hosts[key]
            return

    def _new_host(self, url: httpx.URL) -> Host:
        port = url.port
        name = (
            url.host
            if port is None or port == _DEFAULT_PORTS.get(url.scheme)
            else (f"{url.host}:{port}")
        )
        host = Host(name)
        if self.per_host:
            host.limiter = None if self.limiter is None else self.limiter._replicate(name)
            host.bulkhead = None if self.bulkhead is None else self.bulkhead._replicate(name)
            breaker = self.breaker
            if breaker is not None:
                overrides: dict[str, Any] = {}
                if breaker._given.get("on", Exception) is Exception:
                    overrides["on"] = is_breaker_failure
                if breaker._given.get("on_result") is None:
                    overrides["on_result"] = is_breaker_failure_response
                host.breaker = breaker._replicate(name, **overrides)
            throttle = self.throttle
            if throttle is not None:
                refusals: dict[str, Any] = {}
                if throttle._given.get("on_result") is None:
                    refusals["on_result"] = is_refusal_response
                host.throttle = throttle._replicate(name, **refusals)
        else:
            shared = self._shared
            if shared is None:
                shared = self._shared = Host("*")
                shared.limiter, shared.bulkhead = self.limiter, self.bulkhead
                shared.breaker, shared.throttle = self.breaker, self.throttle
            host.limiter, host.bulkhead, host.breaker, host.throttle = (
                shared.limiter,
                shared.bulkhead,
                shared.breaker,
                shared.throttle,
            )
        send = self._send if self.chaos is None else self._chaos_send()
        wire = send if self._per_attempt is None else _chain((self._per_attempt,), send)
        admission = tuple(p for p in (host.breaker, host.bulkhead, host.throttle) if p)
        host.attempt = _chain(admission, wire)
        # The hedge sits inside the breaker and the bulkhead: an attempt is admitted once
        # (a half-open breaker's one probe, one bulkhead slot) however many copies of it
        # go out, and each copy has its own attempt timeout.
        hedge = self.hedge
        host.hedged = (
            None if hedge is None else _chain((*admission, hedge), self._copy_traced(wire))
        )
        total = None if self._lazy_total else self._total
        outer = tuple(p for p in (host.limiter, total) if p)
        host.call = _chain(outer, self._call)
        return host

    # -- a call ------------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the stack; the response, or the last one when retrying
        stopped on a status."""
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        hosts = self._hosts
        host = hosts.get(key)
        if host is None:
            host = self.host(url)
        elif len(hosts) > 1:
            hosts.move_to_end(key)  # the most recently called last
        return await host.call(request, host)

    async def _call(self, request: httpx.Request, host: Host) -> httpx.Response:
        retry = self.retry
        if retry is None:
            response = await self._attempt(request, host, 1, None)
            self._observe(response, host)
            return response
        record = retry._telemetry.start()
        sent = None if record is None else _Sent(record)
        call = retry._start_call(record or QUIET)
        if not self._lazy_total:
            return await self._retrying(request, host, retry, call, sent, None)
        first: httpx.Response | Exception | None = None
        if host.paused_until <= call.started:
            try:
                response = await self._attempt(request, host, 1, sent)
            except Exception as error:
                first = error
            except BaseException:
                retry._finish(call, "cancelled")
                raise
            else:
                try:
                    self._observe(response, host)
                    transient = self._retry_response(response)
                except BaseException as raised:
                    await response.aclose()
                    retry._finish(call, "failure", raised)
                    raise
                if not transient:
                    retry._finish(call, "success")
                    return response
                first = response
        # More than one attempt, or a wait: the rest runs under what is left of the total.
        seconds: float = self.timeout  # type: ignore[assignment]
        left = seconds - (self._now() - call.started)
        total = Timeout(max(left, 1e-6), clock=self._clock)
        try:
            return await total.call(self._retrying, request, host, retry, call, sent, first)
        except TimeoutExceeded as exc:
            if exc.timeout is not total.seconds:
                raise  # an attempt's own timeout, the last one retrying allowed
            # Say what the user set: the time since the call began, not what was left.
            raise TimeoutExceeded(
                f"call timed out after {seconds:g}s", timeout=seconds
            ) from exc.__cause__

    async def _retrying(
        self,
        request: httpx.Request,
        host: Host,
        retry: Retry,
        call: _Call,
        sent: _Sent | None,
        first: httpx.Response | Exception | None,
    ) -> httpx.Response:
        """The retry loop; `first` is the outcome of attempt 1 when it already ran."""
        while True:
            try:
                if first is None:
                    response = await self._attempt(request, host, call.attempt, sent)
                elif isinstance(first, Exception):
                    error, first = first, None
                    raise error
                else:
                    response, first = first, None
            except Exception as error:
                try:
                    again = self._retry_error(error) and may_resend(
                        request, never_sent=is_never_sent(error)
                    )
                except BaseException as raised:
                    retry._finish(call, "failure", raised)
                    raise
                if not again:
                    retry._finish(call, "failure", error)
                    raise
                delay = retry._plan(call, error)
                if delay is None:
                    raise
                await retry._sleep(call, delay)
                continue
            except BaseException:
                retry._finish(call, "cancelled")
                raise
            try:
                wait = self._observe(response, host)
                transient = self._retry_response(response)
            except BaseException as raised:
                await response.aclose()
                retry._finish(call, "failure", raised)
                raise
            if not transient:
                retry._finish(call, "success")
                return response
            if not may_resend(request) or (wait is not None and wait > self.max_retry_after):
                retry._finish(call, "failure")
                return response
            delay = retry._plan(call, None, wait)
            if delay is None:
                return response
            try:
                await response.aclose()
            except BaseException:
                retry._finish(call, "cancelled")
                raise
            await retry._sleep(call, delay)

    async def _attempt(
        self, request: httpx.Request, host: Host, number: int, sent: _Sent | None
    ) -> httpx.Response:
        """Attempt `number` of a call; `sent` counts its requests when the call is traced."""
        paused = host.paused_until - self._now()
        if paused > 0:
            left = time_left()
            if left is not None and paused >= left:
                raise RateLimitedError(
                    f"{host.name} asked for a pause of {paused:.3g}s, past the deadline "
                    f"({max(left, 0.0):.3g}s left)",
                    policy=host.name,
                    retry_after=paused,
                )
            await self._clock.sleep(paused)
        send = self._attempt_of(host, request)
        if sent is None:
            return await send(request)
        url = request.url
        attributes: dict[str, Any] = {
            _METHOD: request.method,
            ATTR_SERVER_ADDRESS: url.host,
            _URL: str(url.copy_with(username=None, password=None)),
            ATTR_ATTEMPT: number,
        }
        port = url.port or _DEFAULT_PORTS.get(url.scheme)
        if port is not None:
            attributes[ATTR_SERVER_PORT] = port
        record = sent.record
        record.event(ATTEMPT_STARTED, {ATTR_ATTEMPT: number})
        if send is not host.hedged:
            return await _traced_send(send, request, sent, attributes, nested=False)
        # Each copy the hedge sends is its own CLIENT span (see `_copy_traced`), under the
        # hedge's span: one span per request on the wire.
        sent.attributes = attributes
        token = _hedging.set(sent)
        try:
            return await send(request)
        finally:
            _hedging.reset(token)

    def _attempt_of(self, host: Host, request: httpx.Request) -> _Send:
        """The host's attempt, hedged when the transport hedges and the request allows."""
        hedged = host.hedged
        if hedged is None or request.extensions.get(STREAM) or not may_resend(request):
            return host.attempt
        return hedged

    @staticmethod
    def _copy_traced(wire: _Send) -> _Send:
        """`wire` for the copies of a hedged attempt: each a CLIENT span of its own when
        the call is traced, a hedge sending a copy of the request with its own trace
        context (the copies are in flight together)."""

        async def send(request: httpx.Request) -> httpx.Response:
            sent = _hedging.get()
            if sent is None:
                return await wire(request)
            if hedge_attempt():
                request = httpx.Request(
                    request.method,
                    request.url,
                    headers=request.headers.copy(),
                    stream=request.stream,
                    extensions=request.extensions,
                )
            return await _traced_send(wire, request, sent, sent.attributes, nested=True)

        return send

    def _chaos_send(self) -> _Send:
        """`_send` under the chaos policy; an injected response is copied for each call."""
        chaos = self.chaos
        assert chaos is not None
        injected = _chain((chaos,), self._send)

        async def send(request: httpx.Request) -> httpx.Response:
            response: httpx.Response = await injected(request)
            if response is chaos.result:  # shared by every call: hand each its own
                return httpx.Response(
                    response.status_code,
                    headers=response.headers,
                    content=response.content,
                    extensions=dict(response.extensions),
                    request=request,
                )
            return response

        return send

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """One attempt on the wire; the body read unless the request asked for a stream."""
        response = await self._transport.handle_async_request(request)
        if request.extensions.get(STREAM):
            return response
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            return response
        try:
            body = b"".join([chunk async for chunk in stream])
        finally:
            # The stream, not the response: the response stays open for the client to read
            # the body from memory, and the connection goes back to the pool now.
            await stream.aclose()
        response.stream = httpx.ByteStream(body)
        return response

    def _observe(self, response: httpx.Response, host: Host) -> float | None:
        """Read the server's signals: the least wait before the next attempt, in seconds
        (None when it said nothing), and pause the host when it asked for it."""
        retry_after: bytes | None = None
        ratelimit: bytes | None = None
        # One pass over the raw fields: looking each name up in httpx's Headers costs more
        # than the whole scan, and most responses carry neither field.
        for name, value in response.headers.raw:
            size = len(name)
            if size == 11 and name.lower() == b"retry-after":
                retry_after = value
            elif size == 9 and name.lower() == b"ratelimit":
                # A field sent on several lines is one list (RFC 9110 §5.3).
                ratelimit = value if ratelimit is None else ratelimit + b", " + value
        if retry_after is None and ratelimit is None:
            return None
        wait: float | None = None
        pause = False
        if retry_after is not None:
            wait = parse_retry_after(retry_after, time.time())
            pause = wait is not None and response.status_code in _COOLDOWN_STATUSES
        if ratelimit is not None:
            quota_wait = seconds_until_quota(parse_ratelimit(ratelimit))
            if quota_wait is not None:
                pause = True
                wait = quota_wait if wait is None else max(wait, quota_wait)
        if pause and wait:
            until = self._now() + min(wait, self.max_retry_after)
            if until > host.paused_until:
                host.paused_until = until
        return wait

    async def aclose(self) -> None:
        """Close the wrapped transport (its pooled connections)."""
        await self._transport.aclose()

    async def __aenter__(self) -> ResilientTransport:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._transport.__aexit__(exc_type, exc_value, traceback)
