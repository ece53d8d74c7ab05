"""Fixture run stores for the dashboard tests (see :mod:`tests.dashboard.stores`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from consortium.store.comparisons import record_comparison
from consortium.store.records import RUN_RUNNING, ComparisonRecord
from consortium.store.run_store import RunStore
from dashboard import data, verdict_panel
from dashboard.views import audit
from tests.dashboard.stores import SITES, write_audited_run, write_run


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Streamlit's data cache lives in the process: forget what an earlier test read."""
    for loader in (data.load_runs, data.load_run, data.load_audit_tables,
                   data.load_comparisons):
        loader.clear()
    verdict_panel.clear()
    audit._report_html.clear()


def _new(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
def missing_store(tmp_path: Path) -> Path:
    """A path where no store exists."""
    return tmp_path / "nowhere" / "runs.sqlite"


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    """A store with the schema but no run."""
    with _new(tmp_path) as store:
        return store.path


@pytest.fixture
def one_run_store(tmp_path: Path) -> Path:
    """One completed run of 5 rounds at the four hospitals."""
    with _new(tmp_path) as store:
        write_run(store, "run-one", rounds=5, planned=5)
        return store.path


@pytest.fixture
def several_runs_store(tmp_path: Path) -> Path:
    """Three runs; the newest (``run-c``) has 3 rounds and a site the dashboard does not know."""
    with _new(tmp_path) as store:
        write_run(store, "run-a", rounds=4, started_at="2025-01-01T10:00:00+00:00")
        write_run(store, "run-b", rounds=6, status="stopped",
                  started_at="2025-01-02T10:00:00+00:00")
        write_run(store, "run-c", rounds=3, sites=(*SITES, "oslo"),
                  started_at="2025-01-03T10:00:00+00:00")
        return store.path


@pytest.fixture
def failed_store(tmp_path: Path) -> Path:
    """A run whose round 3 failed, with hungary dropping out of round 2, long_beach
    evaluating without training in round 4 and switzerland refusing round 5."""
    with _new(tmp_path) as store:
        write_run(store, "run-fail", rounds=5, status="failed", failed=[3],
                  dropouts={2: ["hungary"]}, not_trained={4: ["long_beach"]},
                  refusals={5: {"switzerland": "site switzerland refuses run run-fail: the next "
                                               "round would bring its lifetime ε to 6.1 > "
                                               "lifetime ceiling 6"}})
        return store.path


@pytest.fixture
def live_store(tmp_path: Path) -> Path:
    """A running run with 3 of 10 rounds recorded."""
    with _new(tmp_path) as store:
        write_run(store, "run-live", rounds=3, status=RUN_RUNNING,
                  started_at="2025-01-05T10:00:00+00:00")
        return store.path


@pytest.fixture
def garbage_store(tmp_path: Path) -> Path:
    """A file that is not a SQLite database at all."""
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    return path


@pytest.fixture
def partial_store(tmp_path: Path) -> Path:
    """A SQLite file the server has created but not yet given its schema."""
    path = tmp_path / "runs.sqlite"
    sqlite3.connect(path).close()
    path.touch()
    return path


@pytest.fixture
def audited_store(tmp_path: Path) -> Path:
    """Two genuine local-demo runs in one store: ``run-early`` (switzerland refuses every
    round) and the newer ``run-late`` (every site trains)."""
    path = tmp_path / "audited" / "runs.sqlite"
    path.parent.mkdir()
    write_audited_run(path, "run-early", started_at="2026-11-27T00:00:00+00:00",
                      refusals={"switzerland": "site switzerland refuses: lifetime ceiling"})
    write_audited_run(path, "run-late", started_at="2026-11-28T00:00:00+00:00", node_base=2000)
    return path


@pytest.fixture
def comparison_store(tmp_path: Path) -> Path:
    """The digits example compared: a federated run, three local runs and one comparison whose
    models always predict one class (the federated one 9, the local ones 0, 1, 2)."""
    from tests.consortium.run.test_comparison import cells

    with _new(tmp_path) as store:
        for rid, when in (("fed", "10"), ("loc-a", "11"), ("loc-b", "12"), ("loc-c", "13"),
                          ("unrelated", "14")):
            write_run(store, rid, rounds=2, started_at=f"2026-11-28T{when}:00:00+00:00")
        record_comparison(store.db, ComparisonRecord(
            "cmp-1", "2026-11-28T15:00:00+00:00", "0" * 64, "fed",
            {"clinic_a": "loc-a", "clinic_b": "loc-b", "clinic_c": "loc-c"}, cells()))
        return store.path
