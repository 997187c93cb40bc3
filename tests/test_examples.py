"""Every script in examples/ runs to completion, and the demo and the tour print their tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", str(script), *args],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


#: Run by tests of their own below, with shorter settings or closer checks.
OWN_TESTS = ("demo.py", "distributed_limit.py")


@pytest.mark.parametrize(
    "script",
    sorted(path for path in EXAMPLES.glob("*.py") if path.name not in OWN_TESTS),
    ids=lambda path: path.name,
)
def test_example_runs(script: Path) -> None:
    done = run(script)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"


def test_demo_compares_the_two_clients_on_the_flaky_upstream() -> None:
    done = run(EXAMPLES / "demo.py", "--duration", "10", "--rate", "40")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    for phase in ("flaky", "rate limited", "outage", "recovered"):
        assert f"upstream phase: {phase}" in out
    rows = {line[:29].strip(): line[29:].split() for line in out.splitlines() if line[:2] != "  "}
    assert rows["calls"] == ["400", "400"]
    # The resilient client's breaker opened in the outage and turned calls away at once,
    # and its retry budget kept the upstream's load within a small multiple of the calls.
    assert rows["failed fast (breaker open)"][0] == "-"
    assert int(rows["failed fast (breaker open)"][1]) > 0
    plain, resilient = (float(x) for x in rows["upstream requests per call"])
    assert plain == 1.0
    assert resilient < 1.6


def test_telemetry_tour_prints_what_each_policy_did() -> None:
    done = run(EXAMPLES / "telemetry_tour.py")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    header = next(line for line in out.splitlines() if line.startswith("call  attempts"))
    for column in ("delays slept", "timeouts", "retry outcome", "fallback", "result", "elapsed"):
        assert column in header
    # The seeded service shows every path: first-try successes, retries after errors and
    # attempt timeouts, the total deadline stopping Retry, and the fallback answering.
    for seen in ("success", "exhausted", "deadline", "total", "cached", "9.99"):
        assert seen in out
    # The breaker opens, rejects, and closes again; the limiter rejects the end of a burst.
    for seen in ("closed -> open", "CircuitOpenError", "half_open -> closed", "RateLimitedError"):
        assert seen in out


def test_health_example_walks_readiness_through_warn_and_fail_and_back() -> None:
    done = run(EXAMPLES / "health_endpoints.py")
    assert done.returncode == 0, done.stderr
    lines = {line.split("  ")[0]: line for line in done.stdout.splitlines()}
    assert "200 pass" in lines["liveness"]
    assert "200 pass" in lines["healthy"]
    assert "200 warn" in lines["payments provider failing"]
    assert "payments:circuitBreaker=warn (open)" in lines["payments provider failing"]
    assert "503 fail" in lines["a handler blocks the event loop"]
    assert "eventLoop:lag=fail" in lines["a handler blocks the event loop"]
    assert "200 pass" in lines["recovered"]


@pytest.mark.redis
def test_distributed_limit_example_shares_one_limit_between_processes(redis_url: str) -> None:
    done = run(EXAMPLES / "distributed_limit.py", "--redis", redis_url)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    totals = {
        line.split(":")[0]: int(line.split(":")[1].split()[0])
        for line in done.stdout.splitlines()
        if line.startswith(("on Redis:", "in process:"))
    }
    # 3 s at 20/s with bursts of 10: 70 for one bucket (a call or two more at the edges).
    assert 60 <= totals["on Redis"] <= 72
    assert totals["in process"] >= 3 * 60
