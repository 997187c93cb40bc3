"""Group 9, Hedge, AdaptiveThrottle and Chaos on the happy path: what each adds to a call
that answers at once, against nopanic's hedge (nopanic has no adaptive throttle in the
SRE sense and no fault injection) and the bare call."""

from __future__ import annotations

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

NOPANIC_HEDGE = "nopanic @hedge(delay=0.05)"
OURS_HEDGE = "Hedge(0.05) decorator"
OURS_ADAPTIVE = "Hedge() decorator, adaptive delay (warmed up)"
OURS_THROTTLE = "AdaptiveThrottle() decorator, upstream healthy"
OURS_CHAOS_OFF = "Chaos(fault=..., enabled=False) decorator"
OURS_CHAOS_ZERO = "Chaos(fault=..., rate=0.0) decorator"


def _nopanic_hedge() -> Runner:
    from nopanic import hedge

    return calls(hedge(delay=0.05)(bare))


def _ours_hedge() -> Runner:
    from resilient import Hedge

    return calls(Hedge(0.05)(bare))


async def _ours_adaptive() -> Runner:
    from resilient import Hedge

    hedged = Hedge()(bare)
    for _ in range(100):  # measure enough latencies to hedge at all
        await hedged()
    return calls(hedged)


def _ours_throttle() -> Runner:
    from resilient import AdaptiveThrottle

    return calls(AdaptiveThrottle()(bare))


def _ours_chaos(**kwargs: object) -> Runner:
    from resilient import Chaos

    return calls(Chaos(fault=ConnectionError, **kwargs)(bare))  # type: ignore[arg-type]


GROUP = Group(
    key="hedge",
    title="Hedge, adaptive throttle and chaos (happy path)",
    intro="A call that answers at once, so no hedge ever starts, the throttle never refuses "
    "and chaos never injects: the cost each policy adds to every call. nopanic's hedge "
    "starts a task per call and waits on it with `asyncio.wait`; resilient's runs the "
    "primary attempt inline and arms one shared timer line, so a call answered in time "
    "costs no task.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(NOPANIC_HEDGE, _nopanic_hedge),
        Case(OURS_HEDGE, _ours_hedge, ours=True),
        Case(OURS_ADAPTIVE, _ours_adaptive, ours=True),
        Case(OURS_THROTTLE, _ours_throttle, ours=True),
        Case(OURS_CHAOS_OFF, lambda: _ours_chaos(enabled=False), ours=True),
        Case(OURS_CHAOS_ZERO, lambda: _ours_chaos(rate=0.0), ours=True),
    ],
    reference=(NOPANIC_HEDGE,),
    reference_label="nopanic hedge",
    goals=[
        Goal(OURS_HEDGE, (NOPANIC_HEDGE,), 1.0, "Hedge decorator <= 1.0x nopanic's hedge"),
        Goal(
            OURS_ADAPTIVE, (NOPANIC_HEDGE,), 1.0, "adaptive Hedge decorator <= 1.0x nopanic's hedge"
        ),
    ],
)
