"""Real Redis for the storage tests: one server and one three-master cluster per session,
started on free loopback ports (or taken from `REDIS_URL` / `REDIS_CLUSTER_URL`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from redis_servers import RedisCluster, RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis server: `REDIS_URL`, or one started for the session."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """The URL of one node of a Redis Cluster of three masters: `REDIS_CLUSTER_URL`, or one
    started for the session."""
    given = os.environ.get("REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    cluster = RedisCluster().start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis server of this test's own, to kill, pause and restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests share servers without sharing state."""
    return f"test-{uuid.uuid4().hex[:12]}"
