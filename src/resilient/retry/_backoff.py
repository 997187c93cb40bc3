"""Backoff: how long to wait before each retry. Pure: no clock, no event loop."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal, Protocol, TypeAlias

from resilient._validate import check_non_negative, check_positive, short_repr

__all__ = ("Backoff", "Jitter", "Planner")

#: The jitter strategies `Backoff` offers.
Jitter: TypeAlias = Literal["full", "equal", "decorrelated", "none"]

_JITTERS: Final = ("full", "equal", "decorrelated", "none")
_NONE, _FULL, _EQUAL, _DECORRELATED = range(4)
_JITTER_CODES: Final = {
    "none": _NONE,
    "full": _FULL,
    "equal": _EQUAL,
    "decorrelated": _DECORRELATED,
}


class Planner(Protocol):
    """A backoff that plans each retry itself: `Retry` binds a backoff's `_plan_retry`
    method, when it has one, and asks it instead of `delay()`.

    It is called with the number of attempts made, the previous delay (`None` before the
    first retry), the last attempt's error (or `None` when `on_result` rejected `result`),
    the seconds since the call began and the seconds slept so far. It returns the delay
    before the next attempt, or a text saying why retrying stops (`Retry` adds it to the
    error's note, after "gave up after N attempts").
    """

    def __call__(
        self,
        attempts: int,
        previous: float | None,
        error: BaseException | None,
        result: Any,
        elapsed: float,
        slept: float,
        /,
    ) -> float | str: ...


class Backoff:
    """Exponentially growing, capped, jittered delays between retries (AWS's recipe).

    Args:
        initial: the base delay before the first retry, in seconds (>= 0; default 0.1).
        multiplier: how much the base delay grows with each retry (>= 1; default 2.0).
        max_delay: the cap on any single delay, in seconds (>= `initial`; default 10.0).
        jitter: how the delay is randomised (default `"full"`). With the capped
            exponential `d = min(max_delay, initial * multiplier ** (retry - 1))`:

            - `"full"`: uniform in `[0, d]`; spreads retries best (the default);
            - `"equal"`: `d / 2` plus uniform in `[0, d / 2]`; never shorter than half;
            - `"decorrelated"`: `min(max_delay, uniform(initial, 3 * previous))`, where
              `previous` is the last delay (`initial` before the first retry);
              `multiplier` is not used;
            - `"none"`: exactly `d`; only for tests and single clients.
        rng: the random source (default: the `random` module's shared generator). Pass a
            seeded `random.Random` for repeatable delays.

    A `Backoff` is immutable and holds no per-call state, so one instance can serve any
    number of `Retry` policies and concurrent calls. `iter(backoff)` yields the delay before
    retry 1, 2, 3, ... forever; `Retry` asks `delay()` directly instead.

    Examples:
        >>> import random
        >>> list(zip(range(5), Backoff(initial=0.5, max_delay=3.0, jitter="none")))
        [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (4, 3.0)]
        >>> backoff = Backoff(jitter="equal", rng=random.Random(7))
        >>> 0.05 <= backoff.delay(1) <= 0.1
        True
    """

    __slots__ = (
        "_cap_from",
        "_code",
        "_random",
        "initial",
        "jitter",
        "max_delay",
        "multiplier",
        "rng",
    )

    initial: float
    multiplier: float
    max_delay: float
    jitter: Jitter
    rng: random.Random | None
    _random: Callable[[], float]
    _code: int
    _cap_from: int

    def __init__(
        self,
        initial: float = 0.1,
        multiplier: float = 2.0,
        max_delay: float = 10.0,
        jitter: Jitter = "full",
        *,
        rng: random.Random | None = None,
    ) -> None:
        initial = check_non_negative("initial", initial)
        multiplier = check_positive("multiplier", multiplier)
        if multiplier < 1:
            raise ValueError(
                f"multiplier must be a finite number >= 1, got {short_repr(multiplier)}"
            )
        max_delay = check_non_negative("max_delay", max_delay)
        if max_delay < initial:
            raise ValueError(
                f"max_delay must be >= initial ({initial!r} s), got {short_repr(max_delay)}"
            )
        if jitter not in _JITTERS:
            raise ValueError(
                f"jitter must be one of {', '.join(map(repr, _JITTERS))}, got {short_repr(jitter)}"
            )
        if rng is not None and not isinstance(rng, random.Random):
            raise ValueError(f"rng must be a random.Random or None, got {short_repr(rng)}")
        set_ = object.__setattr__
        set_(self, "initial", initial)
        set_(self, "multiplier", multiplier)
        set_(self, "max_delay", max_delay)
        set_(self, "jitter", jitter)
        set_(self, "rng", rng)
        set_(self, "_random", random.random if rng is None else rng.random)
        set_(self, "_code", _JITTER_CODES[jitter])
        set_(self, "_cap_from", _first_capped_exponent(initial, multiplier, max_delay))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Backoff is immutable; build a new one instead of setting {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Backoff is immutable; cannot delete {name}")

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial!r}, multiplier={self.multiplier!r}, "
            f"max_delay={self.max_delay!r}, jitter={self.jitter!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Backoff):
            return NotImplemented
        return self._key() == other._key() and self.rng is other.rng

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[float, float, float, str]:
        return (self.initial, self.multiplier, self.max_delay, self.jitter)

    def base(self, retry: int) -> float:
        """The capped exponential delay before retry number `retry` (1-based), unjittered.

        Examples:
            >>> Backoff(initial=1.0, max_delay=5.0).base(3)
            4.0
        """
        exponent = retry - 1
        if exponent >= self._cap_from:
            return self.max_delay
        try:
            raw = self.initial * self.multiplier**exponent
        except OverflowError:  # the power overflows before `initial` times it reaches the cap
            return self.max_delay if self.initial else 0.0
        return raw if raw < self.max_delay else self.max_delay

    def delay(self, retry: int, previous: float | None = None) -> float:
        """The delay in seconds before retry number `retry` (1 for the first retry).

        Args:
            retry: which retry this delay precedes, 1-based.
            previous: the delay drawn before the previous retry; only `"decorrelated"`
                jitter uses it (`None` before the first retry).

        Examples:
            >>> Backoff(jitter="none").delay(2)
            0.2
        """
        code = self._code
        if code == _DECORRELATED:
            low = self.initial
            high = 3.0 * (low if previous is None else previous)
            drawn = low + (high - low) * self._random() if high > low else low
            return drawn if drawn < self.max_delay else self.max_delay
        d = self.base(retry)
        if code == _FULL:
            return d * self._random()
        if code == _EQUAL:
            half = d / 2.0
            return half + half * self._random()
        return d

    def __iter__(self) -> Iterator[float]:
        """Yield the delay before retry 1, 2, 3, ... (an endless iterator)."""
        previous: float | None = None
        retry = 1
        while True:
            previous = self.delay(retry, previous)
            yield previous
            retry += 1


def _first_capped_exponent(initial: float, multiplier: float, max_delay: float) -> int:
    """The exponent from which `initial * multiplier ** exponent` certainly reaches
    `max_delay`, so large retry numbers never compute (and overflow) the power."""
    if initial >= max_delay:
        return 0
    if initial == 0.0 or multiplier == 1.0:
        return sys.maxsize
    # Logarithms avoid overflowing max_delay / initial; +1 covers their rounding, and
    # base() still caps with min() below this exponent.
    exact = (math.log(max_delay) - math.log(initial)) / math.log(multiplier)
    return math.ceil(exact) + 1
