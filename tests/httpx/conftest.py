"""The upstream server every transport test talks to, and a path of each test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from upstream import Upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    # One per module, so that no server thread outlives these tests: tests elsewhere
    # measure the process's allocations.
    server = Upstream().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def path() -> str:
    """A path no other test uses: its hit counter starts at zero."""
    return f"/t-{uuid.uuid4().hex[:12]}"
