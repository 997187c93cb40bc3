"""Real Redis servers for the tests: started from `redis-server` on PATH on free loopback
ports, in a temporary directory, and always stopped.

`REDIS_URL` (a server) and `REDIS_CLUSTER_URL` (any node of a cluster) point the tests at
servers you run instead. When `CI` is set, a missing `redis-server` fails the tests that
need it, with the reason, instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

#: Longest wait for a server (or a cluster) to come up, in seconds.
START_TIMEOUT = 20.0


def redis_binary(name: str = "redis-server") -> str:
    """The path of `name`, or skip (fail under CI) when it is not on PATH."""
    found = shutil.which(name)
    if found is None:
        message = (
            f"{name} is not on PATH: install Redis (for example `apt-get install redis-server`) "
            "or point REDIS_URL / REDIS_CLUSTER_URL at running servers"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI is set, so the Redis tests must run, not skip.")
        pytest.skip(message)
    return found


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A loopback port nobody listens on (and, for a cluster node, its bus port + 10000)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not cluster_bus or (port < 55535 and _bindable(port + 10000)):
            return port
    raise RuntimeError("no free loopback port found")


def wait_until(check: object, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not happen within {timeout:g}s (last error: {last})")


class RedisServer:
    """One `redis-server` process on 127.0.0.1:`port`, with no persistence."""

    def __init__(self, port: int | None = None, *, cluster: bool = False) -> None:
        self.binary = redis_binary()
        self.cluster = cluster
        self.port = port or free_port(cluster_bus=cluster)
        self.dir = Path(tempfile.mkdtemp(prefix=f"resilient-redis-{self.port}-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()
        return self

    def ping(self) -> bool:
        with redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1) as client:
            return bool(client.ping())

    def wait_ready(self) -> None:
        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} exited: {log}")
            return self.ping()

        wait_until(up, f"redis-server answering on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a word, as a crashed host would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot exit
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """Three masters, no replicas, made into one cluster with `redis-cli --cluster create`."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [RedisServer(cluster=True) for _ in range(masters)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [
                    redis_binary("redis-cli"),
                    *("--cluster", "create", *addresses),
                    *("--cluster-replicas", "0", "--cluster-yes"),
                ],
                check=True,
                capture_output=True,
                timeout=START_TIMEOUT,
            )
            for node in self.nodes:
                wait_until(lambda node=node: _cluster_ok(node.port), f"cluster ok on {node.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
        text = client.execute_command("CLUSTER INFO")
        if isinstance(text, dict):  # parsed by redis-py
            text = "\n".join(f"{k}:{v}" for k, v in text.items())
        return "cluster_state:ok" in text and "cluster_slots_assigned:16384" in text
