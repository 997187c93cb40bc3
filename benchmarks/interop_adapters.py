"""What the tenacity and pybreaker adapters cost, next to the libraries they adapt.

Usage (from the repository root):

    python benchmarks/interop_adapters.py           # both groups
    python benchmarks/interop_adapters.py --quick   # a short run

Not part of `run.py`'s groups: it measures adapters against the libraries they adapt, not
against peers.

- pybreaker: a call that succeeds through a closed breaker: pybreaker's own async face
  (`with breaker.calling():` around the await), `PyBreakerPolicy` around the same kind of
  breaker, and resilient's own `CircuitBreaker` for scale.
- tenacity: a call that fails once and then succeeds, so each call makes one retry with no
  wait: tenacity's `AsyncRetrying`, `Retry` with the same tenacity strategies in a
  `TenacityBackoff`, and `Retry` with its own `Backoff`.
"""

from __future__ import annotations

import argparse

from _harness import BARE, Case, Group, Runner, Settings, bare, calls, markdown_table, run_group


def _pybreaker_calling() -> Runner:
    import pybreaker

    breaker = pybreaker.CircuitBreaker()

    async def call() -> int:
        with breaker.calling():
            return await bare()

    return calls(call)


def _pybreaker_policy() -> Runner:
    import pybreaker

    from resilient.interop.pybreaker import PyBreakerPolicy

    return calls(PyBreakerPolicy(pybreaker.CircuitBreaker())(bare))


def _own_breaker() -> Runner:
    from resilient import CircuitBreaker

    return calls(CircuitBreaker()(bare))


class _FailsEveryOther:
    """Fails on every other call: each retried call fails once, then succeeds."""

    def __init__(self) -> None:
        self.fail = False

    async def __call__(self) -> int:
        self.fail = not self.fail
        if self.fail:
            raise ConnectionError("refused")
        return await bare()


def _tenacity() -> Runner:
    import tenacity

    retrying = tenacity.AsyncRetrying(
        wait=tenacity.wait_none(), stop=tenacity.stop_after_attempt(3), reraise=True
    )
    return calls(retrying.wraps(_FailsEveryOther()))


def _retry_tenacity_backoff() -> Runner:
    import tenacity

    from resilient import Retry
    from resilient.interop.tenacity import TenacityBackoff

    backoff = TenacityBackoff(tenacity.wait_none(), stop=tenacity.stop_after_attempt(3))
    return calls(Retry(attempts=3, backoff=backoff, budget=None)(_FailsEveryOther()))


def _retry_own_backoff() -> Runner:
    from resilient import Backoff, Retry

    backoff = Backoff(initial=0.0, max_delay=0.0, jitter="none")
    return calls(Retry(attempts=3, backoff=backoff, budget=None)(_FailsEveryOther()))


def groups() -> list[Group]:
    calling = "pybreaker `with breaker.calling():`"
    retrying = "tenacity AsyncRetrying(wait_none(), stop_after_attempt(3))"
    return [
        Group(
            key="interop_pybreaker",
            title="PyBreakerPolicy against pybreaker's own async face (closed, success)",
            cases=[
                Case(BARE, lambda: calls(bare)),
                Case(calling, _pybreaker_calling),
                Case("PyBreakerPolicy(breaker)", _pybreaker_policy, ours=True),
                Case("resilient CircuitBreaker()", _own_breaker, ours=True),
            ],
            reference=(calling,),
            goals=[],
        ),
        Group(
            key="interop_tenacity",
            title="TenacityBackoff against tenacity (one failure, one retry, no wait)",
            cases=[
                Case(BARE, lambda: calls(bare)),
                Case(retrying, _tenacity),
                Case(
                    "Retry(backoff=TenacityBackoff(wait_none(), stop=stop_after_attempt(3)))",
                    _retry_tenacity_backoff,
                    ours=True,
                ),
                Case("Retry(backoff=Backoff(0, jitter='none'))", _retry_own_backoff, ours=True),
            ],
            reference=(retrying,),
            goals=[],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    settings = Settings.quick_run() if args.quick else Settings.full()
    failed = False
    for group in groups():
        result = run_group(group, settings)
        print(f"### {result.title}\n")
        print(markdown_table(result.headers, result.rows))
        for line in result.skipped + result.notes:
            print(line)
        print()
        failed = failed or result.failed
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
