"""Who a request counts against: the key functions of `RateLimitMiddleware`, and the
client's address as trusted proxies report it."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Final

from resilient._validate import short_repr
from resilient.asgi._types import Scope

__all__ = ("TrustedProxies", "client_address", "header", "route")

#: Where the middleware leaves the client's address it resolved through trusted proxies,
#: in the request's scope, for `client_address` (and the app) to read.
CLIENT_ADDRESS: Final = "resilient.client_address"

#: The key of a request whose server gives no client address (a Unix socket): all such
#: requests share one bucket, which is loud rather than unlimited.
UNKNOWN_CLIENT: Final = "unknown"

#: Longest forwarding header read, in bytes: a longer one is not a proxy's.
_MAX_FORWARDED: Final = 16_384

#: Headers that proxies write the client's address in, as the middleware may read them.
PROXY_HEADERS: Final = ("forwarded", "x-forwarded-for")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(scope: Scope) -> str | None:
    """Key a request by its client's IP address (the default key of `RateLimitMiddleware`).

    The address is the connecting peer's, or, when the peer is one of the middleware's
    `trusted_proxies`, the client's address as those proxies report it in `Forwarded` or
    `X-Forwarded-For`. A request without any address (served on a Unix socket) has the key
    `"unknown"`: such requests share one bucket.

    Examples:
        ```python
        app.add_middleware(RateLimitMiddleware, limiters=RateLimiter(10), key=client_address)
        ```
    """
    resolved = scope.get(CLIENT_ADDRESS)
    if resolved is not None:
        return str(resolved)
    client = scope.get("client")
    if not client:
        return UNKNOWN_CLIENT
    return str(client[0])


def header(name: str) -> Callable[[Scope], str | None]:
    """Key requests by a header's value, e.g. an API key; a request without it is not limited.

    Args:
        name: the header (any case), e.g. `"x-api-key"`.

    A request without the header gets the key None (not limited): combine it with
    `client_address` to limit those by address instead.

    Examples:
        ```python
        by_api_key = header("x-api-key")
        app.add_middleware(
            RateLimitMiddleware,
            limiters=RateLimiter(100, name="per-key"),
            key=lambda scope: by_api_key(scope) or client_address(scope),
        )
        ```
    """
    if not isinstance(name, str) or not name or not name.isascii():
        raise ValueError(f"name must be a non-empty ASCII header name, got {short_repr(name)}")
    wanted = name.lower().encode("ascii")

    def header_key(scope: Scope) -> str | None:
        for key, value in scope.get("headers", ()):
            if key == wanted or key.lower() == wanted:
                return bytes(value).decode("latin-1")
        return None

    header_key.__qualname__ = f"header({name!r})"
    return header_key


def route(scope: Scope) -> str:
    """Key requests by route: one bucket per endpoint, whoever calls it.

    The route's path template (`/items/{item_id}`) once the framework has matched it (in a
    dependency, or a middleware given to one Starlette `Route`); before routing (a
    middleware around the whole app), the request's path. Combine it with
    `client_address` for a limit per client and route.

    Examples:
        ```python
        app.add_middleware(
            RateLimitMiddleware,
            limiters=RateLimiter(5, name="per-route"),
            key=lambda scope: f"{client_address(scope)} {route(scope)}",
        )
        ```
    """
    matched = scope.get("route")
    path = getattr(matched, "path", None)
    if isinstance(path, str):
        return path
    return str(scope.get("path", ""))


def _network(entry: object) -> _Network:
    if not isinstance(entry, str):
        raise ValueError(
            f"trusted_proxies entries must be addresses or CIDR ranges, got {short_repr(entry)}"
        )
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"trusted_proxies entries must be addresses or CIDR ranges, got {short_repr(entry)}"
        ) from None


def _address(text: str) -> _Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> list[str]:
    """The `for=` node of each element of a `Forwarded` field (RFC 7239), left to right;
    an element without one is `""` (unknown)."""
    nodes = []
    for element in value.split(","):
        node = ""
        for pair in element.split(";"):
            name, _, text = pair.partition("=")
            if name.strip().lower() == "for":
                node = text.strip().strip('"')
                break
        nodes.append(_strip_port(node))
    return nodes


def _strip_port(node: str) -> str:
    # `[2001:db8::1]:4711` and `192.0.2.43:47011` name their address without the port.
    if node.startswith("["):
        end = node.find("]")
        return node[1:end] if end > 0 else node
    if node.count(":") == 1:
        return node.partition(":")[0]
    return node


class TrustedProxies:
    """The proxies whose forwarding headers are believed, and how to read them."""

    __slots__ = ("_addresses", "_headers", "_networks")

    def __init__(self, proxies: Iterable[str], headers: Iterable[str]) -> None:
        if isinstance(proxies, str):
            raise ValueError(
                f"trusted_proxies must be a collection of addresses, got {short_repr(proxies)}"
            )
        networks = [_network(entry) for entry in proxies]
        # Exact addresses are a set lookup; ranges are tested one by one.
        self._addresses = frozenset(n.network_address for n in networks if n.num_addresses == 1)
        self._networks = tuple(n for n in networks if n.num_addresses > 1)
        if isinstance(headers, str):
            raise ValueError(
                f"proxy_headers must be a collection of header names, got {short_repr(headers)}"
            )
        names = tuple(headers)
        for name in names:
            if name not in PROXY_HEADERS:
                raise ValueError(
                    f"proxy_headers entries must be 'forwarded' or 'x-forwarded-for', "
                    f"got {short_repr(name)}"
                )
        self._headers = tuple(name.encode("ascii") for name in names)

    def __bool__(self) -> bool:
        return bool(self._addresses or self._networks)

    def trusts(self, address: _Address | None) -> bool:
        """True when `address` is one of the trusted proxies."""
        if address is None:
            return False
        if address in self._addresses:
            return True
        return any(address in network for network in self._networks)

    def client(self, scope: Scope) -> str | None:
        """The client's address as the trusted proxies report it, or None when the peer
        is not trusted (or reports nothing): then the peer itself is the client."""
        peer = scope.get("client")
        if not peer or not self.trusts(_address(str(peer[0]))):
            return None
        raw = None
        which = b""
        for name in self._headers:
            for key, value in scope.get("headers", ()):
                if key == name or key.lower() == name:
                    raw = value if raw is None or which != name else raw + b"," + value
                    which = name
            if raw is not None:
                break
        if raw is None or len(raw) > _MAX_FORWARDED:
            return None
        text = bytes(raw).decode("latin-1")
        hops = (
            _forwarded_for(text)
            if which == b"forwarded"
            else [_strip_port(hop.strip()) for hop in text.split(",")]
        )
        # From the right: each hop was written by the proxy to its right; the first one
        # that is not a trusted proxy is the client. Everything left of it is the
        # client's own say, and is never read.
        found = None
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                # Not an address ("unknown", an obfuscated node, garbage): the proxy that
                # wrote it knew no better, so the request counts against that proxy.
                return found
            found = str(address)
            if not self.trusts(address):
                return found
        return found
