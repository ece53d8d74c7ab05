"""The run store: atomic rounds, read-only access, clear errors, listing order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from consortium.errors import StoreError
from consortium.store.records import (
    MODE_DEMO,
    ROUND_OK,
    RUN_COMPLETED,
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
)
from consortium.store.records import SiteRoundRecord as Site
from consortium.store.run_store import RunStore


def run_record(run_id: str = "r1", started: str = "2026-01-01T00:00:00",
               mode: str = MODE_DEMO) -> RunRecord:
    return RunRecord(run_id=run_id, started_at=started, status=RUN_RUNNING, engine="simulation",
                     policy_sha256="ab" * 32, policy_json="{}", delta=1e-5, epsilon_ceiling=3.0,
                     rounds_planned=2, seed=0, sites=("a", "b"), secagg_json="{}", mode=mode)


def site(name: str, eps: float, refusal: str | None = None) -> Site:
    return Site(site=name, accuracy=0.8, loss=0.4, num_examples=10, num_train_examples=30,
                epsilon=eps, delta=1e-6, noise_multiplier=1.1, sample_rate=0.25, steps=4,
                max_grad_norm=1.0, accountant="rdp", trained=refusal is None, refusal=refusal)


def round_record(n: int, *sites: Site) -> RoundRecord:
    return RoundRecord(round=n, status=ROUND_OK, started_at="t", finished_at="t", duration_s=1.0,
                       accuracy_mean=0.8, policy_sha256="ab" * 32, sites=sites)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "runs.sqlite"
    with RunStore(path) as store:
        store.start_run(run_record())
        store.record_round("r1", round_record(1, site("a", 1.0), site("b", 0.0, "budget")),
                           checkpoint=b"model", checkpoint_sha256="cafe")
        store.finish_run("r1", status=RUN_COMPLETED, reason="done", finished_at="t2")
    with RunStore(path, readonly=True) as ro:
        assert ro.latest_run_id() == "r1"
        run = ro.get_run("r1")
        assert run.status == RUN_COMPLETED and run.sites == ("a", "b")
        assert run.mode == MODE_DEMO and run.stop_reason == "done"
        rounds = ro.rounds("r1")
        assert [s.site for s in rounds[0].sites] == ["a", "b"]
        assert rounds[0].sites == (site("a", 1.0), site("b", 0.0, "budget"))
        assert ro.checkpoint("r1", 1) == (b"model", "cafe")
        assert ro.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(StoreError, match="no checkpoint"):
            ro.checkpoint("r1", 2)


def test_a_failed_round_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.sqlite")
    store.start_run(run_record())
    dup = round_record(1, site("a", 1.0), site("a", 2.0))  # duplicate site -> constraint error
    with pytest.raises(StoreError, match="write to run store"):
        store.record_round("r1", dup, checkpoint=b"m", checkpoint_sha256="x")
    assert store.rounds("r1") == []
    raw = sqlite3.connect(store.path)
    for table in ("rounds", "site_rounds", "checkpoints"):
        assert raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    store.close()


def test_readonly_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not found"):
        RunStore(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        RunStore(junk, readonly=True)
    RunStore(tmp_path / "empty.sqlite").close()
    with RunStore(tmp_path / "empty.sqlite", readonly=True) as ro:
        with pytest.raises(StoreError, match="holds no run"):
            ro.latest_run_id()
        with pytest.raises(StoreError, match="read-only"):
            ro.start_run(run_record())
        with pytest.raises(StoreError, match="no run 'x'"):
            ro.get_run("x")


def test_runs_are_listed_newest_first(tmp_path: Path) -> None:
    with RunStore(tmp_path / "s.sqlite") as store:
        store.start_run(run_record("old", "2026-01-01"))
        store.start_run(run_record("new", "2026-02-01"))
        assert [r.run_id for r in store.list_runs()] == ["new", "old"]
        assert store.latest_run_id() == "new"
