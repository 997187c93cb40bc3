"""Pipeline: policies composed in order, the first one outermost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from resilient._policy import Policy
from resilient._validate import check_bool, check_name, short_repr
from resilient.telemetry._core import PolicyTelemetry, outcome_of

__all__ = ("Pipeline",)

T = TypeVar("T")


class Pipeline(Policy):
    """Run a call through several policies; the first one given is the outermost.

    Args:
        *policies: the policies, outermost first (at least one).
        name: names the pipeline in telemetry (default `"pipeline"`).
        telemetry: `False` silences the pipeline's own span (its policies keep theirs).

    Order matters, so a pipeline is an ordered list rather than an operator: a `Timeout`
    outside a `Retry` bounds all attempts together, one inside bounds each attempt.

    Examples:
        ```python
        standard = Pipeline(
            RateLimiter(100),            # admit at most 100 calls/s
            Timeout(30),                 # total time for every attempt
            Retry(attempts=3),           # retry transient failures, within a budget
            CircuitBreaker(),            # stop calling a dependency that keeps failing
            Timeout(10),                 # time limit for each attempt
        )

        @standard
        async def get_user(user_id: int) -> User: ...
        ```
    """

    __slots__ = ("_policies", "_telemetry", "name")

    def __init__(self, *policies: Policy, name: str | None = None, telemetry: bool = True) -> None:
        if not policies:
            raise ValueError("policies must name at least one policy, got none")
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise ValueError(
                    f"policies[{index}] must be a resilient policy or Pipeline, "
                    f"got {short_repr(policy)}"
                )
        self.name = check_name(name, "pipeline")
        self._policies = policies
        self._telemetry = PolicyTelemetry(
            "pipeline", self.name, enabled=check_bool("telemetry", telemetry)
        )

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies, outermost first."""
        return self._policies

    def __repr__(self) -> str:
        inner = ", ".join(repr(policy) for policy in self._policies)
        return f"Pipeline({inner}, name={self.name!r})"

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        # The chain is built once per decorated function: each stage wraps the one inside
        # it, the innermost wraps `fn`.
        target: Callable[..., Coroutine[Any, Any, T]] = fn  # type: ignore[assignment]  # any awaitable callable; only the outermost's type is returned
        for policy in reversed(self._policies):
            target = policy._bind(target)
        outer, start = target, self._telemetry.start

        async def piped(*args: Any, **kwargs: Any) -> T:
            record = start()
            if record is None:
                return await outer(*args, **kwargs)
            try:
                result = await outer(*args, **kwargs)
            except BaseException as exc:
                record.end(outcome_of(exc), exc)
                raise
            record.end("success")
            return result

        return piped
