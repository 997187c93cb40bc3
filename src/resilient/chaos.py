"""Chaos: fault injection (Polly's Simmy) to prove a stack survives before an outage does.

With probability `rate`, a call through `Chaos` is *injected*: it waits `latency`, then
raises `fault` or returns `result` instead of running, or (latency alone) runs late.
`enabled` and `rate` are read on every call, so a flag, an environment switch or a
feature-flag service turns chaos on and off while the service runs.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

from resilient._clock import Clock
from resilient._policy import Policy
from resilient._validate import (
    check_bool,
    check_clock,
    check_name,
    check_optional_positive,
    check_ratio,
    short_repr,
)
from resilient.telemetry._core import QUIET, CallRecord, PolicyTelemetry, outcome_of
from resilient.telemetry._spec import Effect, EventSpec, Instrument

__all__ = ("Chaos",)

T = TypeVar("T")

ATTR_INJECTED: Final = "resilient.chaos.injected"
ATTR_KIND: Final = "resilient.chaos.kind"
ATTR_LATENCY: Final = "resilient.chaos.latency"

# -- what Chaos reports (telemetry as data; see resilient.telemetry) -------------------------

INJECTIONS: Final = Instrument(
    "resilient.chaos.injections",
    "counter",
    "{call}",
    "Calls into which Chaos injected a fault, latency or result.",
)
#: Chaos injected into this call: `resilient.chaos.kind` says what ("latency", "fault",
#: "result", or several joined by "+"), `resilient.chaos.latency` the injected seconds.
INJECTED: Final = EventSpec(
    "resilient.chaos.injected",
    effects=(Effect(INJECTIONS, 1, ((ATTR_KIND, ATTR_KIND),)),),
)


class _NoResult:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no result>"


#: The default of `Chaos(result=...)`: inject no result.
NO_RESULT: Final = _NoResult()

Fault = BaseException | Callable[[], BaseException]


def _check_fault(fault: Any) -> Callable[[], Exception] | None:
    """`fault` as a function that makes the exception to raise, or None."""
    if fault is None:
        return None
    if isinstance(fault, Exception):
        instance = fault

        def same() -> Exception:
            return instance

        return same
    if isinstance(fault, type) and issubclass(fault, Exception):
        return fault
    if callable(fault) and not isinstance(fault, type | BaseException):

        def made() -> Exception:
            error = fault()
            if not isinstance(error, Exception):
                raise TypeError(
                    f"Chaos fault factory must return an Exception, got {short_repr(error)}"
                )
            return error

        return made
    raise ValueError(
        "fault must be None, an Exception instance, an Exception subclass or a factory "
        f"() -> Exception, got {short_repr(fault)}"
    )


def _check_rate(value: Any) -> float | Callable[[], float]:
    if callable(value) and not isinstance(value, bool | int | float):
        return value  # type: ignore[no-any-return]  # checked when read, on each call
    return check_ratio("rate", value)


def _check_enabled(value: Any) -> bool | Callable[[], bool]:
    if isinstance(value, bool):
        return value
    if callable(value):
        return value  # type: ignore[no-any-return]  # read on each call
    raise ValueError(
        f"enabled must be True, False or a callable () -> bool, got {short_repr(value)}"
    )


class Chaos(Policy):
    """Inject faults, latency or results into a fraction of calls, switchable at run time.

    Args:
        fault: what an injected call raises: an `Exception` instance (raised as is), an
            `Exception` subclass (instantiated with no arguments) or a factory
            `() -> Exception` (default `None`: no fault).
        latency: seconds an injected call waits, on the policy's clock, before it raises
            `fault`, returns `result` or runs (a finite number > 0; default `None`: no
            delay). The wait is cancelled with the call, and an enclosing `Timeout`
            bounds it like anything else.
        result: what an injected call returns instead of running (any value, `None`
            included; default: no result). Give at least one of `fault`, `latency` and
            `result`, in any combination; with both `fault` and `result`, an injected
            call raises the fault or returns the result, each half of the time.
        rate: the probability that a call is injected, in [0, 1] (default 0.001, one
            call in a thousand), or a callable `() -> float` read on every call.
        enabled: `True`, `False`, or a callable `() -> bool` read on every call (default
            `True`), so an environment switch or a feature flag starts and stops a game
            day without a redeploy. `rate` and `enabled` may also be assigned while
            the service runs.
        name: names the policy in telemetry (default `"chaos"`).
        clock: the time source of `latency` (default: the monotonic clock).
        rng: the `random.Random` the injections are drawn from (default: a new unseeded
            one); a seeded one makes a game day reproducible.
        telemetry: `False` silences this policy's spans and metrics.

    Every injected call is marked in telemetry so it is never mistaken for a real outcome:
    its `resilient.chaos` span carries `resilient.chaos.injected = true` and a
    `resilient.chaos.injected` event (with `resilient.chaos.kind`), and the
    `resilient.chaos.injections` counter counts it. A call that was not injected runs
    untouched.

    Examples:
        ```python
        chaos = Chaos(fault=ConnectionResetError, rate=0.05,
                      enabled=lambda: os.environ.get("GAME_DAY") == "1")

        slow = Chaos(latency=2.0, rate=0.1)
        cached = Chaos(result={"status": "degraded"}, rate=0.5)

        @Pipeline(Retry(), chaos)
        async def charge(order_id: int) -> None: ...
        ```
    """

    __slots__ = (
        "_clock",
        "_enabled",
        "_make_fault",
        "_random",
        "_rate",
        "_telemetry",
        "fault",
        "latency",
        "name",
        "result",
    )

    def __init__(
        self,
        *,
        fault: Fault | None = None,
        latency: float | None = None,
        result: Any = NO_RESULT,
        rate: float | Callable[[], float] = 0.001,
        enabled: bool | Callable[[], bool] = True,
        rng: random.Random | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        telemetry: bool = True,
    ) -> None:
        self._make_fault = _check_fault(fault)
        self.fault = fault
        self.latency = check_optional_positive("latency", latency)
        self.result = result
        if fault is None and latency is None and result is NO_RESULT:
            raise ValueError(
                "give at least one of fault, latency and result: Chaos has nothing to inject"
            )
        self._rate = _check_rate(rate)
        self._enabled = _check_enabled(enabled)
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise ValueError(f"rng must be a random.Random or None, got {short_repr(rng)}")
        self._random = rng.random
        self.name = check_name(name, "chaos")
        self._clock = check_clock(clock)
        self._telemetry = PolicyTelemetry(
            "chaos", self.name, enabled=check_bool("telemetry", telemetry)
        )

    def __repr__(self) -> str:
        parts = []
        if self.fault is not None:
            parts.append(f"fault={self.fault!r}")
        if self.latency is not None:
            parts.append(f"latency={self.latency!r}")
        if self.result is not NO_RESULT:
            parts.append(f"result={self.result!r}")
        parts.append(f"rate={self._rate!r}, enabled={self._enabled!r}, name={self.name!r}")
        return f"Chaos({', '.join(parts)})"

    @property
    def rate(self) -> float | Callable[[], float]:
        """The injection probability, or the callable that gives it on each call.

        Examples:
            >>> chaos = Chaos(fault=ConnectionError)
            >>> chaos.rate = 0.5
            >>> chaos.rate
            0.5
        """
        return self._rate

    @rate.setter
    def rate(self, value: float | Callable[[], float]) -> None:
        self._rate = _check_rate(value)

    @property
    def enabled(self) -> bool | Callable[[], bool]:
        """`True`, `False`, or the callable read on each call.

        Examples:
            >>> chaos = Chaos(latency=0.5)
            >>> chaos.enabled = False
        """
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool | Callable[[], bool]) -> None:
        self._enabled = _check_enabled(value)

    def _injects(self) -> bool:
        """Draw whether this call is injected: `enabled` and `rate`, read now."""
        enabled = self._enabled
        if enabled is False or (enabled is not True and not enabled()):
            return False
        rate = self._rate
        if not isinstance(rate, float):
            rate = rate()
            if (
                not isinstance(rate, int | float)
                or isinstance(rate, bool)
                or not 0.0 <= rate <= 1.0
            ):
                raise ValueError(f"rate must return a number in [0, 1], got {short_repr(rate)}")
        return rate > 0.0 and self._random() < rate

    def _bind(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        start, injects, inject = self._telemetry.start, self._injects, self._inject

        async def chaotic(*args: Any, **kwargs: Any) -> T:
            record = start()
            if record is None:
                if not injects():
                    return await fn(*args, **kwargs)
                return await inject(QUIET, fn, args, kwargs)
            try:
                injected = injects()
            except BaseException as exc:
                record.end(outcome_of(exc), exc)
                raise
            if injected:
                return await inject(record, fn, args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                record.end(outcome_of(exc), exc)
                raise
            record.end("success")
            return result

        return chaotic

    async def _inject(
        self,
        record: CallRecord,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """Run one injected call: the latency, then the fault, the result or the call."""
        latency = self.latency
        make_fault = self._make_fault
        has_result = self.result is not NO_RESULT
        if make_fault is not None and has_result and self._random() < 0.5:
            make_fault = None  # both given: this time, the result
        elif make_fault is not None:
            has_result = False
        kinds = [] if latency is None else ["latency"]
        if make_fault is not None:
            kinds.append("fault")
        elif has_result:
            kinds.append("result")
        record.set(ATTR_INJECTED, True)
        attributes: dict[str, Any] = {ATTR_KIND: "+".join(kinds)}
        if latency is not None:
            attributes[ATTR_LATENCY] = latency
        record.event(INJECTED, attributes)
        try:
            if latency is not None:
                await self._clock.sleep(latency)
            error = None if make_fault is None else make_fault()
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise
        if error is not None:
            record.end("injected", error)
            raise error
        if has_result:
            record.end("injected")
            injected: T = self.result
            return injected
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            record.end(outcome_of(exc), exc)
            raise
        record.end("success")
        return result
