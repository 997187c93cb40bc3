"""A real uvicorn server on loopback, run in a thread of its own for one test."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve(app: Any, *, lifespan: str = "off", proxy_headers: bool = True) -> Iterator[str]:
    """Serve `app` on a free loopback port; yield its base URL; stop it on exit.

    `proxy_headers=False` stops uvicorn from rewriting the client's address from
    `X-Forwarded-For` itself (it trusts loopback peers by default).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=2,
        proxy_headers=proxy_headers,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Gate:
    """Opened from the test's thread, waited on in the server's loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self.entered = 0

    def open(self) -> None:
        with self._lock:
            self._opened = True
            if self._loop is not None and self._event is not None:
                self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        with self._lock:
            self.entered += 1
            if self._opened:
                return
            if self._event is None:
                self._loop = asyncio.get_running_loop()
                self._event = asyncio.Event()
            event = self._event
        await event.wait()


async def eventually(check: Any, timeout: float = 10.0) -> None:
    """Wait until `check()` is true (server-side state settles on another thread)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.01)
