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


def test_quick_scaling_benchmark_reports_every_part() -> None:
    # Peers that are not installed (CI installs no bench group) become "not installed" cells;
    # resilient's own rows and asyncio's always run.
    proc = run_bench("--quick", "--only", "scaling")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for title in (
        "Scaling (a): rate-limit keys, live",
        "Scaling (a): rate-limit keys, expiring",
        "Scaling (b): concurrent tasks through one policy, µs per call",
        "Scaling (b): concurrent tasks through one policy, bytes per task",
        "Scaling (c): memory of circuit breakers",
        "Scaling (d): cancelling queued waiters",
    ):
        assert f"### {title}\n" in proc.stdout
    assert "| 1k | **resilient RateLimiter** | " in proc.stdout
    assert "| **Pipeline of five** | " in proc.stdout
    assert "| 200 | newest-first | " in proc.stdout
    assert "failed:" not in proc.stdout


def test_quick_httpx_benchmark_reports_each_transport() -> None:
    # httpx-retries comes with the bench group only; without it its row is named skipped.
    proc = run_bench("--quick", "--only", "httpx", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "### httpx transports on a local uvicorn server" in proc.stdout
    assert "| httpx.AsyncHTTPTransport (plain) | " in proc.stdout
    assert "| resilient ResilientTransport (default stack) | " in proc.stdout
    assert "ResilientTransport req/s >= 0.95x plain httpx" in proc.stdout
    assert "failed:" not in proc.stdout


@pytest.fixture
def benchmarks_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return ROOT / "benchmarks"


def test_chart_draws_one_line_per_measured_series(benchmarks_path: Path) -> None:
    from xml.etree import ElementTree

    from _svg import Chart, Series

    chart = Chart(
        "example",
        "Time per call",
        "keys",
        "time",
        [
            Series("ours", [(1e3, 1e-6), (1e6, 2e-6)]),
            Series("peer", [(1e3, 1e-5), (1e4, None)], dashed=True),
            Series("never ran", []),
        ],
    )
    svg = ElementTree.fromstring(chart.svg())
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2
    assert lines[1].get("stroke-dasharray") is not None
    labels = [text.text for text in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "never ran (not measured)" in labels
    assert {"1k", "10k", "100k", "1M", "1 µs", "10 µs"} <= set(labels)


def test_writing_one_part_of_the_page_keeps_the_other(
    benchmarks_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import run
    from _harness import Settings

    monkeypatch.setattr(run, "DOCS", tmp_path / "performance.md")
    settings = Settings.quick_run()
    run.write_docs("per-call tables, first run", "scaling tables, first run", settings)
    run.write_docs("per-call tables, second run", None, settings)
    page = run.DOCS.read_text(encoding="utf-8")
    assert "per-call tables, second run" in page
    assert "scaling tables, first run" in page
    run.write_docs(None, "scaling tables, second run", settings)
    page = run.DOCS.read_text(encoding="utf-8")
    assert "per-call tables, second run" in page
    assert "scaling tables, second run" in page
    assert "first run" not in page
    run.write_docs(None, None, settings, "redis tables, first run")
    run.write_docs("per-call tables, third run", None, settings)
    page = run.DOCS.read_text(encoding="utf-8")
    assert "redis tables, first run" in page
    assert "per-call tables, third run" in page
    assert "scaling tables, second run" in page
    assert page.count("redis tables") == 1


def _redis_reachable() -> bool:
    """Whether the redis group has a Redis: REDIS_URL, redis-server on PATH, or 6379."""
    import os
    import shutil
    import socket

    if os.environ.get("REDIS_URL") or shutil.which("redis-server"):
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


def test_quick_redis_benchmark_reports_both_parts() -> None:
    import os

    if not _redis_reachable():
        message = (
            "the redis benchmark group needs Redis: set REDIS_URL, put redis-server on PATH "
            "or run one on 127.0.0.1:6379"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI is set, so it must run, not skip.")
        pytest.skip(message)
    proc = run_bench("--quick", "--only", "redis", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "### Rate limits on Redis: decisions per second\n" in proc.stdout
    assert "### Rate limits on Redis: a decision while Redis is down\n" in proc.stdout
    assert "| raw `EVALSHA` of a minimal GCRA script (redis-py) | " in proc.stdout
    assert "| **RedisStore** via `RateLimiter.acquire()` | " in proc.stdout
    assert "failed:" not in proc.stdout


def test_quick_overload_benchmark_reports_every_case() -> None:
    # A real uvicorn server per case, offered 3x its capacity for a moment.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "overload.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for case in (
        "no shedding",
        "static limit (8)",
        "static limit (8) + queue (8, 10 ms)",
        "AIMD",
        "Gradient2",
    ):
        assert f"| {case} | " in proc.stdout
    assert "| a Starlette app (one route) | " in proc.stdout
    assert "| a bare ASGI handler | " in proc.stdout
    assert "### Goals" in proc.stdout


def test_quick_hedge_and_tail_benchmarks_report_their_goals() -> None:
    # nopanic (the bench group) may be missing: its rows are then skipped, ours still run.
    proc = run_bench("--quick", "--only", "hedge,tail", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| **Hedge(0.05) decorator** |" in proc.stdout
    assert "### Hedging a heavy tail" in proc.stdout
    assert "| serves 20 % of demand |" in proc.stdout
    assert "adaptive hedge cuts p99 by >= 3x" in proc.stdout


def test_the_interop_adapters_benchmark_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "interop_adapters.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT / "benchmarks",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| **PyBreakerPolicy(breaker)** |" in proc.stdout
    assert "| **Retry(backoff=TenacityBackoff(" in proc.stdout


def _results(env: str, groups: dict[str, str]) -> str:
    header = "| group | goal | ratio | met? |\n|---|---|---:|---|"
    rows = "\n".join(f"| {g} | {g} goal | 0.5x | {met} |" for g, met in groups.items())
    sections = "\n\n".join(f"### {g}\n\n{g} table" for g in groups)
    return f"{env}\n\n### Goals\n\n{header}\n{rows}\n\n1 met.\n\n{sections}"


def test_a_run_of_some_groups_replaces_only_theirs_in_the_results(benchmarks_path: Path) -> None:
    import run

    old = _results("run 1; command: `run --only a,b`; seed 1", {"A": "yes", "B": "**no**"})
    new = _results("run 2; command: `run --only b,c`; seed 2", {"B": "yes", "C": "yes"})
    merged = run.merge_results(old, new)
    assert merged.index("run 1") < merged.index("run 2") < merged.index("### Goals")
    assert [line.split("|")[1].strip() for line in merged.splitlines() if " goal |" in line][
        1:
    ] == [
        "A",
        "B",
        "C",
    ]
    assert "3 met, 0 missed, 0 not measured." in merged
    assert merged.count("### B") == 1
    assert merged.index("### A") < merged.index("### B") < merged.index("### C")
    # The same command again: its older environment line goes.
    again = run.merge_results(merged, new.replace("run 2", "run 3"))
    assert "run 2" not in again
    assert "run 1" in again


def test_quick_asgi_ratelimit_benchmark_serves_every_case() -> None:
    # slowapi is a bench-only peer: without it its rows are named as not installed.
    proc = run_bench("--quick", "--only", "asgi_ratelimit", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| case | req/s | req/s vs bare app (paired) | answered 200 |" in proc.stdout
    for row in ("| Starlette app, no limiter |", "| resilient RateLimitMiddleware (memory) |"):
        assert row in proc.stdout
    assert "RateLimitMiddleware (memory) req/s >= 0.95x the bare app" in proc.stdout
    assert "100.0%" in proc.stdout  # a healthy app: every request admitted
