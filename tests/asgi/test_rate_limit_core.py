"""RateLimitMiddleware's logic called directly (both anyio backends): scopes that pass
through, cancellation, validation, and the trusted-proxy walk."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from resilient import RateLimiter
from resilient.asgi import RateLimitMiddleware, client_address, header, route
from resilient.asgi._keys import TrustedProxies
from resilient.storage import Decision, MemoryStore

pytestmark = pytest.mark.anyio


def http_scope(**extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        "client": ("192.0.2.1", 5000),
    }
    scope.update(extra)
    return scope


class Recorder:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
async def test_non_http_scopes_pass_through_uncounted(kind: str) -> None:
    recorder = Recorder()
    limiter = RateLimiter(1, per=60.0)
    middleware = RateLimitMiddleware(recorder.app, limiters=limiter)
    for _ in range(3):
        await middleware(
            {"type": kind, "client": ("192.0.2.1", 1)}, recorder.receive, recorder.send
        )
    assert [s["type"] for s in recorder.scopes] == [kind] * 3
    assert await limiter.remaining("192.0.2.1") == 1


async def test_headers_are_added_to_the_apps_own() -> None:
    recorder = Recorder()
    middleware = RateLimitMiddleware(recorder.app, limiters=RateLimiter(3, name="n"))
    await middleware(http_scope(), recorder.receive, recorder.send)
    start = recorder.sent[0]
    assert dict(start["headers"]) == {
        b"ratelimit-policy": b'"n";q=3;w=1',
        b"ratelimit": b'"n";r=2;t=1',
    }


class StuckStore(MemoryStore):
    """A store whose decisions never come (a backend that hangs)."""

    async def acquire(self, key: str, **kwargs: Any) -> Decision:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_request_cancelled_while_deciding_gives_every_permit_back() -> None:
    recorder = Recorder()
    first = RateLimiter(5, name="first")
    stuck = RateLimiter(5, store=StuckStore(), name="stuck")
    middleware = RateLimitMiddleware(recorder.app, limiters=[first, stuck])
    with anyio.move_on_after(0.05):
        await middleware(http_scope(), recorder.receive, recorder.send)
    assert recorder.scopes == []  # the app never ran
    assert await first.remaining("192.0.2.1") == 5  # and nothing was spent


async def test_one_store_shared_by_several_limiters_keeps_them_apart() -> None:
    recorder = Recorder()
    store = MemoryStore()
    a = RateLimiter(1, per=60.0, store=store, name="a")
    b = RateLimiter(5, per=60.0, store=store, name="b")
    middleware = RateLimitMiddleware(recorder.app, limiters=[b, a])
    for _ in range(3):
        await middleware(http_scope(), recorder.receive, recorder.send)
    statuses = [m["status"] for m in recorder.sent if m["type"] == "http.response.start"]
    assert statuses == [200, 429, 429]
    assert await b.remaining("192.0.2.1") == 4
    assert await a.remaining("192.0.2.1") == 0


async def test_a_key_function_returning_a_non_string_is_an_error() -> None:
    recorder = Recorder()
    middleware = RateLimitMiddleware(
        recorder.app,
        limiters=RateLimiter(1),
        key=lambda scope: 42,  # type: ignore[arg-type,return-value]
    )
    with pytest.raises(TypeError, match="key\\(scope\\) must return a str or None, got 42"):
        await middleware(http_scope(), recorder.receive, recorder.send)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limiters": []}, "limiters must hold at least one RateLimiter"),
        ({"limiters": "x"}, "limiters must be a RateLimiter or several"),
        ({"limiters": [object()]}, "limiters must be RateLimiter objects"),
        (
            {"limiters": [RateLimiter(1), RateLimiter(2)]},
            "limiters must have distinct names.*'rate_limit' twice",
        ),
        ({"limiters": RateLimiter(1), "key": "ip"}, "key must be a function of the scope"),
        ({"limiters": RateLimiter(1), "exempt": "/health"}, "exempt must be a collection"),
        ({"limiters": RateLimiter(1), "exempt": ["health"]}, "exempt paths must start with '/'"),
        ({"limiters": RateLimiter(1), "trusted_proxies": "10.0.0.1"}, "trusted_proxies must be"),
        (
            {"limiters": RateLimiter(1), "trusted_proxies": ["proxy.local"]},
            "trusted_proxies entries must be addresses or CIDR ranges, got 'proxy.local'",
        ),
        (
            {"limiters": RateLimiter(1), "proxy_headers": ["x-real-ip"]},
            "proxy_headers entries must be 'forwarded' or 'x-forwarded-for'",
        ),
        ({"limiters": RateLimiter(1), "exempt_preflight": "yes"}, "exempt_preflight"),
    ],
)
def test_constructor_validates_its_arguments(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimitMiddleware(Recorder().app, **options)


def test_app_must_be_an_asgi_app() -> None:
    with pytest.raises(ValueError, match="app must be an ASGI app"):
        RateLimitMiddleware(None, limiters=RateLimiter(1))  # type: ignore[arg-type]


def test_header_key_needs_a_header_name() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty ASCII header name"):
        header("")


def test_key_functions_read_the_scope() -> None:
    scope = http_scope(headers=[(b"X-Api-Key", b"k1")], path="/items/3")
    assert client_address(scope) == "192.0.2.1"
    assert client_address(http_scope(client=None)) == "unknown"
    assert header("x-api-key")(scope) == "k1"
    assert header("authorization")(scope) is None
    assert route(scope) == "/items/3"


def resolve(proxies: tuple[str, ...], peer: str, *headers: tuple[bytes, bytes]) -> str | None:
    trusted = TrustedProxies(proxies, ("forwarded", "x-forwarded-for"))
    return trusted.client(http_scope(client=(peer, 1), headers=list(headers)))


def test_forwarding_headers_count_only_from_a_trusted_peer() -> None:
    xff = (b"x-forwarded-for", b"203.0.113.9")
    assert resolve(("10.0.0.0/8",), "192.0.2.1", xff) is None
    assert resolve(("10.0.0.0/8",), "10.1.1.1", xff) == "203.0.113.9"
    assert resolve(("2001:db8::/32",), "2001:db8::7", xff) == "203.0.113.9"


def test_the_walk_stops_at_the_first_untrusted_hop_from_the_right() -> None:
    chain = (b"x-forwarded-for", b"6.6.6.6, 203.0.113.9, 10.0.0.2, 10.0.0.3")
    assert resolve(("10.0.0.0/8",), "10.0.0.4", chain) == "203.0.113.9"
    # Every hop trusted: the leftmost is as far as anyone can tell.
    assert resolve(("10.0.0.0/8",), "10.0.0.4", (b"x-forwarded-for", b"10.0.0.9")) == "10.0.0.9"


def test_repeated_header_lines_are_one_list() -> None:
    first = (b"x-forwarded-for", b"6.6.6.6")
    second = (b"x-forwarded-for", b"203.0.113.9")
    assert resolve(("10.0.0.0/8",), "10.0.0.4", first, second) == "203.0.113.9"


def test_forwarded_is_preferred_and_parsed_per_rfc_7239() -> None:
    forwarded = (b"Forwarded", b'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https')
    xff = (b"x-forwarded-for", b"203.0.113.9")
    assert resolve(("10.0.0.0/8",), "10.0.0.4", xff, forwarded) == "2001:db8:cafe::17"
    port = (b"forwarded", b"for=192.0.2.60:8080;by=203.0.113.43")
    assert resolve(("10.0.0.0/8",), "10.0.0.4", port) == "192.0.2.60"
    obfuscated = (b"forwarded", b"for=_hidden, for=10.0.0.5")
    assert resolve(("10.0.0.0/8",), "10.0.0.4", obfuscated) == "10.0.0.5"


def test_only_the_configured_proxy_header_is_read() -> None:
    trusted = TrustedProxies(("10.0.0.0/8",), ("x-forwarded-for",))
    forged = http_scope(client=("10.0.0.4", 1), headers=[(b"forwarded", b"for=6.6.6.6")])
    assert trusted.client(forged) is None


async def test_an_apps_own_start_message_is_left_as_it_was() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]}
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)  # the same message on every request
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = RateLimitMiddleware(app, limiters=RateLimiter(5, name="n"))
    for _ in range(2):
        await middleware(http_scope(), Recorder().receive, send)
    assert start["headers"] == [(b"x-app", b"1")]
    assert [len(m["headers"]) for m in sent if m["type"] == "http.response.start"] == [3, 3]
