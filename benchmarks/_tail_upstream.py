"""The heavy-tailed upstream of the tail benchmark, served by uvicorn in a process of its own.

Most requests are answered in 8 to 12 ms; TAIL_SHARE of them take TAIL_S (20x the median).
Which ones is drawn from a seeded generator, request by request. `GET /count` answers the
requests served since the last `GET /reset`.

Usage: python _tail_upstream.py PORT SEED MEDIAN_S TAIL_S TAIL_SHARE
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import uvicorn


class TailApp:
    def __init__(self, seed: int, median: float, tail: float, share: float) -> None:
        self.rng = random.Random(seed)
        self.median, self.tail, self.share = median, tail, share
        self.served = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/count":
            body = str(self.served).encode()
        elif path == "/reset":
            self.served, body = 0, b"0"
        else:
            self.served += 1
            slow = self.rng.random() < self.share
            delay = self.tail if slow else self.rng.uniform(0.8 * self.median, 1.2 * self.median)
            await asyncio.sleep(delay)
            body = b"ok"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    port, seed, median, tail, share = sys.argv[1:]
    app = TailApp(int(seed), float(median), float(tail), float(share))
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="critical", lifespan="off")
