"""The Redis test fixtures never skip silently under CI."""

from __future__ import annotations

import pytest

import redis_servers


def test_without_redis_server_ci_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_servers.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"redis-server is not on PATH.*must run"):
        redis_servers.redis_binary()


def test_without_redis_server_a_local_run_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_servers.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="REDIS_URL"):
        redis_servers.redis_binary()
