"""One pipelined connection that carries every round trip of a `RedisStore`.

redis-py's `execute_command` takes a connection from the pool for each command, writes it,
reads its reply in the calling task and gives the connection back: one connection per
command in flight, and a pool lock, a retry wrapper and its own bookkeeping on every call.
A store's commands are all short scripts, so they can share one connection instead:
each caller writes its command at once (in the order they come) and waits on a future,
and one reader task reads the replies in the same order and hands each to its caller.
Concurrent decisions then travel back to back on one socket (Redis reads them in one go
and its replies come back in one read), and a cancelled caller never leaves the
connection half read: its reply is read and dropped.

A reply that takes longer than the store's `timeout` is the caller's to notice (it is
cancelled by its deadline); it then asks for the connection to be reset, which fails
every command still in flight with `ConnectionError` and makes the next one connect
afresh, so that a connection to a frozen or unreachable Redis is never waited on twice.

Only for clients whose connections are plain TCP, TLS or Unix-socket ones from a plain
pool (`Multiplexer.supports`); others (Sentinel, a cluster) keep `execute_command`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ("Multiplexer",)


class Multiplexer:
    """Commands pipelined over one redis-py connection, replies read by one task."""

    __slots__ = (
        "_connect",
        "_connecting",
        "_connection",
        "_last_reply",
        "_loop",
        "_pending",
        "_reader",
    )

    def __init__(self, connect: Callable[[], Any]) -> None:
        #: Builds a new, unconnected redis-py connection.
        self._connect = connect
        self._connection: Any = None
        self._connecting: asyncio.Task[Any] | None = None
        #: The callers' futures, in the order their commands were written.
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._reader: asyncio.Task[None] | None = None
        #: The loop the connection lives on (a store used from a new loop connects anew).
        self._loop: asyncio.AbstractEventLoop | None = None
        #: When the last reply arrived (loop time): a connection still answering is slow,
        #: not stuck.
        self._last_reply = 0.0

    @staticmethod
    def supports(client: Any) -> Callable[[], Any] | None:
        """A factory of connections like `client`'s, when its pool is a plain one; else
        None. The connections read without a socket timeout: the store bounds each round
        trip itself."""
        from redis.asyncio.connection import (
            BlockingConnectionPool,
            Connection,
            ConnectionPool,
            SSLConnection,
            UnixDomainSocketConnection,
        )

        pool: Any = getattr(client, "connection_pool", None)
        if type(pool) not in (ConnectionPool, BlockingConnectionPool):
            return None
        kind = pool.connection_class
        if kind not in (Connection, SSLConnection, UnixDomainSocketConnection):
            return None
        if getattr(client, "single_connection_client", False):
            return None
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        return lambda: kind(**kwargs)

    async def execute(self, *args: Any) -> Any:
        """Send one command and wait for its reply (or its error)."""
        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is None or loop is not self._loop:
            connection = await self._connected(loop)
        packed = connection.pack_command(*args)
        future = loop.create_future()
        pending = self._pending
        pending.append(future)
        try:
            # Written before the first await in send_packed_command: commands go out in
            # the order of `pending`.
            await connection.send_packed_command(packed, check_health=False)
        except BaseException:
            if future in pending:
                self._fail(connection, _redis().ConnectionError("the command could not be sent"))
            raise
        return await future

    def reset(self, idle: float) -> None:
        """A reply took too long: drop the connection unless a reply arrived in the last
        `idle` seconds (then Redis is slow, not stuck, and the others in flight may still
        get theirs). Dropped, everything in flight fails with `ConnectionError`, and the
        next command connects again."""
        connection = self._connection
        if connection is not None and self._loop is not None:
            if self._loop.time() - self._last_reply < idle:
                return
            error = _redis().ConnectionError("the connection was reset: no reply in time")
            self._fail(connection, error)

    async def aclose(self) -> None:
        """Close the connection and stop the reader."""
        connection, reader = self._connection, self._reader
        if connection is not None:
            self._fail(connection, _redis().ConnectionError("the store was closed"))
        if reader is not None:
            with contextlib.suppress(BaseException):
                await reader
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    # -- the connection and its reader ----------------------------------------------------

    async def _connected(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The connection, connected. Connecting is a task of its own, which every caller
        waits for: one caller's cancellation does not fail the others'."""
        if self._connection is not None:  # made on another loop, which has gone
            self._fail(self._connection, _redis().ConnectionError("the event loop changed"))
        connecting = self._connecting
        if connecting is None or connecting.get_loop() is not loop:
            connecting = self._connecting = loop.create_task(self._open(loop))
        return await asyncio.shield(connecting)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Any:
        try:
            connection = self._connect()
            await connection.connect()
        finally:
            self._connecting = None
        self._connection, self._loop = connection, loop
        self._reader = loop.create_task(self._read(connection))
        return connection

    async def _read(self, connection: Any) -> None:
        pending = self._pending
        time = asyncio.get_running_loop().time
        while True:
            try:
                reply = await connection.read_response()
            except asyncio.CancelledError:
                self._fail(connection, _redis().ConnectionError("the store was closed"))
                raise
            except Exception as exc:
                if not pending or not _is_reply_error(exc):
                    self._fail(connection, exc)
                    return
                self._last_reply = time()
                future = pending.popleft()
                if not future.done():
                    future.set_exception(exc)
                continue
            self._last_reply = time()
            if not pending:  # nothing asked for it (a push message): not ours
                continue
            future = pending.popleft()
            if not future.done():
                future.set_result(reply)

    def _fail(self, connection: Any, error: BaseException) -> None:
        """Give up on `connection`: fail what is in flight on it, and let the next command
        connect afresh."""
        if connection is not self._connection:
            return
        self._connection = None
        pending, self._pending = self._pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved, even when its caller has gone
        reader = self._reader
        self._reader = None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        with contextlib.suppress(Exception):
            connection._close()  # the transport, at once, without awaiting


def _redis() -> ModuleType:
    """redis.exceptions, imported when first needed (redis is an optional dependency)."""
    import redis.exceptions

    return redis.exceptions


def _is_reply_error(error: Exception) -> bool:
    """Whether `error` is an error reply from Redis (the connection is still good)."""
    errors = _redis()
    return isinstance(error, errors.ResponseError) and not isinstance(
        error, errors.ConnectionError | errors.TimeoutError
    )
