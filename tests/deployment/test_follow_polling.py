"""Following a deployed run reads the store every poll and asks the SuperLink (a ``flwr ls``
process, about a second of CPU on the coordinator's machine) only every ``status_s``, and at
once when the store shows the run ended."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from consortium.deployment import submit
from consortium.store.records import RUN_COMPLETED, RUN_RUNNING


def test_the_superlink_is_asked_rarely_while_the_store_shows_the_run_running(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    store_status = [RUN_RUNNING]
    asked: list[float] = []

    def run_status(*_: object) -> str:
        asked.append(now[0])
        return "finished:completed" if store_status[0] == RUN_COMPLETED else "running"

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 25.0:
            store_status[0] = RUN_COMPLETED

    monkeypatch.setattr(submit, "run_status", run_status)
    monkeypatch.setattr(submit, "_recorded",
                        lambda *_: (SimpleNamespace(status=store_status[0]), []))
    monkeypatch.setattr(submit.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(submit.time, "sleep", sleep)
    sub = submit.Submission(run_id="r", flower_run_id=1, store=Path("unused"))
    status = submit.follow(None, "fed", sub, poll_s=1.0, status_s=10.0)  # type: ignore[arg-type]
    assert status == "finished:completed"
    # every 10 s, then at the next poll after the store showed the run ended
    assert asked == [0.0, 10.0, 20.0, 26.0]


def test_rounds_recorded_before_the_superlink_says_finished_are_all_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The run may end between two looks: the store is read after the SuperLink is asked."""
    now, recorded = [0.0], [1]

    def run_status(*_: object) -> str:
        if now[0] >= 10.0:
            recorded.append(2)  # the last round and the run's end land just before the answer
            return "finished:completed"
        return "running"

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(submit, "run_status", run_status)
    monkeypatch.setattr(submit, "_recorded", lambda *_: (
        SimpleNamespace(status=RUN_COMPLETED if 2 in recorded else RUN_RUNNING),
        [SimpleNamespace(round=r) for r in recorded]))
    monkeypatch.setattr(submit.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(submit.time, "sleep", sleep)
    sub = submit.Submission(run_id="r", flower_run_id=1, store=Path("unused"))
    followed: list[int] = []
    submit.follow(None, "fed", sub, on_round=lambda rec: followed.append(rec.round),  # type: ignore[arg-type]
                  poll_s=1.0, status_s=10.0)
    assert followed == [1, 2]
