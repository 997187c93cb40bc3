"""The benchmark runner still runs: a quick pass over one group, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "benchmarks" / "run.py"


def run_bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the benchmark runner in a subprocess with these arguments."""
    return subprocess.run(
        [sys.executable, str(RUNNER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def test_quick_timeout_benchmark_prints_a_table() -> None:
    # The timeout group's peers are asyncio and anyio, both always installed; skip rather
    # than fail if that ever changes.
    pytest.importorskip("anyio")
    proc = run_bench("--quick", "--only", "timeout")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| case | ns/call |" in proc.stdout
    assert "| asyncio.timeout(10) |" in proc.stdout
    assert "### Goals" in proc.stdout


def test_unknown_group_is_refused() -> None:
    proc = run_bench("--quick", "--only", "no_such_group", timeout=60)
    assert proc.returncode == 2
    assert "unknown group" in proc.stderr


def test_quick_timeout_in_two_processes_reports_the_range_and_seeds() -> None:
    pytest.importorskip("anyio")
    proc = run_bench("--quick", "--only", "timeout", "--processes", "2", "--seed", "7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "range over 2 processes" in proc.stdout
    assert "round order seeds 7, 8" in proc.stdout
    assert "| range over processes |" in proc.stdout
