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
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("call"))
    for column in ("attempts", "delays slept", "timeouts", "fallback", "result", "elapsed"):
        assert column in header
    rows = [line for line in lines if line[:1].isdigit()]
    assert len(rows) >= 8
    # The seeded service makes some calls fail over to the fallback and some retry.
    assert any("cached" in row for row in rows)
    assert any("9.99" in row for row in rows)
