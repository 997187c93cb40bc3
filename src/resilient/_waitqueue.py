"""A first-come, first-served line of waiters that any waiter can leave in constant time.

Every queue of callers in resilient is one of these: a bulkhead's today, and the load
shedder's that is coming. A `collections.deque` would serve them in order, but a caller that
gives up (cancelled, or out of time) has to be found before it can be taken out:
`deque.remove` compares it with every waiter ahead of it, so cancelling a long line
newest-first is quadratic (40,000 waiters: over ten seconds with the event loop blocked).
Here each waiter carries its own two links, so leaving is a handful of pointer writes
wherever it stands, and the line never needs a pass over it: no search, no tombstones, no
compaction.

Pure and synchronous: no awaits, no event loop. The shell that parks a caller decides how
it waits; this module only keeps the order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar, cast

__all__ = ("Link", "WaitQueue")


class Link:
    """Base of whatever a `WaitQueue` holds: the two links that thread it into the line.

    Both are None while it is in no line. A subclass adds what the waiter needs (its event,
    whether it was granted what it waited for) and lists it in its own `__slots__`.
    """

    __slots__ = ("_next", "_prev")

    def __init__(self) -> None:
        self._prev: Link | None = None
        self._next: Link | None = None


L = TypeVar("L", bound=Link)


class WaitQueue(Generic[L]):
    """A FIFO of `Link`s: `append`, `popleft` (the oldest), `pop` (the newest), `remove`
    (any), `len`; each in constant time, whatever the length.

    A link is in at most one queue at a time; a link that was popped or removed may be
    appended again. `size` is `len(queue)` as a plain attribute, for hot paths that only
    ask whether anyone waits (no call).

    Examples:
        ```python
        line: WaitQueue[Waiter] = WaitQueue()
        first, second, third = Waiter(), Waiter(), Waiter()
        for waiter in (first, second, third):
            line.append(waiter)
        assert line.remove(second)        # gave up: out of the line, nobody searched for
        assert not line.remove(second)    # already out: nothing to do
        assert line.popleft() is first and len(line) == 1
        ```
    """

    __slots__ = ("_end", "size")

    def __init__(self) -> None:
        # A circular list around one sentinel: its `_next` is the oldest link, its `_prev`
        # the newest, and it links to itself when the line is empty. Every link in the line
        # then has two neighbours, so no operation branches on the ends.
        end = self._end = Link()
        end._prev = end._next = end
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[L]:
        """The links from the oldest to the newest (do not change the line meanwhile)."""
        end = self._end
        link = end._next
        while link is not end:
            assert link is not None
            yield cast(L, link)
            link = link._next

    def __repr__(self) -> str:
        return f"<WaitQueue of {self.size}>"

    def append(self, link: L) -> None:
        """Put `link` at the back of the line.

        Raises:
            ValueError: `link` is already in a line.
        """
        if link._prev is not None:
            raise ValueError(f"{link!r} is already queued")
        end = self._end
        newest = end._prev
        assert newest is not None
        link._prev = newest
        link._next = end
        newest._next = link
        end._prev = link
        self.size += 1

    def remove(self, link: L) -> bool:
        """Take `link` out of the line, wherever it stands; False when it was not in it.

        Only `link` and its two neighbours are touched. `link` must be in this line or in
        none (a popped or removed link is in none).
        """
        prev = link._prev
        if prev is None:
            return False
        nxt = link._next
        assert nxt is not None
        prev._next = nxt
        nxt._prev = prev
        link._prev = link._next = None
        self.size -= 1
        return True

    def popleft(self) -> L:
        """Take the oldest link out of the line and return it.

        Raises:
            IndexError: the line is empty.
        """
        # remove() inlined: this is every handover of a slot to a waiter.
        end = self._end
        oldest = end._next
        if oldest is end:
            raise IndexError("pop from an empty WaitQueue")
        assert oldest is not None
        second = oldest._next
        assert second is not None
        end._next = second
        second._prev = end
        oldest._prev = oldest._next = None
        self.size -= 1
        return cast(L, oldest)

    def pop(self) -> L:
        """Take the newest link out of the line and return it.

        Raises:
            IndexError: the line is empty.
        """
        newest = self._end._prev
        if newest is self._end:
            raise IndexError("pop from an empty WaitQueue")
        link = cast(L, newest)
        self.remove(link)
        return link
