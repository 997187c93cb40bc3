"""GCRA, the generic cell rate algorithm: a token bucket kept as one number per key.

Pure arithmetic, no I/O and no clock of its own: every function takes `now`. It sits below
both the rate limiter and the stores (imports run one way: policies, then stores, then this),
and stores run exactly this decision next to the state they keep. `admit` is the whole
decision, in the units a caller computes once; `decide` adds waits, reservations and the
numbers a caller reports.

A key's whole state is its *theoretical arrival time* `tat`: the moment the bucket would be
full again. With the emission interval `T = per / rate` (the time one permit takes to come
back) and a bucket of `burst` permits, a request for `cost` permits at `now` is admitted when

    max(tat, now) + cost * T - now <= burst * T

and then `tat` becomes `max(tat, now) + cost * T`. A `tat` in the past is the same as no
state at all (a full bucket), so a store may forget such a key without changing any decision.

A request that would have to wait `w > 0` seconds is rejected, with `retry_after = w`, unless
the caller accepts a wait of up to `max_wait` seconds: then `tat` advances at once (the permit
is reserved, later requests queue behind it) and the caller sleeps `w` before going ahead.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

__all__ = ("EPSILON", "Decision", "admit", "decide", "refund", "remaining")

#: Slack, in seconds, for float rounding: `10 * 0.1` is not exactly `1.0`, and a request that
#: is due "exactly now" must not be rejected for a wait of 1e-16 s.
EPSILON: Final = 1e-9


class Decision(NamedTuple):
    """What a store decided about one request for permits.

    Attributes:
        allowed: `True` when the permits were granted (possibly after `wait`).
        wait: when allowed, seconds the caller must wait before going ahead (0.0: go now).
        retry_after: when rejected, seconds until the same request would be admitted
            without waiting; 0.0 when allowed.
        remaining: whole permits left in the bucket right after the decision.
        tat: the key's theoretical arrival time after the decision, on the store's clock.
            A reservation passes it back to `Store.refund` to prove it is still the latest.

    Examples:
        >>> decide(None, 0.0, emission_interval=0.1, burst=10, cost=1, max_wait=0.0)
        Decision(allowed=True, wait=0.0, retry_after=0.0, remaining=9, tat=0.1)
    """

    allowed: bool
    wait: float
    retry_after: float
    remaining: int
    tat: float


def remaining(tat: float | None, now: float, *, emission_interval: float, burst: int) -> int:
    """Whole permits a request could take at `now` without waiting.

    Examples:
        >>> remaining(0.35, 0.0, emission_interval=0.1, burst=10)
        6
    """
    if tat is None or tat <= now:
        return burst
    left = burst - (tat - now) / emission_interval
    return max(0, math.floor(left + EPSILON / emission_interval))


def admit(tat: float | None, now: float, increment: float, capacity: float) -> tuple[float, float]:
    """The GCRA step: `(new_tat, wait)` for a request of `increment` seconds of permits
    (`cost * emission_interval`) on a bucket of `capacity` seconds (`burst *
    emission_interval`). The request fits now when `wait <= EPSILON`; `new_tat` is then the
    key's new state.

    Examples:
        >>> admit(None, 0.0, 0.25, 1.0)
        (0.25, -0.75)
        >>> admit(1.0, 0.0, 0.25, 1.0)
        (1.25, 0.25)
    """
    new_tat = (now if tat is None or tat < now else tat) + increment
    return new_tat, new_tat - capacity - now


def decide(
    tat: float | None,
    now: float,
    *,
    emission_interval: float,
    burst: int,
    cost: int,
    max_wait: float,
) -> Decision:
    """Admit, delay or reject a request for `cost` permits at `now`.

    Args:
        tat: the key's theoretical arrival time, or `None` for a key with no state.
        now: the current time on the store's clock, in seconds.
        emission_interval: `per / rate`, in seconds per permit.
        burst: the bucket size, in permits.
        cost: permits the request takes.
        max_wait: seconds the caller accepts to wait for them (0: admit now or reject).

    Examples:
        >>> decide(1.0, 0.0, emission_interval=0.25, burst=4, cost=1, max_wait=0.0)
        Decision(allowed=False, wait=0.0, retry_after=0.25, remaining=0, tat=1.0)
        >>> decide(1.0, 0.0, emission_interval=0.25, burst=4, cost=1, max_wait=0.5)
        Decision(allowed=True, wait=0.25, retry_after=0.0, remaining=0, tat=1.25)
    """
    new_tat, wait = admit(tat, now, cost * emission_interval, burst * emission_interval)
    if wait > max_wait + EPSILON:
        left = remaining(tat, now, emission_interval=emission_interval, burst=burst)
        return Decision(False, 0.0, wait, left, now if tat is None else tat)
    left = remaining(new_tat, now, emission_interval=emission_interval, burst=burst)
    return Decision(True, wait if wait > EPSILON else 0.0, 0.0, left, new_tat)


def refund(
    stored: float | None, receipt: float, now: float, *, emission_interval: float, cost: int
) -> tuple[bool, float | None]:
    """Give back a reservation of `cost` permits whose decision returned `tat == receipt`.

    Only the latest reservation of a key can be given back (`stored == receipt`): rolling
    back an older one would let a newcomer in ahead of callers already waiting behind it, so
    it is kept and simply expires. Returns `(refunded, new_tat)`; `new_tat` is `None` when
    the key is back to a full bucket and may be forgotten.

    Examples:
        >>> refund(0.5, 0.5, 0.0, emission_interval=0.1, cost=2)
        (True, 0.3)
    """
    if stored is None or stored != receipt:
        return False, stored
    restored = stored - cost * emission_interval
    return True, (restored if restored > now + EPSILON else None)
