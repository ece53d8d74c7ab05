"""The Flower runs that carried each consortium run (consortium/deployment/flower_runs.py): kept
in the home, and stopped before a resume when the SuperLink still lists them unfinished."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from consortium.deployment import flower_runs, superlink
from consortium.errors import SuperLinkError


def dep(tmp_path: Path) -> Any:
    return SimpleNamespace(home=SimpleNamespace(root=tmp_path))


def test_each_runs_flower_runs_are_kept_in_order_once(tmp_path: Path) -> None:
    d = dep(tmp_path)
    assert flower_runs.recorded(d, "r1") == []
    for flower_run_id in (7, 9, 7):
        flower_runs.record(d, "r1", flower_run_id)
    flower_runs.record(d, "r2", 11)
    assert flower_runs.recorded(d, "r1") == [7, 9]
    assert flower_runs.recorded(d, "r2") == [11]
    assert [p.name for p in tmp_path.iterdir()] == [flower_runs.FILE]  # no partial file left


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_an_unreadable_record_stops_nothing(tmp_path: Path, text: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / flower_runs.FILE).write_text(text, encoding="utf-8")
    monkeypatch.setattr(superlink, "flwr_cli", lambda *a, **k: pytest.fail("nothing to stop"))
    assert flower_runs.stop_unfinished(dep(tmp_path), "c", "r1", lambda i: "running") == []
    flower_runs.record(dep(tmp_path), "r1", 3)  # and the next submission starts a new record
    assert flower_runs.recorded(dep(tmp_path), "r1") == [3]


def test_only_the_runs_unfinished_flower_runs_are_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    d = dep(tmp_path)
    for flower_run_id in (1, 2, 3, 4):
        flower_runs.record(d, "r1", flower_run_id)
    flower_runs.record(d, "other", 5)
    status = {1: "finished:completed", 2: "running", 3: "starting", 4: "running", 5: "running"}
    calls: list[tuple[str, ...]] = []

    def flwr_cli(_: Any, *args: str, connection: str | None = None) -> dict[str, object]:
        calls.append((*args, str(connection)))
        if args[1] == "4":
            raise SuperLinkError("the SuperLink is not reachable")
        return {"success": True}

    monkeypatch.setattr(superlink, "flwr_cli", flwr_cli)
    assert flower_runs.stop_unfinished(d, "c", "r1", status.__getitem__) == [2, 3]
    assert calls == [("stop", "2", "c"), ("stop", "3", "c"), ("stop", "4", "c")]
    assert "could not stop the earlier Flower run 4 of run r1" in caplog.text
