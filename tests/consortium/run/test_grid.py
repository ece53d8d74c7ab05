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
    reply_to_message_id: str


@dataclass
class _Reply:
    metadata: _Meta


@dataclass
class FakeGrid:
    """Answers message ``i`` after ``delays[i]`` seconds; counts pulls."""

    delays: list[float]
    pulls: int = 0
    pushed_at: float = 0.0
    ids: list[str] = field(default_factory=list)

    def push_messages(self, messages: Any) -> list[str]:
        self.pushed_at = time.monotonic()
        self.ids = [f"m{i}" for i, _ in enumerate(messages)]
        return list(self.ids)

    def pull_messages(self, message_ids: Any) -> list[_Reply]:
        self.pulls += 1
        now = time.monotonic() - self.pushed_at
        wanted = set(message_ids)
        return [_Reply(_Meta(m)) for m, d in zip(self.ids, self.delays, strict=True)
                if m in wanted and now >= d]

    def get_node_ids(self) -> list[int]:
        return [1, 2]


def test_all_replies_arrive_as_soon_as_they_are_there() -> None:
    inner = FakeGrid([0.0, 0.15])
    started = time.monotonic()
    replies = list(PacedGrid(inner).send_and_receive(["a", "b"], timeout=10))  # type: ignore[arg-type]
    took = time.monotonic() - started
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m0", "m1"]
    assert took < 0.15 + paced.MAX_INTERVAL_S
    assert took < 1.0  # Flower's deployed grid would have slept 3 s before its second pull


def test_the_timeout_ends_the_wait_with_the_replies_so_far() -> None:
    inner = FakeGrid([0.0, 60.0])
    started = time.monotonic()
    replies = list(PacedGrid(inner).send_and_receive(["a", "b"], timeout=0.4))  # type: ignore[arg-type]
    assert [r.metadata.reply_to_message_id for r in replies] == ["m0"]
    assert 0.4 <= time.monotonic() - started < 0.4 + paced.MAX_INTERVAL_S + 0.2


def test_polling_backs_off_while_nothing_arrives() -> None:
    inner = FakeGrid([60.0])
    PacedGrid(inner).send_and_receive(["a"], timeout=2.0)  # type: ignore[arg-type]
    # a fixed 0.02 s interval would pull ~100 times in 2 s; the backed-off one far fewer
    assert inner.pulls < 20


def test_the_stop_event_interrupts_a_wait_promptly() -> None:
    stop = threading.Event()
    inner = FakeGrid([60.0])
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RunInterrupted):
        PacedGrid(inner, stop).send_and_receive(["a"], timeout=None)  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.3 + paced.MAX_INTERVAL_S + 0.3


def test_a_stopped_run_sends_nothing_more() -> None:
    stop = threading.Event()
    stop.set()
    inner = FakeGrid([0.0])
    with pytest.raises(RunInterrupted):
        PacedGrid(inner, stop).send_and_receive(["a"], timeout=1)  # type: ignore[arg-type]
    assert inner.ids == []


def test_everything_else_delegates() -> None:
    assert list(PacedGrid(FakeGrid([])).get_node_ids()) == [1, 2]  # type: ignore[arg-type]
