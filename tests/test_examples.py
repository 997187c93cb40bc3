"""Every script in examples/ runs to completion, and the demo prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("script", sorted(EXAMPLES.glob("*.py")), ids=lambda path: path.name)
def test_example_runs(script: Path) -> None:
    done = run(script)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"


def test_demo_prints_what_each_policy_did() -> None:
    done = run(EXAMPLES / "demo.py")
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
