"""Group 1, Retry: resilient.Retry against tenacity, stamina, backoff and nopanic, first call
succeeding."""

from __future__ import annotations

from _harness import BARE, Case, Goal, Group, Runner, bare, calls

TENACITY = "tenacity @retry(stop=stop_after_attempt(3))"
STAMINA = "stamina @retry(on=Exception, attempts=3)"
BACKOFF = "backoff @on_exception(expo, Exception, max_tries=3)"
NOPANIC = "nopanic @retry() (3 attempts)"
NOPANIC_BUDGET = "nopanic @retry(budget=RetryBudget()) (3 attempts)"
OURS_DECORATOR = "Retry() decorator"
OURS_CALL = "retry.call(f)"
OURS_NO_BUDGET = "Retry(budget=None) decorator"


def _tenacity() -> Runner:
    from tenacity import retry, stop_after_attempt

    return calls(retry(stop=stop_after_attempt(3))(bare))


def _stamina() -> Runner:
    import stamina

    return calls(stamina.retry(on=Exception, attempts=3)(bare))


def _backoff() -> Runner:
    import backoff

    return calls(backoff.on_exception(backoff.expo, Exception, max_tries=3)(bare))


def _nopanic() -> Runner:
    from nopanic import retry

    return calls(retry()(bare))


def _nopanic_budget() -> Runner:
    from nopanic import RetryBudget, retry

    # Like for like with `Retry()`: a retry that counts every call in a budget.
    return calls(retry(budget=RetryBudget())(bare))


def _ours_decorator() -> Runner:
    from resilient import Retry

    return calls(Retry()(bare))


def _ours_no_budget() -> Runner:
    from resilient import Retry

    # For scale: what the default retry budget's bookkeeping costs per call.
    return calls(Retry(budget=None)(bare))


def _ours_call() -> Runner:
    from resilient import Retry

    retry = Retry()

    async def run(n: int) -> None:
        for _ in range(n):
            await retry.call(bare)

    return run


GROUP = Group(
    key="retry",
    title="Retry",
    intro="Three attempts at most, the first one succeeds; every library with its defaults "
    "otherwise (resilient's `Retry()` keeps its default retry budget, which counts each call; "
    "nopanic's `retry()` has no budget unless given one, so it is shown both ways). What "
    "`Retry()` adds over nopanic's budget-less `retry()` is its per-call work that nopanic "
    "does not do: the telemetry check, one clock read for the budget's time bucket and "
    "`max_duration`, the budget's count, and the call statistics.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(TENACITY, _tenacity),
        Case(STAMINA, _stamina),
        Case(BACKOFF, _backoff),
        Case(NOPANIC, _nopanic),
        Case(NOPANIC_BUDGET, _nopanic_budget),
        Case(OURS_DECORATOR, _ours_decorator, ours=True),
        Case(OURS_CALL, _ours_call, ours=True),
        Case(OURS_NO_BUDGET, _ours_no_budget, ours=True),
    ],
    reference=(BACKOFF,),
    reference_label="backoff",
    goals=[
        Goal(OURS_DECORATOR, (BACKOFF,), 0.25, "Retry decorator <= 0.25x backoff"),
        Goal(
            OURS_DECORATOR,
            (NOPANIC,),
            1.0,
            "`Retry()` (default budget) decorator <= 1.0x nopanic retry",
        ),
        Goal(
            OURS_DECORATOR,
            (NOPANIC_BUDGET,),
            1.0,
            "`Retry()` (default budget) decorator <= 1.0x nopanic retry with its budget",
        ),
    ],
)
