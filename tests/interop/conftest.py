"""Fixtures for the interop adapters: asyncio only, a fake wall clock, and a real Redis.

limits' async storages are built on asyncio, so these tests run on asyncio alone. limits
reads the wall clock (`time.time`) for its decisions: `wall` replaces it with a fake clock,
so that decisions in memory are exact and waits instant. Redis keeps its own time, so tests
against it use real, short windows.

`redis_url` is a Redis for this test session: `REDIS_URL` when set, otherwise a
`redis-server` from PATH started on a free loopback port (and stopped at the end), otherwise
one already listening on 127.0.0.1:6379. With none of them the Redis tests are skipped,
except under CI (the `CI` environment variable), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from limits.aio.storage import RedisStorage

from resilient.testing import FakeClock

#: What `time.time()` reads when the fake wall clock is at 0.0: a whole number of seconds,
#: so that limits' sliding windows (aligned to the epoch) start at 0.0 too.
EPOCH = 1_700_000_000.0

#: How long a redis-server we started may take to answer.
_STARTUP = 10.0


@pytest.fixture
def anyio_backend() -> str:
    """limits' async storages run on asyncio only."""
    return "asyncio"


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock that `time.time()` reads as well (as `EPOCH + clock.now()`)."""
    clock = FakeClock()
    monkeypatch.setattr(time, "time", lambda: EPOCH + clock.now())
    return clock


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis for this session (see the module docstring)."""
    given = os.environ.get("REDIS_URL")
    if given:
        if not _answers(given):
            pytest.fail(f"REDIS_URL={given} does not answer PING")
        yield given
        return
    server = shutil.which("redis-server")
    if server is not None:
        port = _free_port()
        url = f"redis://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as workdir:
            process = subprocess.Popen(
                [
                    server,
                    *("--port", str(port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", workdir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + _STARTUP
                while not _answers(url):
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"{server} did not start on port {port}")
                    time.sleep(0.02)
                yield url
            finally:
                process.terminate()
                process.wait(timeout=_STARTUP)
        return
    local = "redis://127.0.0.1:6379"
    if _answers(local):
        yield local
        return
    message = "no Redis: set REDIS_URL, put redis-server on PATH, or run one on 127.0.0.1:6379"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def redis_storage(redis_url: str) -> AsyncIterator[RedisStorage]:
    """limits' async Redis storage on redis-py, its connections closed after the test."""
    pool = redis.asyncio.ConnectionPool.from_url(redis_url)
    try:
        # limits types storage options as scalars, and hands them to redis-py as they are.
        options: dict[str, Any] = {"implementation": "redispy", "connection_pool": pool}
        yield RedisStorage(f"async+{redis_url}", **options)
    finally:
        await pool.aclose()
