"""Statuses and modes are enums with the strings the store always held; a row that holds any
other value is refused when read, naming the run (and round) and the value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consortium.errors import StoreError
from consortium.store import records
from consortium.store.records import (
    MODE_DEMO,
    MODE_DEPLOYMENT,
    ROUND_FAILED,
    ROUND_OK,
    RUN_ABANDONED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STATUSES,
    RUN_STOPPED,
    RoundStatus,
    RunMode,
    RunStatus,
)
from consortium.store.run_store import RunStore
from tests.consortium.store.test_run_store import round_record, run_record, site


def test_the_stored_strings_are_unchanged() -> None:
    assert [s.value for s in RUN_STATUSES] == [
        "running", "completed", "stopped", "failed", "interrupted", "abandoned"]
    assert [s.value for s in RoundStatus] == ["ok", "failed"]
    assert [m.value for m in RunMode] == ["deployment", "local-demo"]
    assert RunStatus.KILLED == "killed" and RunStatus.KILLED not in RUN_STATUSES


def test_the_module_constants_are_the_enum_members() -> None:
    assert (RUN_RUNNING, RUN_COMPLETED, RUN_STOPPED, RUN_FAILED, RUN_INTERRUPTED,
            RUN_ABANDONED) == (RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.STOPPED,
                               RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.ABANDONED)
    assert (ROUND_OK, ROUND_FAILED) == (RoundStatus.OK, RoundStatus.FAILED)
    assert records.ROUND_STATUSES == (ROUND_OK, ROUND_FAILED)
    assert (MODE_DEPLOYMENT, MODE_DEMO) == (RunMode.DEPLOYMENT, RunMode.LOCAL_DEMO)
    # they still read, print and encode as the plain strings
    assert f"{RUN_COMPLETED}" == "completed" and json.dumps(ROUND_OK) == '"ok"'


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        store.start_run(run_record())
        store.record_round("r1", round_record(1, site("a", 1.0)))
        store.finish_run("r1", status=RUN_INTERRUPTED, reason="stop", finished_at="t2")
        store.claim_run("r1", seen_status=RUN_INTERRUPTED, seen_owner=run_record().owner,
                        owner="host:1")
    return path


def _set(path: Path, sql: str, value: object) -> None:
    with RunStore(path) as store, store.db.transaction() as conn:
        conn.execute(sql, (value,))


def test_values_read_back_are_enum_members(tmp_path: Path) -> None:
    with RunStore(_store(tmp_path), readonly=True) as ro:
        run, rounds = ro.get_run("r1"), ro.rounds("r1")
    assert type(run.status) is RunStatus and run.status is RUN_RUNNING  # reopened
    assert type(run.mode) is RunMode and run.mode is MODE_DEMO
    assert type(rounds[0].status) is RoundStatus and rounds[0].status is ROUND_OK


def test_a_run_stored_before_modes_reads_as_deployment(tmp_path: Path) -> None:
    path = _store(tmp_path)
    with RunStore(path) as store:
        store.db.conn.execute("ALTER TABLE runs RENAME COLUMN mode TO mode_gone")
    with RunStore(path, readonly=True) as ro:
        assert ro.get_run("r1").mode is MODE_DEPLOYMENT


@pytest.mark.parametrize("value", ["bogus", "Running", "killed", "", "running "])
def test_an_unknown_run_status_in_a_row_is_a_store_error(tmp_path: Path, value: object) -> None:
    path = _store(tmp_path)
    _set(path, "UPDATE runs SET status=?", value)
    with RunStore(path, readonly=True) as ro:
        for read in (lambda: ro.get_run("r1"), ro.list_runs):
            with pytest.raises(StoreError, match=rf"run r1: unknown RunStatus {value!r} "
                                                 r"in the run store \(expected one of running,"):
                read()


def test_an_unknown_mode_in_a_row_is_a_store_error(tmp_path: Path) -> None:
    path = _store(tmp_path)
    _set(path, "UPDATE runs SET mode=?", "demo")
    with RunStore(path, readonly=True) as ro, pytest.raises(
            StoreError, match="run r1: unknown RunMode 'demo'"):
        ro.get_run("r1")


def test_an_unknown_round_status_in_a_row_is_a_store_error(tmp_path: Path) -> None:
    path = _store(tmp_path)
    _set(path, "UPDATE rounds SET status=?", "OK")
    with RunStore(path, readonly=True) as ro, pytest.raises(
            StoreError, match=r"run r1 round 1: unknown RoundStatus 'OK' .*expected one of "
                              r"ok, failed"):
        ro.rounds("r1")
