"""One limit for many processes: OS processes hammering one key on one Redis together get
what one process would, no more and hardly less."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("redis_worker.py")
PROCESSES, TASKS, DURATION = 4, 8, 3.0
RATE, BURST = 100, 100


def test_four_processes_share_one_limit(redis_url: str, prefix: str) -> None:
    args = [redis_url, prefix, str(DURATION), str(TASKS)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    # Each process says when it has imported and connected; then they all start together.
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    start_at = time.time() + 0.2
    reports = []
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"{start_at!r}\n")
        worker.stdin.flush()
    for worker in workers:
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0
        reports.append(json.loads(out))

    granted = sum(r["granted"] for r in reports)
    # Every decision fell between the first request sent and the last answer received:
    # no more than the limit over that span may be granted.
    outer = max(r["last_answer"] for r in reports) - min(r["first_sent"] for r in reports)
    assert granted <= BURST + RATE * outer + 1, (granted, outer)
    # From the first answer to the last request sent, requests were always waiting: the
    # limiter must have handed out (nearly) all it could over that span.
    inner = max(r["last_sent"] for r in reports) - min(r["first_answer"] for r in reports)
    assert granted >= 0.99 * (BURST + RATE * inner), (granted, inner)
    assert all(r["granted"] > 0 for r in reports)  # every process got its share of turns
