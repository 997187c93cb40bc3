"""The one seam between resilient and the running event loop's native primitives.

Here: the running loop and task, trio's module, the two native deadline primitives a
`Timeout` uses on its hot path (a shared deadline queue per asyncio loop and duration, and
trio's own cancel scope), the one-shot event a queued caller parks on, and a step that
runs to its end through a cancellation. Waits on any
other clock go through `_clock.TimedScope`.

anyio is used on waiting paths. Hot paths (a timeout around every call) use the backend's
own primitive instead, because an anyio cancel scope on asyncio costs several times
`asyncio.timeout`.
"""

from __future__ import annotations

import _asyncio
import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from threading import get_ident
from time import monotonic as _monotonic
from types import ModuleType
from typing import Any, Protocol, TypeVar

import anyio

__all__ = (
    "DeadlineQueue",
    "OneShotEvent",
    "asyncio_loop",
    "current_task",
    "deadline_queue_for",
    "one_shot_event",
    "open_trio_scope",
    "run_to_the_end",
    "trio_module",
)

#: `current_task(loop)`: the task running on `loop`, or None. asyncio.current_task is
#: Python-level on 3.11, where the C accelerator keeps the same answer in a dict keyed by
#: loop; 3.12 and newer have it in C.
current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    getattr(_asyncio, "current_task", None) or _asyncio._current_tasks.get  # type: ignore[attr-defined]  # 3.11 only
)

_running_loop = asyncio._get_running_loop
#: The loop `asyncio_loop` last found (a weak reference: a stopped loop is not kept
#: alive), and the thread it runs in.
_last_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
_last_thread = 0


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None when not on asyncio.

    asyncio's own lookup makes a `getpid()` system call every time (to tell a forked child
    from its parent), once per call through a policy. Here the loop found last is kept
    with its thread: while that loop is running a task in this very thread, it is the
    running loop (a thread runs one loop at a time), and the answer costs two C-level
    lookups. Anywhere else (another thread, a callback outside any task, another loop, a
    forked child, trio) asyncio's lookup answers.
    """
    global _last_loop, _last_thread
    last = _last_loop
    if last is not None and _last_thread == get_ident():
        loop = last()
        if loop is not None and current_task(loop) is not None:
            return loop
    loop = _running_loop()
    if loop is not None:
        _last_loop, _last_thread = weakref.ref(loop), get_ident()
    return loop


def _forget_loop() -> None:
    """In a forked child, the parent's loop is not running: look again."""
    global _last_loop, _last_thread
    _last_loop, _last_thread = None, 0


os.register_at_fork(after_in_child=_forget_loop)

_trio: ModuleType | None = None

T = TypeVar("T")


def trio_module() -> Any:
    """The trio module, imported on first use (only trio users pay for the import)."""
    global _trio
    if _trio is None:
        import trio

        _trio = trio
    return _trio


_ACTIVE, _DONE, _EXPIRED = 0, 1, 2

# One call's entry in a DeadlineQueue, a link of a doubly linked line:
# [deadline, task, task.cancelling() on entry, state, previous entry, next entry].
# A list rather than an object: it is built on every call, and a list costs a fraction of
# an instance with __init__.
_Entry = list[Any]
_DEADLINE, _TASK, _CANCELLING, _STATE, _PREV, _NEXT = range(6)


class DeadlineQueue:
    """The deadlines of one duration's calls on one asyncio loop, in arrival order.

    Every call of a Timeout lasts the same `seconds`, so deadlines arrive already sorted:
    a FIFO and one loop timer armed for the oldest live deadline replace the loop timer
    (a heap push, a cancelled handle left on the heap) that asyncio.timeout costs per call.

    The FIFO is a doubly linked line of the calls in flight: a call that ends unlinks its
    own entry from its two neighbours, wherever it stands, so every push and every leave
    costs the same few steps however many calls are in flight, and a finished call leaves
    nothing behind (its entry lets go of the task, and so of the task's result). The queue
    holds its loop only weakly, and its timer handle only when it must call the timer off,
    so that nothing keeps a closed loop alive.
    """

    __slots__ = ("armed", "handle", "head", "loop_ref", "seconds", "shared", "tail")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, *, shared: bool) -> None:
        self.loop_ref = weakref.ref(loop)
        self.seconds = seconds
        # A shared queue serves every Timeout of this duration on the loop and lets its
        # timer run out when it empties; a private one calls the timer off when it empties,
        # so that a Timeout made per call leaves only a cancelled handle, which the loop
        # purges.
        self.shared = shared
        # `head` stands before the oldest entry (head[_NEXT]); `tail` is the newest entry,
        # or `head` when no call is in flight.
        self.head: _Entry = [0.0, None, 0, _DONE, None, None]
        self.tail = self.head
        self.armed = False
        self.handle: asyncio.TimerHandle | None = None

    @property
    def entries(self) -> list[_Entry]:
        """The entries of the calls in flight, oldest first (walks the line: for
        inspection, not for hot paths)."""
        found = []
        entry = self.head[_NEXT]
        while entry is not None:
            found.append(entry)
            entry = entry[_NEXT]
        return found

    def push(self, loop: asyncio.AbstractEventLoop) -> _Entry:
        """Start a deadline for the task running on `loop`."""
        task = current_task(loop)
        if task is None:
            raise RuntimeError("Timeout must be used inside an asyncio task")
        # Deadlines are kept on time.monotonic (cheaper to read than loop.time(), which
        # some loops cache per iteration); the timer is armed with a relative delay.
        tail = self.tail
        entry = [_monotonic() + self.seconds, task, task.cancelling(), _ACTIVE, tail, None]
        tail[_NEXT] = entry
        self.tail = entry
        if not self.armed:
            self._arm(loop, self.seconds)
        return entry

    def leave(self, entry: _Entry, error: BaseException | None) -> bool:
        """End a deadline; True when its expiry is what ended the call."""
        if entry[_STATE] == _ACTIVE:
            entry[_STATE] = _DONE
            entry[_TASK] = None
            before, after = entry[_PREV], entry[_NEXT]
            before[_NEXT] = after
            if after is not None:
                after[_PREV] = before
            elif before is self.head:
                self.tail = before
                if self.handle is not None:
                    self.handle.cancel()
                    self.handle = None
                    self.armed = False
            else:
                self.tail = before
            return False
        task, entry[_TASK] = entry[_TASK], None
        # Same rule as asyncio.timeout: it is our timeout only if no one else asked for
        # cancellation meanwhile.
        return task.uncancel() <= entry[_CANCELLING] and isinstance(error, asyncio.CancelledError)

    def _arm(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.armed = True
        handle = loop.call_later(delay, self._expire_due, loop)
        if not self.shared:
            self.handle = handle

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        # Every entry in the line is a call in flight: cancel those whose deadline has
        # passed, oldest first, and arm the timer for the next one.
        self.armed = False
        self.handle = None
        head = self.head
        now = _monotonic()
        entry = head[_NEXT]
        while entry is not None:
            if entry[_DEADLINE] > now:
                self._arm(loop, entry[_DEADLINE] - now)
                return
            entry[_STATE] = _EXPIRED
            entry[_TASK].cancel()
            entry = entry[_NEXT]
            head[_NEXT] = entry
            if entry is None:
                self.tail = head
            else:
                entry[_PREV] = head


def open_trio_scope(seconds: float) -> Any:
    trio = trio_module()
    scope = trio.CancelScope(deadline=trio.current_time() + seconds)
    scope.__enter__()
    return scope


#: The shared deadline queues of each loop, by duration. Timeouts of one duration share a
#: queue, so a Timeout made per request costs no more than one kept for the process.
_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, DeadlineQueue]] = (
    weakref.WeakKeyDictionary()
)
#: Past this many distinct durations on one loop (durations computed per call), further
#: Timeouts get a private queue each.
_MAX_SHARED_QUEUES = 64


def deadline_queue_for(loop: asyncio.AbstractEventLoop, seconds: float) -> DeadlineQueue:
    try:
        per_loop = _queues.get(loop)
        if per_loop is None:
            per_loop = _queues[loop] = {}
    except TypeError:  # a loop that cannot be weakly referenced: nothing is shared there
        return DeadlineQueue(loop, seconds, shared=False)
    queue = per_loop.get(seconds)
    if queue is None:
        if len(per_loop) >= _MAX_SHARED_QUEUES:
            return DeadlineQueue(loop, seconds, shared=False)
        queue = per_loop[seconds] = DeadlineQueue(loop, seconds, shared=True)
    return queue


class OneShotEvent(Protocol):
    """What one parked task waits on until another sets it (once)."""

    def set(self) -> None: ...

    def wait(self) -> Awaitable[Any]: ...


class _FutureEvent:
    """A one-shot event for a single waiting task on asyncio: the bare loop future.

    `wait()` returns the future itself, so waiting adds no coroutine frame of its own, and
    a waiter costs one future rather than anyio's event around asyncio's (an event, a
    deque of waiters, then a future per wait). Cancellation is the future's: the task is
    cancelled while it waits, as with any asyncio wait, and `set()` after that is a no-op.
    """

    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        return self._future


def one_shot_event() -> OneShotEvent:
    """An event one task waits on and another sets once: a bare future on asyncio,
    `anyio.Event` elsewhere."""
    loop = asyncio_loop()
    if loop is not None:
        return _FutureEvent(loop)
    return anyio.Event()


async def run_to_the_end(step: Coroutine[Any, Any, T]) -> T:
    """Await `step` on asyncio so that it runs to its end even when the calling task is
    cancelled meanwhile (by `asyncio.timeout`, a task group or an anyio scope, any number
    of times); the cancellation is raised once `step` has ended.

    For short steps whose loss would cost more than the wait, such as an outcome on its way
    to a store: the step must bound its own duration and handle its own errors.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            try:
                await asyncio.wait((task,))
            except asyncio.CancelledError:
                continue  # delivered again (an anyio scope does): keep waiting
        if not task.cancelled():
            task.exception()  # retrieved: the step's own error is not the caller's
        raise
