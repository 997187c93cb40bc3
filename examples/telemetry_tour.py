"""What resilient's policies do to a flaky service, read back from OpenTelemetry.

Run it with `python examples/telemetry_tour.py`. It needs no service: the "remote" calls
are local functions that fail or stall at random (seeded, so every run tells the same
story), and the OpenTelemetry
SDK keeps the spans in memory. Every table is built from the `resilient.*` spans and their
events only, which is what you would see in your tracing backend.

1. Timeouts, retries and a fallback: Pipeline(Fallback, Timeout(total), Retry, Timeout(attempt)).
2. A circuit breaker opening on a dependency that went down, then closing when it recovers.
3. A rate limiter turning a burst away.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilient import (
    Backoff,
    CircuitBreaker,
    Fallback,
    Pipeline,
    RateLimiter,
    RejectedError,
    Retry,
    Timeout,
)

SEED = 18  # picked so that eight calls show every path: retries, timeouts, fallback
CALLS = 8
TOTAL_TIMEOUT = 0.25  # seconds for one call, every attempt and backoff sleep included
ATTEMPT_TIMEOUT = 0.10  # seconds for one attempt
FAST, SLOW = 0.01, 0.25  # how long the service takes when it answers, and when it stalls

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


class ServiceUnavailable(Exception):
    """The flaky service said no."""


class FlakyService:
    """Answers after FAST seconds; or fails at once (30 %); or stalls for SLOW seconds (20 %)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    async def get_price(self, sku: str) -> str:
        draw = self.rng.random()
        if draw < 0.3:
            raise ServiceUnavailable(sku)
        await asyncio.sleep(SLOW if draw < 0.5 else FAST)
        return "9.99"


# -- reading the spans -----------------------------------------------------------------


def attr(span: ReadableSpan, key: str) -> object:
    return (span.attributes or {}).get(key)


def outcome(span: ReadableSpan) -> str:
    # A policy's span carries resilient.outcome only when the call did not succeed.
    return str((span.attributes or {}).get("resilient.outcome", "success"))


def spans_by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    by_name: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        by_name[span.name].append(span)
    return by_name


def event_values(spans: Sequence[ReadableSpan], event: str, key: str) -> list[object]:
    """The value of `key` on every `event` recorded on `spans`, in order."""
    return [
        (found.attributes or {}).get(key)
        for span in spans
        for found in span.events
        if found.name == event
    ]


def elapsed(spans: Sequence[ReadableSpan]) -> float:
    """Seconds between the start and the end of the outermost span."""
    root = next(span for span in spans if span.parent is None)
    assert root.start_time is not None
    assert root.end_time is not None
    return (root.end_time - root.start_time) / 1e9


async def traced(fn: Callable[[], Awaitable[str]]) -> tuple[str, Sequence[ReadableSpan]]:
    """Run one call and return its result (or the error's name) and the spans it left."""
    exporter.clear()
    try:
        result = await fn()
    except Exception as exc:
        result = type(exc).__name__
    return result, exporter.get_finished_spans()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def ms(seconds: float) -> str:
    return f"{round(seconds, 2) * 1000:.0f} ms"


# -- 1. timeouts, retries and a fallback -----------------------------------------------

RETRY_LEGEND = """
timeouts       attempt: Timeout({attempt}) cut an attempt off and Retry tried again;
               total: Timeout({total}) ended the whole call.
retry outcome  exhausted: every attempt failed; deadline: the next backoff sleep would
               not have ended before the total deadline, so Retry stopped at once;
               cancelled: the total timeout cancelled Retry mid-attempt.
fallback       the Fallback answered 'cached' instead of an error."""


def retry_row(call: int, result: str, spans: Sequence[ReadableSpan]) -> list[str]:
    by_name = spans_by_name(spans)
    retries = by_name["resilient.retry"]
    timeouts = by_name["resilient.timeout"]
    delays = event_values(retries, "resilient.retry.scheduled", "resilient.retry.delay")
    timed_out = [
        attr(span, "resilient.policy.name") for span in timeouts if outcome(span) == "timeout"
    ]
    per_attempt = timed_out.count("attempt")
    cut = [f"{per_attempt} attempt{'s' if per_attempt > 1 else ''}"] if per_attempt else []
    if "total" in timed_out:
        cut.append("total")
    fallback = event_values(by_name["resilient.fallback"], "resilient.fallback.used", "error.type")
    return [
        str(call),
        str(len(by_name["resilient.retry.attempt"])),
        ", ".join(f"{d * 1000:.0f} ms" for d in delays if isinstance(d, int | float)) or "-",
        " + ".join(cut) or "-",
        ", ".join(outcome(span) for span in retries),
        f"yes ({fallback[0]})" if fallback else "no",
        result,
        ms(elapsed(spans)),
    ]


async def timeouts_retries_fallback() -> None:
    service = FlakyService(SEED)
    policy = Pipeline(
        Fallback(value="cached"),  # outermost: answers when everything below gave up
        Timeout(TOTAL_TIMEOUT, name="total"),  # bounds the whole call; its deadline flows down
        Retry(
            attempts=3,
            backoff=Backoff(initial=0.05, max_delay=0.2, rng=random.Random(SEED)),
        ),
        Timeout(ATTEMPT_TIMEOUT, name="attempt"),  # bounds each attempt
        name="get_price",
    )
    get_price = policy(service.get_price)

    print(
        f"1. Pipeline(Fallback(value='cached'), Timeout({TOTAL_TIMEOUT}), Retry(attempts=3),"
        f" Timeout({ATTEMPT_TIMEOUT}))\n   around a service that fails 30 % of the time and"
        f" stalls for {SLOW * 1000:.0f} ms 20 % of the time.\n"
    )
    rows = []
    for call in range(1, CALLS + 1):
        result, spans = await traced(lambda call=call: get_price(f"sku-{call}"))
        rows.append(retry_row(call, result, spans))
    headers = ("call", "attempts", "delays slept", "timeouts", "retry outcome", "fallback")
    print_table((*headers, "result", "elapsed"), rows)
    print(RETRY_LEGEND.format(total=TOTAL_TIMEOUT, attempt=ATTEMPT_TIMEOUT))


# -- 2. a circuit breaker --------------------------------------------------------------


async def circuit_breaker() -> None:
    down = True

    async def get_stock() -> str:
        await asyncio.sleep(0.001)
        if down:
            raise ServiceUnavailable("inventory")
        return "12 in stock"

    breaker = CircuitBreaker(
        "inventory", failure_ratio=0.5, minimum_calls=4, window=10.0, break_duration=0.05
    )
    print(
        "\n2. CircuitBreaker('inventory', failure_ratio=0.5, minimum_calls=4,"
        " break_duration=0.05)\n   around an inventory service that is down for a while.\n"
    )
    rows = []
    for call in range(1, 10):
        if call == 7:
            await asyncio.sleep(0.06)  # the break duration passes ...
            down = False  # ... and the service is back
        result, spans = await traced(lambda: breaker.call(get_stock))
        (span,) = spans_by_name(spans)["resilient.circuit_breaker"]
        moves = [
            f"{(e.attributes or {}).get('resilient.circuit_breaker.from')} -> "
            f"{(e.attributes or {}).get('resilient.circuit_breaker.to')}"
            for s in spans
            for e in s.events
            if e.name == "resilient.circuit_breaker.transition"
        ]
        rows.append(
            [
                str(call),
                outcome(span),
                ", ".join(moves) or "-",
                result,
            ]
        )
    print_table(("call", "breaker outcome", "transition", "result"), rows)
    print(
        "\nAfter 4 failures the breaker opens and turns calls away without calling the service"
        "\n(CircuitOpenError). Once the break is over, one probe is let through; it succeeds,"
        "\nand the breaker closes."
    )


# -- 3. a rate limiter -----------------------------------------------------------------


async def rate_limiter() -> None:
    async def search() -> str:
        return "results"

    limiter = RateLimiter(5, per=1.0, name="search")
    print("\n3. RateLimiter(5, per=1.0): a burst of 8 calls at once.\n")
    rows = []
    for call in range(1, 9):
        exporter.clear()
        try:
            result = await limiter.call(search)
            retry_after = "-"
        except RejectedError as exc:
            result = type(exc).__name__
            retry_after = f"{exc.retry_after:.1f} s" if exc.retry_after is not None else "-"
        (span,) = spans_by_name(exporter.get_finished_spans())["resilient.rate_limit"]
        rows.append([str(call), outcome(span), result, retry_after])
    print_table(("call", "limiter outcome", "result", "retry after"), rows)
    print(
        "\nThe burst of 5 permits is spent at once; the rest are rejected at once (max_wait=0),"
        "\neach told (retry_after) when the next permit will be free."
    )


async def main() -> int:
    started = time.perf_counter()
    await timeouts_retries_fallback()
    await circuit_breaker()
    await rate_limiter()
    took = time.perf_counter() - started
    print(f"\nDone in {took:.2f} s; every table was read from the resilient.* spans.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
