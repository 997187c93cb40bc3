"""The RateLimit, RateLimit-Policy and Retry-After codec: what parses, what is ignored."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient._ratelimit_fields import (
    MAX_INTEGER,
    RateLimitItem,
    RateLimitPolicyItem,
    RateLimitWriter,
    format_http_date,
    format_ratelimit,
    format_ratelimit_policy,
    format_retry_after,
    parse_ratelimit,
    parse_ratelimit_policy,
    parse_retry_after,
    seconds_until_quota,
)

NAMES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
COUNTS = st.integers(min_value=0, max_value=999_999_999_999_999)


def test_a_list_of_policies_parses_item_by_item() -> None:
    items = parse_ratelimit('"burst";r=0;t=12, "day";r=900;t=3600')
    assert items == [RateLimitItem("burst", 0, 12), RateLimitItem("day", 900, 3600)]
    assert seconds_until_quota(items) == 12


def test_the_longest_reset_among_exhausted_policies_is_the_wait() -> None:
    items = parse_ratelimit('"a";r=0;t=5, "b";r=0;t=50, "c";r=1;t=500')
    assert seconds_until_quota(items) == 50
    assert seconds_until_quota(parse_ratelimit('"a";r=3;t=5')) is None
    assert seconds_until_quota(parse_ratelimit('"a";r=0')) is None


def test_hostile_items_are_left_out_and_unknown_parameters_ignored() -> None:
    value = '"neg";r=-1;t=5, "frac";r=0;t=1.5, tok;r=0;t=1, ("inner");r=0, "ok";r=0;t=2;zz=?1'
    assert parse_ratelimit(value) == [RateLimitItem("frac", 0, None), RateLimitItem("ok", 0, 2)]


def test_a_field_that_does_not_parse_is_empty() -> None:
    for value in ['"a";r=10000000000000000', "r=0, t=5", '"unterminated;r=0', "x" * 10_000, ""]:
        assert parse_ratelimit(value) == []
        assert parse_ratelimit_policy(value) == []


def test_policies_parse_with_their_quota_unit_and_partition() -> None:
    items = parse_ratelimit_policy('"day";q=1000;w=86400;qu="content-bytes";pk=:AQI=:, "x";w=5')
    assert items == [RateLimitPolicyItem("day", 1000, 86400, "content-bytes", b"\x01\x02")]


def test_retry_after_in_seconds_and_as_a_date() -> None:
    now = time.time()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 3 ", now) == 3.0
    assert parse_retry_after("1.5", now) == 1.5
    assert abs(parse_retry_after(format_http_date(now + 30), now) - 30) <= 1  # type: ignore[operator]
    assert parse_retry_after(format_http_date(now - 30), now) == 0.0
    assert parse_retry_after(b"7", now) == 7.0


def test_malformed_retry_after_is_none() -> None:
    for value in ["-1", "soon", "1e9", "inf", "nan", "", "Wed, 99 Foo 2026 07:28:00 GMT", "9" * 80]:
        assert parse_retry_after(value, time.time()) is None, value


def test_huge_retry_after_is_returned_for_the_caller_to_cap() -> None:
    assert parse_retry_after("9" * 40, 0.0) == float("9" * 40)


def test_writing_the_fields() -> None:
    assert format_ratelimit([RateLimitItem("default", 0, 12)]) == '"default";r=0;t=12'
    assert format_ratelimit_policy([RateLimitPolicyItem("d", 100, 60)]) == '"d";q=100;w=60'
    assert format_retry_after(0.2) == "1"
    assert format_retry_after(0) == "0"
    with pytest.raises(ValueError, match="at least one item"):
        format_ratelimit([])
    with pytest.raises(ValueError, match="seconds"):
        format_retry_after(-1)


@given(st.text(max_size=200))
def test_parsing_never_raises(value: str) -> None:
    parse_ratelimit(value)
    parse_ratelimit_policy(value)
    parse_retry_after(value, time.time())


@given(st.lists(st.tuples(NAMES, COUNTS, st.none() | COUNTS), min_size=1, max_size=5))
def test_ratelimit_round_trips(members: list[tuple[str, int, int | None]]) -> None:
    items = [RateLimitItem(name, r, t) for name, r, t in members]
    assert parse_ratelimit(format_ratelimit(items)) == items


@given(
    st.lists(st.tuples(NAMES, COUNTS, st.none() | st.integers(1, 10**9)), min_size=1, max_size=5)
)
def test_ratelimit_policy_round_trips(members: list[tuple[str, int, int | None]]) -> None:
    items = [RateLimitPolicyItem(name, q, w) for name, q, w in members]
    assert parse_ratelimit_policy(format_ratelimit_policy(items)) == items


# -- the writer a server uses on every response ----------------------------------------------

_names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
_counts = st.integers(min_value=0, max_value=MAX_INTEGER)


@given(st.lists(st.tuples(_names, _counts, _counts), min_size=1, max_size=4))
def test_writer_writes_what_the_codec_writes(items: list[tuple[str, int, int]]) -> None:
    writer = RateLimitWriter([name for name, _, _ in items])
    expected = format_ratelimit([RateLimitItem(name, r, t) for name, r, t in items])
    assert writer.format([(r, t) for _, r, t in items]) == expected
    assert parse_ratelimit(expected) == [RateLimitItem(name, r, t) for name, r, t in items]


def test_writer_writes_the_first_policies_and_clamps_huge_numbers() -> None:
    writer = RateLimitWriter(["a", 'quote"d'])
    assert writer.format([(3, 1)]) == '"a";r=3;t=1'
    assert writer.format([(2**60, 0), (0, 7)]) == (f'"a";r={MAX_INTEGER};t=0, "quote\\"d";r=0;t=7')
    with pytest.raises(ValueError, match="policies must name at least one policy"):
        RateLimitWriter([])
