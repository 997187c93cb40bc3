"""The rate-limit fields of HTTP: `Retry-After`, `RateLimit` and `RateLimit-Policy`.

One codec for both sides of the wire: the httpx transport reads what a server says, the
ASGI rate-limit middleware writes it. `RateLimit` and `RateLimit-Policy` are structured
fields (RFC 9651) as draft-ietf-httpapi-ratelimit-headers-10 defines them, parsed and
serialised by `http-sf`; `Retry-After` (RFC 9110 §10.2.3) is delay-seconds or an HTTP-date.

Parsing never raises on what a server sent: a field that does not parse, a parameter of
the wrong type or out of range, is ignored (None, or the item left out), since a client
must go on without it. Unknown parameters are ignored, as the draft asks.

    RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400
    RateLimit: "burst";r=0;t=12
    Retry-After: 120
    Retry-After: Wed, 21 Oct 2026 07:28:00 GMT
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Final

__all__ = (
    "MAX_INTEGER",
    "RateLimitItem",
    "RateLimitPolicyItem",
    "RateLimitWriter",
    "format_http_date",
    "format_ratelimit",
    "format_ratelimit_policy",
    "format_retry_after",
    "parse_ratelimit",
    "parse_ratelimit_policy",
    "parse_retry_after",
    "seconds_until_quota",
)

#: The longest field value parsed, in characters: a longer one is ignored unread.
MAX_FIELD_LENGTH: Final = 8192

#: The largest Integer a structured field can carry (RFC 9651 §3.3.1): 15 digits.
MAX_INTEGER: Final = 999_999_999_999_999

#: delay-seconds is 1*DIGIT; a decimal fraction is tolerated (some servers send one).
_DELAY_SECONDS: Final = re.compile(r"[0-9]{1,50}(?:\.[0-9]{1,9})?")


def _http_sf() -> Any:
    try:
        import http_sf
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise ImportError(
            "the RateLimit fields need the http-sf package: pip install "
            "'resilient-patterns[httpx]' (the transport) or 'resilient-patterns[asgi]' "
            "(the middleware)"
        ) from exc
    return http_sf


@dataclass(frozen=True, slots=True)
class RateLimitItem:
    """One item of a `RateLimit` field: what is left of a policy's quota.

    Attributes:
        policy: the name of the policy it reports on (a `RateLimit-Policy` item).
        remaining: `r`, the quota units left (>= 0).
        reset: `t`, seconds until the quota is restored (>= 0), or None when not given.
        partition_key: `pk`, the partition the quota belongs to, when given.
    """

    policy: str
    remaining: int
    reset: int | None = None
    partition_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class RateLimitPolicyItem:
    """One item of a `RateLimit-Policy` field: a quota policy of the server.

    Attributes:
        policy: the policy's name.
        quota: `q`, the units allowed per window (>= 0).
        window: `w`, the window in seconds (> 0), or None when not given.
        quota_unit: `qu`, what is counted (`"requests"` when not given).
        partition_key: `pk`, the partition the policy applies to, when given.
    """

    policy: str
    quota: int
    window: int | None = None
    quota_unit: str = "requests"
    partition_key: bytes | None = None


def _member_name(value: object) -> str | None:
    # Policy names are Strings in draft 10 (http-sf's Token is not a str: left out).
    return value if isinstance(value, str) else None


def _non_negative_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _parse_list(value: str | bytes) -> list[tuple[object, dict[str, object]]]:
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    if len(raw) > MAX_FIELD_LENGTH:
        return []
    http_sf = _http_sf()
    try:
        parsed = http_sf.parse(raw, tltype="list")
    except http_sf.StructuredFieldError:
        return []
    members: list[tuple[object, dict[str, object]]] = []
    for member in parsed:
        item, params = member
        if isinstance(item, list):  # an inner list is no policy
            continue
        members.append((item, params))
    return members


def parse_ratelimit(value: str | bytes) -> list[RateLimitItem]:
    """The items of a `RateLimit` field that make sense; [] when it does not parse.

    An item without a valid `r` (a non-negative integer) is left out; a `t` that is not a
    non-negative integer is dropped from its item.
    """
    items = []
    for name, params in _parse_list(value):
        policy = _member_name(name)
        remaining = _non_negative_int(params.get("r"))
        if policy is None or remaining is None:
            continue
        pk = params.get("pk")
        items.append(
            RateLimitItem(
                policy,
                remaining,
                _non_negative_int(params.get("t")),
                pk if isinstance(pk, bytes) else None,
            )
        )
    return items


def parse_ratelimit_policy(value: str | bytes) -> list[RateLimitPolicyItem]:
    """The items of a `RateLimit-Policy` field that make sense; [] when it does not parse.

    An item without a valid `q` is left out; a `w` that is not an integer > 0 is dropped.
    """
    items = []
    for name, params in _parse_list(value):
        policy = _member_name(name)
        quota = _non_negative_int(params.get("q"))
        if policy is None or quota is None:
            continue
        window = _non_negative_int(params.get("w"))
        unit = params.get("qu")
        pk = params.get("pk")
        items.append(
            RateLimitPolicyItem(
                policy,
                quota,
                window if window else None,
                str(unit) if isinstance(unit, str) else "requests",
                pk if isinstance(pk, bytes) else None,
            )
        )
    return items


def seconds_until_quota(items: Iterable[RateLimitItem]) -> float | None:
    """How long a client must wait before any request fits: the longest `t` among the
    policies with no quota left (`r=0`), or None when quota remains (or no `t` is given)."""
    wait: float | None = None
    for item in items:
        if item.remaining == 0 and item.reset is not None:
            wait = item.reset if wait is None else max(wait, item.reset)
    return wait


def parse_retry_after(value: str | bytes, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value, or None when it makes no sense.

    Args:
        value: delay-seconds (`"120"`; a decimal fraction is tolerated) or an HTTP-date.
        now: the current wall-clock time, in seconds since the epoch (`time.time()`),
            against which an HTTP-date is read.

    Negative, malformed and non-finite values are None; a date in the past is 0.0. Huge
    values are returned as they are: the caller caps them.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT; parsedate leaves "-0000" naive
        return None
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None


def _item(name: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (name, {key: value for key, value in params.items() if value is not None})


def _serialise(members: list[tuple[str, dict[str, Any]]]) -> str:
    if not members:
        raise ValueError("items must hold at least one item: an empty field is not sent")
    return str(_http_sf().ser(members))


def format_ratelimit(items: Iterable[RateLimitItem]) -> str:
    """A `RateLimit` field value: `"default";r=50;t=30`.

    Examples:
        >>> format_ratelimit([RateLimitItem("default", 0, 12)])
        '"default";r=0;t=12'
    """
    return _serialise(
        [_item(i.policy, {"r": i.remaining, "t": i.reset, "pk": i.partition_key}) for i in items]
    )


def format_ratelimit_policy(items: Iterable[RateLimitPolicyItem]) -> str:
    """A `RateLimit-Policy` field value: `"default";q=100;w=60`.

    Examples:
        >>> format_ratelimit_policy([RateLimitPolicyItem("default", 100, 60)])
        '"default";q=100;w=60'
    """
    members = [
        _item(
            i.policy,
            {
                "q": i.quota,
                "qu": None if i.quota_unit == "requests" else i.quota_unit,
                "w": i.window,
                "pk": i.partition_key,
            },
        )
        for i in items
    ]
    return _serialise(members)


def format_retry_after(seconds: float) -> str:
    """A `Retry-After` value in delay-seconds, rounded up so a client never comes early.

    Examples:
        >>> format_retry_after(1.2)
        '2'
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    return str(math.ceil(seconds))


def format_http_date(timestamp: float) -> str:
    """An HTTP-date (IMF-fixdate) for a wall-clock `timestamp`, for `Retry-After`."""
    return format_datetime(datetime.fromtimestamp(timestamp, UTC), usegmt=True)


class RateLimitWriter:
    """Writes `RateLimit` values for a fixed list of policies, on a server's hot path.

    http-sf serialises each policy's item once, with its name and parameter keys, when the
    writer is built; a value is then that structure with the Integers `r` and `t` filled in
    (an Integer is its decimal digits, RFC 9651 §4.1.4), clamped to `MAX_INTEGER`. It is the
    same text `format_ratelimit` writes, at the cost of a string join instead of a full
    serialisation per response.

    Args:
        policies: the policy names, in the order their items are written.

    Examples:
        >>> writer = RateLimitWriter(["burst", "daily"])
        >>> writer.format([(4, 1), (9999, 9)])
        '"burst";r=4;t=1, "daily";r=9999;t=9'
        >>> writer.format([(0, 12)]) == format_ratelimit([RateLimitItem("burst", 0, 12)])
        True
    """

    __slots__ = ("_heads",)

    def __init__(self, policies: Iterable[str]) -> None:
        heads = []
        for name in policies:
            text = _serialise([_item(name, {"r": 0, "t": 0})])
            # http-sf wrote the name (a String, escaped as it must be) and the keys in order.
            if not text.endswith(";r=0;t=0"):  # pragma: no cover - a change in http-sf
                raise RuntimeError(f"unexpected serialisation of a RateLimit item: {text!r}")
            heads.append(text[: -len("0;t=0")])
        if not heads:
            raise ValueError("policies must name at least one policy")
        self._heads = tuple(heads)

    def format(self, items: Iterable[tuple[int, int]]) -> str:
        """The field value for `(r, t)` of the first policies, in order (non-negative
        whole numbers; larger than `MAX_INTEGER` is written as `MAX_INTEGER`)."""
        heads = self._heads
        parts = []
        for index, (r, t) in enumerate(items):
            if r > MAX_INTEGER:
                r = MAX_INTEGER
            if t > MAX_INTEGER:
                t = MAX_INTEGER
            parts.append(f"{heads[index]}{r};t={t}")
        return ", ".join(parts)
