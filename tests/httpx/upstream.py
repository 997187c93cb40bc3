"""A real HTTP server on loopback (uvicorn in a thread) whose endpoints fail on command.

Every path is a key with its own hit counter; the query string says how the first
`fail` requests to that key misbehave, after which the key answers 200:

- `mode=status` (default): answer `code` (503), with `retry_after` and `ratelimit` headers
  when given;
- `mode=reset`: drop the connection without an answer;
- `mode=cut`: send the headers and part of the body, then drop the connection;
- `mode=hang`: wait `delay` seconds before answering;
- `mode=slowbody`: send the headers at once and the body after `delay` seconds.

`always=1` makes every request misbehave. Successful answers may carry headers too
(`ok_ratelimit`). The hits are read from the test through `Upstream.hits`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import uvicorn

Scope = dict[str, Any]


class FlakyApp:
    """The ASGI app: counts hits per path and misbehaves as the query asks."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.methods: dict[str, list[str]] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        key = scope["path"]
        lists = parse_qs(scope["query_string"].decode())
        query = {k: v[-1] for k, v in lists.items()}
        while True:  # the request body, read in full
            message = await receive()
            if not message.get("more_body"):
                break
        self.hits[key] += 1
        self.methods.setdefault(key, []).append(scope["method"])
        hit = self.hits[key]
        failing = query.get("always") == "1" or hit <= int(query.get("fail", "0"))
        if not failing:
            headers = []
            for line in lists.get("ok_ratelimit", []):  # one header line each
                headers.append((b"ratelimit", line.encode()))
            await _answer(send, 200, f"ok {hit}".encode(), headers)
            return
        mode = query.get("mode", "status")
        delay = float(query.get("delay", "0"))
        if mode == "reset":
            receive.__self__.transport.abort()  # uvicorn's cycle: no answer at all
            return
        if mode == "cut":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"1000")],
                }
            )
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            receive.__self__.transport.abort()
            return
        if mode == "hang":
            await asyncio.sleep(delay)
            await _answer(send, 200, b"late", [])
            return
        if mode == "slowbody":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": b"slow"})
            return
        headers = []
        if "retry_after" in query:
            headers.append((b"retry-after", query["retry_after"].encode()))
        if "ratelimit" in query:
            headers.append((b"ratelimit", query["ratelimit"].encode()))
        await _answer(send, int(query.get("code", "503")), b"failing", headers)


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Upstream:
    """The server, started in a thread of its own on a free loopback port."""

    def __init__(self, app: Any = None) -> None:
        self.app = FlakyApp() if app is None else app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, log_level="critical", lifespan="on", access_log=False, loop="asyncio"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def hits(self) -> Counter[str]:
        return self.app.hits  # type: ignore[no-any-return]

    def start(self) -> Upstream:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the upstream server did not start")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
