"""WaitQueue: the FIFO line every queue of callers uses, where any waiter leaves in O(1)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from resilient._waitqueue import Link, WaitQueue


class Item(Link):
    __slots__ = ("label",)

    def __init__(self, label: int) -> None:
        self.label = label  # first: a Spy notes it on every write
        super().__init__()

    def __repr__(self) -> str:
        return f"Item({self.label})"


class Spy(Item):
    """An item that notes every attribute read or write made on it, and every comparison."""

    __slots__ = ()
    touched: ClassVar[set[int]] = set()  # one log shared by every spy
    compared: ClassVar[int] = 0

    def __getattribute__(self, name: str) -> Any:
        Spy.touched.add(object.__getattribute__(self, "label"))
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        Spy.touched.add(object.__getattribute__(self, "label"))

    def __eq__(self, other: object) -> bool:
        Spy.compared += 1
        return self is other

    __hash__ = object.__hash__


def labels(queue: WaitQueue[Any]) -> list[int]:
    return [item.label for item in queue]


def test_serves_in_arrival_order() -> None:
    queue: WaitQueue[Item] = WaitQueue()
    for i in range(5):
        queue.append(Item(i))
    assert len(queue) == 5
    assert [queue.popleft().label for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(queue) == 0


def test_pop_takes_the_newest() -> None:
    queue: WaitQueue[Item] = WaitQueue()
    for i in range(3):
        queue.append(Item(i))
    assert queue.pop().label == 2
    assert labels(queue) == [0, 1]


@pytest.mark.parametrize("gone", [0, 2, 4])
def test_removed_item_leaves_from_wherever_it_stands(gone: int) -> None:
    queue: WaitQueue[Item] = WaitQueue()
    items = [Item(i) for i in range(5)]
    for item in items:
        queue.append(item)
    assert queue.remove(items[gone])
    assert labels(queue) == [i for i in range(5) if i != gone]
    assert len(queue) == 4


def test_removing_an_item_that_is_not_queued_does_nothing() -> None:
    queue: WaitQueue[Item] = WaitQueue()
    first, second = Item(1), Item(2)
    queue.append(first)
    assert not queue.remove(second)  # never queued
    assert queue.popleft() is first
    assert not queue.remove(first)  # popped already
    assert len(queue) == 0


def test_empty_queue_raises_index_error_on_pop() -> None:
    queue: WaitQueue[Item] = WaitQueue()
    with pytest.raises(IndexError):
        queue.popleft()
    with pytest.raises(IndexError):
        queue.pop()


def test_an_item_is_in_one_line_at_a_time_and_may_come_back_after_leaving() -> None:
    queue: WaitQueue[Item] = WaitQueue()
    other: WaitQueue[Item] = WaitQueue()
    item, later = Item(1), Item(2)
    queue.append(item)
    with pytest.raises(ValueError, match="already queued"):
        queue.append(item)
    with pytest.raises(ValueError, match="already queued"):
        other.append(item)
    queue.append(later)
    queue.remove(item)
    queue.append(item)  # back in line, behind the one that stayed
    assert labels(queue) == [2, 1]


@pytest.mark.parametrize("where", ["newest", "oldest", "middle"])
def test_removal_touches_only_the_item_and_its_two_neighbours(where: str) -> None:
    queue: WaitQueue[Spy] = WaitQueue()
    items = [Spy(i) for i in range(1_000)]
    for item in items:
        queue.append(item)
    index = {"newest": 999, "oldest": 0, "middle": 500}[where]
    Spy.touched.clear()
    Spy.compared = 0
    queue.remove(items[index])
    assert Spy.touched <= {index - 1, index, index + 1}
    assert Spy.compared == 0


def test_emptying_a_long_line_newest_first_never_compares_items() -> None:
    queue: WaitQueue[Spy] = WaitQueue()
    items = [Spy(i) for i in range(2_000)]
    for item in items:
        queue.append(item)
    Spy.compared = 0
    for item in reversed(items):
        Spy.touched.clear()
        assert queue.remove(item)
        assert len(Spy.touched) <= 2  # the item and the one before it (the end is no item)
    assert Spy.compared == 0
    assert len(queue) == 0


class AgainstAList(RuleBasedStateMachine):
    """Any sequence of arrivals, departures and pops keeps the order a plain list keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: WaitQueue[Item] = WaitQueue()
        self.model: list[Item] = []
        self.left: list[Item] = []  # popped or removed: in no line now
        self.count = 0

    @rule()
    def arrive(self) -> None:
        item = Item(self.count)
        self.count += 1
        self.queue.append(item)
        self.model.append(item)

    @precondition(lambda self: self.left)
    @rule(data=st.data())
    def come_back(self, data: st.DataObject) -> None:
        item = self.left.pop(data.draw(st.integers(0, len(self.left) - 1)))
        self.queue.append(item)
        self.model.append(item)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def give_up(self, data: st.DataObject) -> None:
        item = self.model.pop(data.draw(st.integers(0, len(self.model) - 1)))
        assert self.queue.remove(item)
        self.left.append(item)

    @precondition(lambda self: self.left)
    @rule(data=st.data())
    def give_up_again(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self.left))
        assert not self.queue.remove(item)

    @rule()
    def serve_oldest(self) -> None:
        if not self.model:
            with pytest.raises(IndexError):
                self.queue.popleft()
            return
        item = self.queue.popleft()
        assert item is self.model.pop(0)
        self.left.append(item)

    @rule()
    def drop_newest(self) -> None:
        if not self.model:
            with pytest.raises(IndexError):
                self.queue.pop()
            return
        item = self.queue.pop()
        assert item is self.model.pop()
        self.left.append(item)

    @invariant()
    def same_line(self) -> None:
        assert len(self.queue) == len(self.model)
        assert list(self.queue) == self.model


AgainstAList.TestCase.settings = settings(max_examples=200, stateful_step_count=60)
test_against_a_list = AgainstAList.TestCase
