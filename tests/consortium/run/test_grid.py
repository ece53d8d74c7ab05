"""The paced grid: Flower's public push/pull API, a backing-off interval, and a stop event."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from consortium.errors import RunInterrupted
from consortium.run import grid as paced
from consortium.run.grid import PacedGrid


@dataclass
class _Meta:
    reply_to_message_id: str = ""
    dst_node_id: int = 0
    src_node_id: int = 0


@dataclass
class _Msg:
    metadata: _Meta


def msgs(*nodes: int) -> list[Any]:
    """Messages to ``nodes`` (what the grid reads of a Flower message: its destination)."""
    return [_Msg(_Meta(dst_node_id=n)) for n in nodes]


@dataclass
class FakeGrid:
    """Answers the ``i``-th message pushed after ``delays[i]`` seconds (counted from its push);
    counts pulls."""

    delays: list[float]
    pulls: int = 0
    pushed: list[tuple[str, int, float]] = field(default_factory=list)  # id, node, when

    @property
    def ids(self) -> list[str]:
        return [i for i, _, _ in self.pushed]

    def push_messages(self, messages: Any) -> list[str]:
        new = [(f"m{len(self.pushed) + k}", m.metadata.dst_node_id, time.monotonic())
               for k, m in enumerate(messages)]
        self.pushed += new
        return [i for i, _, _ in new]

    def pull_messages(self, message_ids: Any) -> list[_Msg]:
        self.pulls += 1
        now, wanted = time.monotonic(), set(message_ids)
        return [_Msg(_Meta(reply_to_message_id=i, src_node_id=n))
                for (i, n, at), d in zip(self.pushed, self.delays, strict=False)
                if i in wanted and now - at >= d]

    def get_node_ids(self) -> list[int]:
        return [1, 2]


def _grid(inner: FakeGrid, stop: threading.Event | None = None) -> PacedGrid:
    return PacedGrid(inner, stop)  # type: ignore[arg-type]


def test_all_replies_arrive_as_soon_as_they_are_there() -> None:
    inner = FakeGrid([0.0, 0.15])
    started = time.monotonic()
    replies = list(_grid(inner).send_and_receive(msgs(1, 2), timeout=10))
    took = time.monotonic() - started
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m0", "m1"]
    assert took < 0.15 + paced.MAX_INTERVAL_S
    assert took < 1.0  # Flower's deployed grid would have slept 3 s before its second pull


def test_the_timeout_ends_the_wait_with_the_replies_so_far() -> None:
    inner = FakeGrid([0.0, 60.0])
    started = time.monotonic()
    replies = list(_grid(inner).send_and_receive(msgs(1, 2), timeout=0.4))
    assert [r.metadata.reply_to_message_id for r in replies] == ["m0"]
    assert 0.4 <= time.monotonic() - started < 0.4 + paced.MAX_INTERVAL_S + 0.2


def test_polling_backs_off_while_nothing_arrives() -> None:
    inner = FakeGrid([60.0])
    _grid(inner).send_and_receive(msgs(1), timeout=2.0)
    # a fixed 0.02 s interval would pull ~100 times in 2 s; the backed-off one far fewer
    assert inner.pulls < 30


def test_the_pull_interval_is_a_fraction_of_the_wait_so_far_within_bounds() -> None:
    assert paced.pull_interval(0.0) == paced.FIRST_INTERVAL_S
    assert paced.pull_interval(0.0, paced.DEPLOYED_FIRST_INTERVAL_S) == (
        paced.DEPLOYED_FIRST_INTERVAL_S)
    assert paced.pull_interval(1.0) == pytest.approx(paced.BACKOFF * 1.0)
    assert paced.pull_interval(600.0) == paced.MAX_INTERVAL_S
    assert paced.BACKOFF * 1.0 < paced.MAX_INTERVAL_S  # a 1 s exchange is read ≤ 20 % late


def test_a_reply_after_a_long_wait_is_read_within_a_fraction_of_that_wait() -> None:
    inner = FakeGrid([1.0])
    started = time.monotonic()
    _grid(inner).send_and_receive(msgs(1), timeout=5.0)
    assert time.monotonic() - started < 1.0 + paced.BACKOFF * 1.0 + 0.15


def test_the_stop_event_interrupts_a_wait_promptly() -> None:
    stop = threading.Event()
    inner = FakeGrid([60.0])
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RunInterrupted):
        _grid(inner, stop).send_and_receive(msgs(1), timeout=None)
    assert time.monotonic() - started < 0.3 + paced.MAX_INTERVAL_S + 0.3


def test_a_stopped_run_sends_nothing_more() -> None:
    stop = threading.Event()
    stop.set()
    inner = FakeGrid([0.0])
    with pytest.raises(RunInterrupted):
        _grid(inner, stop).send_and_receive(msgs(1), timeout=1)
    assert inner.ids == []


def test_everything_else_delegates() -> None:
    assert list(_grid(FakeGrid([])).get_node_ids()) == [1, 2]


def test_a_node_still_on_a_stale_message_gets_the_next_one_after_its_late_reply() -> None:
    """Node 2 does not answer within the first exchange: its next message waits for that late
    reply (dropped), node 1's goes at once, and only fresh replies are returned."""
    inner = FakeGrid([0.0, 0.5, 0.0, 0.0])
    grid = _grid(inner)
    first = list(grid.send_and_receive(msgs(1, 2), timeout=0.2))
    assert [r.metadata.reply_to_message_id for r in first] == ["m0"]
    assert grid.stale == {"m1": 2}
    second = list(grid.send_and_receive(msgs(1, 2), timeout=5))
    assert sorted(r.metadata.reply_to_message_id for r in second) == ["m2", "m3"]
    (_, _, node1_at), (_, _, node2_at) = inner.pushed[2], inner.pushed[3]
    assert node2_at - inner.pushed[1][2] >= 0.5 > node1_at - inner.pushed[1][2]
    assert grid.stale == {}


def test_a_node_that_never_answers_again_is_left_out_within_the_timeout() -> None:
    inner = FakeGrid([0.0, 60.0, 0.0])
    grid = _grid(inner)
    grid.send_and_receive(msgs(1, 2), timeout=0.1)
    started = time.monotonic()
    replies = list(grid.send_and_receive(msgs(1, 2), timeout=0.4))
    assert 0.4 <= time.monotonic() - started < 0.4 + paced.MAX_INTERVAL_S + 0.2
    assert [r.metadata.reply_to_message_id for r in replies] == ["m2"]
    assert [node for _, node, _ in inner.pushed] == [1, 2, 1]  # node 2's was never sent
    assert grid.stale == {"m1": 2}
