"""RateLimitMiddleware: per-client limits for an ASGI app, told to clients in the IETF
`RateLimit` and `RateLimit-Policy` fields."""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any, Final

from resilient._gcra import Decision
from resilient._ratelimit_fields import (
    MAX_INTEGER,
    RateLimitPolicyItem,
    RateLimitWriter,
    format_ratelimit_policy,
    format_retry_after,
)
from resilient._validate import check_bool, short_repr
from resilient.asgi._keys import CLIENT_ADDRESS, PROXY_HEADERS, TrustedProxies, client_address
from resilient.asgi._paths import ExemptPaths
from resilient.asgi._problem import send_problem
from resilient.asgi._types import ASGIApp, Message, Receive, Scope, Send
from resilient.exceptions import StorageUnavailableError
from resilient.rate_limit import RateLimiter
from resilient.rate_limit._limiter import _DECISION_ATTRS, ALLOWED, DECIDED, REJECTED
from resilient.telemetry._core import QUIET, CallRecord
from resilient.telemetry._spec import EventSpec

__all__ = ("RateLimitMiddleware", "rate_limit_dependency")

#: A request turned away by a limiter of the middleware; `resilient.rate_limit.key_hash`
#: names its key without revealing it.
ATTR_KEY_HASH: Final = "resilient.rate_limit.key_hash"
LIMITED: Final = EventSpec("resilient.rate_limit.limited")

#: Longest key kept as it is, in characters: a longer one is replaced by its digest, so a
#: huge key costs a store no more memory than a short one.
MAX_KEY_LENGTH: Final = 256

#: Retry-After of a request refused because the store could not be reached.
_STORE_DOWN_RETRY: Final = 1

_RATELIMIT: Final = b"ratelimit"
_RATELIMIT_POLICY: Final = b"ratelimit-policy"


def key_hash(key: str) -> str:
    """A short, stable pseudonym of a rate-limit key for telemetry (16 hex digits)."""
    data = key.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=8, person=b"resilient-rlkey").hexdigest()


def _bucket(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH:
        return "#" + hashlib.blake2b(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key


class _Quota:
    """One limiter as the middleware uses it, its constants computed once."""

    __slots__ = ("burst", "interval", "limiter", "name", "prefix", "store", "telemetry")

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.name = limiter.name
        self.store = limiter.store
        self.prefix = limiter._prefix
        self.interval = limiter._emission_interval
        self.burst = limiter.burst
        self.telemetry = limiter._telemetry

    def policy(self) -> RateLimitPolicyItem:
        # The bucket as a quota: `burst` requests, whole again `burst * per / rate`
        # seconds after it was emptied (the long-run rate is exactly q / w).
        window = min(MAX_INTEGER, max(1, math.ceil(self._full())))
        return RateLimitPolicyItem(self.name, min(self.burst, MAX_INTEGER), window)

    def _full(self) -> float:
        return self.burst * self.interval

    def item(self, remaining: int) -> tuple[int, int]:
        """(r, t) of an admitted request: t is when the whole quota is back or, with none
        left, when the next request fits (at most one emission interval away)."""
        if remaining <= 0:
            return 0, max(1, math.ceil(self.interval - 1e-9))
        return remaining, self._until_whole(remaining)

    def refunded_item(self, remaining: int) -> tuple[int, int]:
        """(r, t) once a permit taken with `remaining` left was given back."""
        left = min(self.burst, remaining + 1)
        return left, self._until_whole(left)

    def _until_whole(self, remaining: int) -> int:
        # At most this long: `remaining` is rounded down from the bucket's exact level.
        return math.ceil((self.burst - remaining) * self.interval - 1e-9)


class Verdict:
    """What the limiters said about one request."""

    __slots__ = ("fields", "retry_after", "unavailable")

    def __init__(
        self,
        fields: list[tuple[bytes, bytes]],
        retry_after: float | None = None,
        unavailable: bool = False,
    ) -> None:
        #: The `RateLimit-Policy` and `RateLimit` header lines for the response.
        self.fields = fields
        #: Seconds until the request would be admitted, when it was refused.
        self.retry_after = retry_after
        #: The request was refused because a shared store could not be reached.
        self.unavailable = unavailable

    @property
    def admitted(self) -> bool:
        return self.retry_after is None and not self.unavailable


def _check_limiters(limiters: Any) -> tuple[RateLimiter, ...]:
    found = (limiters,) if isinstance(limiters, RateLimiter) else None
    if found is None:
        if isinstance(limiters, (str, bytes)) or not isinstance(limiters, Iterable):
            raise ValueError(
                f"limiters must be a RateLimiter or several, got {short_repr(limiters)}"
            )
        found = tuple(limiters)
        if not found:
            raise ValueError("limiters must hold at least one RateLimiter, got none")
        for limiter in found:
            if not isinstance(limiter, RateLimiter):
                raise ValueError(f"limiters must be RateLimiter objects, got {short_repr(limiter)}")
    names = [limiter.name for limiter in found]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(
                f"limiters must have distinct names (they name the RateLimit-Policy items), "
                f"got {name!r} twice: pass name= to each"
            )
    return found


class _Limits:
    """The decision shared by the middleware and the route dependency."""

    __slots__ = ("_policy", "_proxies", "_writer", "key", "quotas")

    def __init__(
        self,
        limiters: Any,
        key: Callable[[Scope], str | None],
        trusted_proxies: Iterable[str],
        proxy_headers: Iterable[str],
    ) -> None:
        self.quotas = tuple(_Quota(limiter) for limiter in _check_limiters(limiters))
        if not callable(key):
            raise ValueError(f"key must be a function of the scope, got {short_repr(key)}")
        self.key = key
        self._proxies = TrustedProxies(trusted_proxies, proxy_headers)
        self._policy = (
            _RATELIMIT_POLICY,
            format_ratelimit_policy([quota.policy() for quota in self.quotas]).encode("ascii"),
        )
        self._writer = RateLimitWriter(quota.name for quota in self.quotas)

    def key_of(self, scope: Scope) -> str | None:
        if self._proxies:
            forwarded = self._proxies.client(scope)
            if forwarded is not None:
                scope[CLIENT_ADDRESS] = forwarded
        key = self.key(scope)
        if key is None:
            return None
        if not isinstance(key, str):
            raise TypeError(f"key(scope) must return a str or None, got {short_repr(key)}")
        return _bucket(key)

    def _fields(self, items: Iterable[tuple[int, int]]) -> list[tuple[bytes, bytes]]:
        return [self._policy, (_RATELIMIT, self._writer.format(items).encode("ascii"))]

    async def decide(self, key: str) -> Verdict:
        """Take a permit from every limiter, or from none: a refusal gives back what the
        limiters before it granted, and the limiters after it are not asked (one round
        trip fewer per refusal, the common case in a flood)."""
        granted: list[tuple[_Quota, Decision]] = []
        refused: tuple[_Quota, Decision] | None = None
        try:
            for quota in self.quotas:
                if quota.telemetry.quiet():
                    decision = await quota.store.acquire(
                        quota.prefix + key,
                        emission_interval=quota.interval,
                        burst=quota.burst,
                        cost=1,
                        max_wait=0.0,
                    )
                else:
                    decision = await self._acquire_recorded(quota, key)
                if not decision.allowed:
                    refused = (quota, decision)
                    break
                granted.append((quota, decision))
        except StorageUnavailableError:
            await self._give_back(key, granted)
            return Verdict([self._policy], unavailable=True)
        except BaseException:
            # Cancelled (the client left) or failed: nothing runs, nothing is spent.
            await self._give_back(key, granted)
            raise
        if refused is None:
            return Verdict(self._fields([quota.item(d.remaining) for quota, d in granted]))
        await self._give_back(key, granted)
        items = [quota.refunded_item(decision.remaining) for quota, decision in granted]
        retry_after = refused[1].retry_after
        items.append((0, max(1, math.ceil(retry_after))))
        return Verdict(self._fields(items), retry_after=retry_after)

    async def _acquire_recorded(self, quota: _Quota, key: str) -> Decision:
        record = quota.telemetry.start()
        if record is None:  # switched off since `quiet()` was asked
            record = QUIET
        try:
            decision = await quota.store.acquire(
                quota.prefix + key,
                emission_interval=quota.interval,
                burst=quota.burst,
                cost=1,
                max_wait=0.0,
            )
        except BaseException as exc:
            record.end("failure" if isinstance(exc, Exception) else "cancelled", exc)
            raise
        if decision.allowed:
            record.event(DECIDED, _DECISION_ATTRS[ALLOWED])
            record.end("success")
        else:
            self._report_refusal(quota, record, key, decision.retry_after)
        return decision

    def _report_refusal(
        self, quota: _Quota, record: CallRecord, key: str, retry_after: float
    ) -> None:
        record.event(DECIDED, _DECISION_ATTRS[REJECTED])
        record.event(LIMITED, {ATTR_KEY_HASH: key_hash(key)})
        record.end(REJECTED, quota.limiter._rejection(retry_after, 1))

    @staticmethod
    async def _give_back(key: str, granted: list[tuple[_Quota, Decision]]) -> None:
        # Latest first: each is then its key's latest reservation, which a store gives
        # back unless another request on the same key came in between (never, in this
        # process: nothing awaits between the acquisitions and the refunds).
        for quota, decision in reversed(granted):
            await quota.limiter._give_back(quota.prefix + key, 1, decision.tat)


def _is_preflight(scope: Scope) -> bool:
    if scope.get("method") != "OPTIONS":
        return False
    return any(key.lower() == b"access-control-request-method" for key, _ in scope["headers"])


class RateLimitMiddleware:
    """Limit each client's requests with one or several `RateLimiter`s, and tell clients
    what they have left in the IETF `RateLimit-Policy` and `RateLimit` fields.

    Args:
        app: the ASGI app to protect.
        limiters: a `RateLimiter`, or several (e.g. 10 per second and 10,000 per day), each
            with its own `name=`: the names are the `RateLimit-Policy` items. In memory (the
            default store) or on a shared store such as `resilient.storage.RedisStore`, for
            one limit across every process of the app. The middleware refuses at once:
            the limiters' `max_wait` and `key` are not used.
        key: `key(scope) -> str | None`, the bucket a request counts against (None: not
            limited). Default `client_address`; `header(name)` and `route` are provided,
            and any function of the scope will do. A key longer than 256 characters is
            replaced by its digest.
        exempt: paths never counted, e.g. `("/livez", "/readyz")`; an entry also covers
            the paths under it.
        trusted_proxies: addresses and CIDR ranges (`"10.0.0.0/8"`) of the proxies in
            front of the app. Only when the connecting peer is one of them are
            `Forwarded` and `X-Forwarded-For` read, from the right, past every trusted
            hop: the first hop that is not a trusted proxy is the client's address. From
            anyone else the headers are ignored, so a client cannot choose its own key.
        proxy_headers: the headers the trusted proxies write, in order of preference
            (default `("forwarded", "x-forwarded-for")`: the first one present is read).
            Name only the one your proxies set: a client can send the other through a
            proxy that does not touch it.
        exempt_preflight: `True` leaves CORS preflights (`OPTIONS` with
            `Access-Control-Request-Method`) uncounted (default `False`).

    A request is admitted only when every limiter admits it, and a refusal by one does
    not spend the others' permits: the limiters are asked in order, and when one refuses,
    those before it get their permit back (ask first the one that refuses most often,
    usually the shortest window) and those after it are not asked. In this process
    (`MemoryStore`) this is exact, since nothing else runs between the steps. On a shared
    store each step is one atomic round trip, and a permit is given back only if no other
    request on the same key took one from that limiter in between; otherwise it is lost
    and comes back with time, as every permit does: the limit is never exceeded.

    Every counted response carries `RateLimit-Policy` (per limiter: `q`, the burst, and
    `w`, the seconds in which the whole burst comes back) and `RateLimit` (`r`, the
    requests left, and `t`, the seconds until the whole quota is back or, with none left,
    until the next request fits). A refusal is a 429 with `Retry-After` and an RFC 9457
    `application/problem+json` body. When a store set to `on_unavailable="deny"` cannot
    be reached, the request is refused with a 503. Lifespan and websocket scopes pass
    through untouched; the middleware never blocks the event loop (a shared store is
    awaited). For a limit on one route only, see `rate_limit_dependency` (FastAPI) or
    give this middleware to one Starlette `Route(..., middleware=[...])`.

    Telemetry: each limiter reports its decisions under its own name, and a refusal as the
    event `resilient.rate_limit.limited` with `resilient.rate_limit.key_hash`, a stable
    pseudonym of the key (never the key itself).

    Examples:
        ```python
        from resilient import RateLimiter
        from resilient.asgi import RateLimitMiddleware

        app.add_middleware(
            RateLimitMiddleware,
            limiters=[
                RateLimiter(10, per=1.0, name="burst"),
                RateLimiter(10_000, per=86_400, name="daily"),
            ],
            exempt=("/livez", "/readyz"),
            trusted_proxies=("10.0.0.0/8",),
        )
        ```
    """

    __slots__ = ("_exempt", "_limits", "_preflight", "app")

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiters: RateLimiter | Iterable[RateLimiter],
        key: Callable[[Scope], str | None] = client_address,
        exempt: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        proxy_headers: Iterable[str] = PROXY_HEADERS,
        exempt_preflight: bool = False,
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be an ASGI app, got {short_repr(app)}")
        self.app = app
        self._limits = _Limits(limiters, key, trusted_proxies, proxy_headers)
        self._exempt = ExemptPaths(exempt)
        self._preflight = check_bool("exempt_preflight", exempt_preflight)

    def __repr__(self) -> str:
        names = ", ".join(quota.name for quota in self._limits.quotas)
        return f"RateLimitMiddleware({self.app!r}, limiters=[{names}])"

    @property
    def limiters(self) -> tuple[RateLimiter, ...]:
        """The limiters, in the order they are asked."""
        return tuple(quota.limiter for quota in self._limits.quotas)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self._exempt and scope in self._exempt):
            await self.app(scope, receive, send)
            return
        if self._preflight and _is_preflight(scope):
            await self.app(scope, receive, send)
            return
        limits = self._limits
        key = limits.key_of(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        verdict = await limits.decide(key)
        fields = verdict.fields
        if not verdict.admitted:
            await _refuse(send, verdict)
            return

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A copy: an app may send the same start message every time.
                message = {**message, "headers": [*message.get("headers", ()), *fields]}
            await send(message)

        await self.app(scope, receive, send_with_fields)


async def _refuse(send: Send, verdict: Verdict) -> None:
    if verdict.unavailable:
        await send_problem(
            send,
            503,
            detail="The rate limit cannot be checked right now; retry shortly.",
            retry_after=_STORE_DOWN_RETRY,
            headers=verdict.fields,
        )
        return
    retry_after = verdict.retry_after or 0.0
    seconds = format_retry_after(retry_after)
    await send_problem(
        send,
        429,
        detail=f"Too many requests: the rate limit is reached; retry after {seconds} s.",
        headers=[(b"retry-after", seconds.encode("ascii")), *verdict.fields],
    )


def rate_limit_dependency(
    limiters: RateLimiter | Iterable[RateLimiter],
    *,
    key: Callable[[Scope], str | None] = client_address,
    trusted_proxies: Iterable[str] = (),
    proxy_headers: Iterable[str] = PROXY_HEADERS,
) -> Callable[..., Any]:
    """A FastAPI dependency that limits one route (or router): the per-route face of
    `RateLimitMiddleware`, with the same arguments and behaviour.

    An admitted request's response carries `RateLimit-Policy` and `RateLimit`. A refused
    one raises Starlette's `HTTPException` with status 429 and the `Retry-After`,
    `RateLimit-Policy` and `RateLimit` headers; the framework renders its body (FastAPI:
    `{"detail": ...}`). Handlers need no `request` argument. Here `route` keys by the
    route's path template, since routing is done.

    In a plain Starlette app, give `RateLimitMiddleware` to the route instead:
    `Route("/search", search, middleware=[Middleware(RateLimitMiddleware, limiters=...)])`.

    Examples:
        ```python
        from fastapi import Depends, FastAPI
        from resilient import RateLimiter
        from resilient.asgi import rate_limit_dependency

        app = FastAPI()
        searches = rate_limit_dependency(RateLimiter(2, per=1.0, name="search"))


        @app.get("/search", dependencies=[Depends(searches)])
        async def search(q: str) -> dict[str, str]:
            return {"q": q}
        ```
    """
    try:
        from starlette.exceptions import HTTPException
        from starlette.requests import Request
        from starlette.responses import Response
    except ImportError as exc:  # pragma: no cover - installed with the test tools
        raise ImportError(
            "rate_limit_dependency needs Starlette (FastAPI installs it): pip install fastapi"
        ) from exc
    limits = _Limits(limiters, key, trusted_proxies, proxy_headers)

    async def rate_limited(request: Request, response: Response) -> None:
        bucket = limits.key_of(request.scope)
        if bucket is None:
            return
        verdict = await limits.decide(bucket)
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in verdict.fields
        }
        if verdict.admitted:
            for name, value in headers.items():
                response.headers.append(name, value)
            return
        if verdict.unavailable:
            headers["retry-after"] = str(_STORE_DOWN_RETRY)
            raise HTTPException(503, "The rate limit cannot be checked right now.", headers)
        headers["retry-after"] = format_retry_after(verdict.retry_after or 0.0)
        raise HTTPException(429, "Too many requests: the rate limit is reached.", headers)

    # FastAPI reads the parameters' types from the signature: real classes, not the
    # strings postponed annotations would leave.
    rate_limited.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            inspect.Parameter(
                "response", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Response
            ),
        ],
        return_annotation=None,
    )
    return rate_limited
