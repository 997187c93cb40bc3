"""Group 7, Fallback: resilient.Fallback against nopanic's fallback, on a call that succeeds
and on a call that fails every time."""

from __future__ import annotations

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

NOPANIC_OK = "nopanic @fallback(0), call succeeds"
OURS_OK = "Fallback(value=0) decorator, call succeeds"
CAUGHT = "bare `try: await g()` / `except Exception`, g raises"
NOPANIC_FAILS = "nopanic @fallback(0), call fails"
OURS_FAILS = "Fallback(value=0) decorator, call fails"


async def failing() -> int:
    # A new exception each time: raising one instance again would grow its traceback.
    raise ConnectionError("down")


def _caught() -> Runner:
    async def run(n: int) -> None:
        for _ in range(n):
            try:
                await failing()
            except Exception:
                pass

    return run


def _nopanic(*, fails: bool) -> Runner:
    from nopanic import fallback

    return calls(fallback(0)(failing if fails else bare))


def _ours(*, fails: bool) -> Runner:
    from resilient import Fallback

    return calls(Fallback(value=0)(failing if fails else bare))


GROUP = Group(
    key="fallback",
    title="Fallback",
    intro="A substitute value of 0. On success the added cost is over the bare call; on a "
    "call that raises `ConnectionError` every time, it is over the same call caught by a "
    "hand-written `try`/`except`, so that the cost of raising is left out. Neither library "
    "has a block form for a fallback (a block cannot return a substitute value).",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(NOPANIC_OK, lambda: _nopanic(fails=False)),
        Case(OURS_OK, lambda: _ours(fails=False), ours=True),
        Case(CAUGHT, _caught, base=CAUGHT),
        Case(NOPANIC_FAILS, lambda: _nopanic(fails=True), base=CAUGHT, reference=(NOPANIC_FAILS,)),
        Case(
            OURS_FAILS,
            lambda: _ours(fails=True),
            ours=True,
            base=CAUGHT,
            reference=(NOPANIC_FAILS,),
        ),
    ],
    reference=(NOPANIC_OK,),
    reference_label="nopanic (same outcome)",
    goals=[
        Goal(OURS_OK, (NOPANIC_OK,), 1.0, "Fallback decorator, call succeeds <= 1.0x nopanic"),
        Goal(OURS_FAILS, (NOPANIC_FAILS,), 1.0, "Fallback decorator, call fails <= 1.0x nopanic"),
    ],
)
