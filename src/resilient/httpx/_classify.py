"""What an HTTP outcome means: transient or final, a failure of the upstream or not, and
whether a request may safely be sent again."""

from __future__ import annotations

from typing import Final

import httpx

from resilient.exceptions import TimeoutExceeded

__all__ = (
    "BREAKER_FAILURE_STATUS_CODES",
    "IDEMPOTENT_METHODS",
    "REFUSAL_STATUS_CODES",
    "TRANSIENT_STATUS_CODES",
    "is_breaker_failure",
    "is_breaker_failure_response",
    "is_never_sent",
    "is_refusal_response",
    "is_replayable",
    "is_transient_error",
    "is_transient_response",
    "may_resend",
)

#: Statuses worth another attempt: the server (or something before it) may answer
#: otherwise soon. 408 Request Timeout, 429 Too Many Requests, 500, 502, 503, 504.
TRANSIENT_STATUS_CODES: Final = frozenset({408, 429, 500, 502, 503, 504})

#: Statuses that count against a host's circuit breaker: the upstream is failing. 429 is
#: not one (the upstream works and asks for less traffic: the cooldown slows down to it),
#: nor 408 (the connection was idle too long, not the upstream's failure).
BREAKER_FAILURE_STATUS_CODES: Final = frozenset({500, 502, 503, 504})

#: Statuses by which an upstream turns a request away for want of capacity: what an
#: `AdaptiveThrottle` in the transport counts as not accepted.
REFUSAL_STATUS_CODES: Final = frozenset({429, 503})

#: Methods whose repetition has the effect of one request (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Transport errors that say the request may not have reached the server completely, or
# its answer was lost: connection refused or reset, timeouts, a closed connection. Errors
# in what the client itself sent (LocalProtocolError, UnsupportedProtocol, a bad proxy
# configuration) are not transient: another attempt would fail the same way.
_TRANSIENT_ERRORS: Final = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    TimeoutExceeded,
)

# Errors raised before a byte of the request could leave: no connection was made.
_NEVER_SENT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def is_transient_response(response: httpx.Response) -> bool:
    """True when `response`'s status is worth another attempt (`TRANSIENT_STATUS_CODES`).

    Examples:
        >>> is_transient_response(httpx.Response(503))
        True
        >>> is_transient_response(httpx.Response(404))
        False
    """
    return response.status_code in TRANSIENT_STATUS_CODES


def is_transient_error(error: BaseException) -> bool:
    """True for an error worth another attempt: connect, read and write errors and
    timeouts, a connection closed by the peer, and an attempt's `TimeoutExceeded`.

    Examples:
        >>> is_transient_error(httpx.ConnectError("refused"))
        True
        >>> is_transient_error(httpx.UnsupportedProtocol("ftp"))
        False
    """
    return isinstance(error, _TRANSIENT_ERRORS)


def is_breaker_failure_response(response: httpx.Response) -> bool:
    """True when `response` counts against the host's circuit breaker (500, 502, 503, 504).

    Examples:
        >>> is_breaker_failure_response(httpx.Response(429))
        False
    """
    return response.status_code in BREAKER_FAILURE_STATUS_CODES


def is_refusal_response(response: httpx.Response) -> bool:
    """True when `response` is the upstream turning the request away for want of capacity
    (429, 503): what a host's `AdaptiveThrottle` counts as not accepted.

    Examples:
        >>> is_refusal_response(httpx.Response(429))
        True
        >>> is_refusal_response(httpx.Response(500))
        False
    """
    return response.status_code in REFUSAL_STATUS_CODES


def is_breaker_failure(error: BaseException) -> bool:
    """True when an error counts against the host's circuit breaker: the transient errors.

    Examples:
        >>> is_breaker_failure(httpx.ReadTimeout("slow"))
        True
    """
    return isinstance(error, _TRANSIENT_ERRORS)


def is_never_sent(error: BaseException) -> bool:
    """True when the request provably never left: no connection could be made."""
    return isinstance(error, _NEVER_SENT_ERRORS)


def is_replayable(request: httpx.Request) -> bool:
    """True when `request`'s body can be sent again: none, bytes, or a form or multipart
    body that httpx renders afresh each time. A body from an iterator cannot."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        return True
    return type(stream).__name__ == "MultipartStream" or hasattr(request, "_content")


def may_resend(request: httpx.Request, *, never_sent: bool = False) -> bool:
    """True when `request` may safely be sent again: an idempotent method, or a POST or
    PATCH carrying an `Idempotency-Key` header, or any request that never left
    (`never_sent`); and, for a request that went out, a body that can be replayed.

    Examples:
        >>> may_resend(httpx.Request("GET", "https://example.com"))
        True
        >>> may_resend(httpx.Request("POST", "https://example.com"))
        False
        >>> may_resend(httpx.Request("POST", "https://example.com",
        ...                          headers={"Idempotency-Key": "8e03"}))
        True
    """
    if never_sent:
        return True  # nothing of it, body included, was consumed
    if request.method not in IDEMPOTENT_METHODS and "idempotency-key" not in request.headers:
        return False
    return is_replayable(request)
