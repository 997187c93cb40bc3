"""What resilient's policies do to a flaky service, read back from OpenTelemetry.

Run it with `make demo`. It needs no service: the "remote" call is a local function that fails
or stalls at random (seeded, so every run tells the same story), and the OpenTelemetry SDK
keeps the spans in memory. The table is built only from the `resilient.*` spans and their
events, which is what you would see in your tracing backend.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilient import Backoff, Fallback, Pipeline, Retry, Timeout

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


def build_policy(seed: int) -> Pipeline:
    return Pipeline(
        Fallback(value="cached"),  # outermost: answers when everything below gave up
        Timeout(TOTAL_TIMEOUT, name="total"),  # bounds the whole call; its deadline flows down
        Retry(
            attempts=3,
            backoff=Backoff(initial=0.05, max_delay=0.2, rng=random.Random(seed)),
        ),
        Timeout(ATTEMPT_TIMEOUT, name="attempt"),  # bounds each attempt
        name="get_price",
    )


LEGEND = """
timeouts       attempt: Timeout({attempt}) cut an attempt off and Retry tried again;
               total: Timeout({total}) ended the whole call.
retry outcome  exhausted: every attempt failed; deadline: the next backoff sleep would
               not have ended before the total deadline, so Retry stopped at once;
               cancelled: the total timeout cancelled Retry mid-attempt.
fallback       the Fallback answered 'cached' instead of an error.
"""


@dataclass
class Row:
    call: int
    attempts: int
    delays: list[float]
    attempt_timeouts: int
    total_timeout: bool
    retry_outcome: str
    fallback: bool
    result: str
    elapsed: float


def _attr(span: ReadableSpan, key: str) -> object:
    return (span.attributes or {}).get(key)


def _delays(span: ReadableSpan) -> list[float]:
    """The delays a Retry span's events say it slept before each retry."""
    delays = []
    for event in span.events:
        delay = (event.attributes or {}).get("resilient.retry.delay")
        if event.name == "resilient.retry.scheduled" and isinstance(delay, int | float):
            delays.append(float(delay))
    return delays


def _used_fallback(span: ReadableSpan) -> bool:
    return _attr(span, "resilient.outcome") == "fallback" or bool(span.events)


def summarise(call: int, spans: Sequence[ReadableSpan], result: str) -> Row:
    by_name: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        by_name[span.name].append(span)
    root = next(span for span in spans if span.parent is None)
    timeouts = by_name["resilient.timeout"]
    retries = by_name["resilient.retry"]
    fallbacks = by_name["resilient.fallback"]
    assert root.start_time is not None
    assert root.end_time is not None
    return Row(
        call=call,
        attempts=len(by_name["resilient.retry.attempt"]),
        delays=[d for span in retries for d in _delays(span)],
        attempt_timeouts=sum(
            1
            for span in timeouts
            if _attr(span, "resilient.policy.name") == "attempt"
            and _attr(span, "resilient.outcome") == "timeout"
        ),
        total_timeout=any(
            _attr(span, "resilient.policy.name") == "total"
            and _attr(span, "resilient.outcome") == "timeout"
            for span in timeouts
        ),
        retry_outcome=", ".join(str(_attr(span, "resilient.outcome")) for span in retries),
        fallback=any(_attr(span, "resilient.outcome") == "fallback" for span in fallbacks)
        or any(
            event.name.startswith("resilient.fallback") for s in fallbacks for event in s.events
        ),
        result=result,
        elapsed=(root.end_time - root.start_time) / 1e9,
    )


def print_table(rows: Sequence[Row]) -> None:
    headers = (
        "call",
        "attempts",
        "delays slept",
        "timeouts",
        "retry outcome",
        "fallback",
        "result",
        "elapsed",
    )
    lines = []
    for row in rows:
        n = row.attempt_timeouts
        timeouts = f"{n} attempt{'s' if n > 1 else ''}" if n else "-"
        if row.total_timeout:
            timeouts = ("" if timeouts == "-" else timeouts + " + ") + "total"
        delays = ", ".join(f"{d * 1000:.0f} ms" for d in row.delays) or "-"
        lines.append(
            (
                str(row.call),
                str(row.attempts),
                delays,
                timeouts,
                row.retry_outcome,
                "yes" if row.fallback else "no",
                row.result,
                f"{round(row.elapsed, 2) * 1000:.0f} ms",
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


async def main() -> int:
    service = FlakyService(SEED)
    policy = build_policy(SEED)
    get_price = policy(service.get_price)

    print(
        f"Pipeline(Fallback(value='cached'), Timeout({TOTAL_TIMEOUT}), Retry(attempts=3),"
        f" Timeout({ATTEMPT_TIMEOUT}))\naround a service that fails 30 % of the time and"
        f" stalls for {SLOW * 1000:.0f} ms 20 % of the time.\n"
    )
    rows = []
    started = time.perf_counter()
    for call in range(1, CALLS + 1):
        exporter.clear()
        result = await get_price(f"sku-{call}")
        rows.append(summarise(call, exporter.get_finished_spans(), result))
    print_table(rows)
    took = time.perf_counter() - started
    print(LEGEND.format(total=TOTAL_TIMEOUT, attempt=ATTEMPT_TIMEOUT))
    print(f"{CALLS} calls in {took:.2f} s; every column was read from the resilient.* spans.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
