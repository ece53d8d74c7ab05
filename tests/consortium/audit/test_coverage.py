"""Every row the export and the dashboard show is covered by the signed log: a changed, deleted
or added row of runs, rounds, site_rounds, checkpoints or receipts fails verification, naming
the table, run, round, site and column (issue 14)."""

from __future__ import annotations

import math
import sqlite3
from enum import Enum
from pathlib import Path

import pytest

from consortium.audit.figures import same, value
from consortium.audit.log import AuditLog
from consortium.audit.registry import KeyRegistry
from consortium.audit.trail import RunAudit
from consortium.audit.verify import verify_store
from consortium.errors import RowNotCovered
from consortium.home import open_home
from consortium.run import rounds as rr
from consortium.run.attribution import FitJudgement
from consortium.store.run_store import RunStore
from policies.loader import LoadedPolicy
from tests.consortium.audit_fixture import (
    RUN_ID,
    AuditedRun,
    make_receipt,
    run_record,
    trained,
    write_audited_run,
)


@pytest.fixture
def with_checkpoints(tmp_path: Path) -> AuditedRun:
    """The audited run, with a checkpoint per round."""
    return write_audited_run(tmp_path, checkpoints=True)


def edit(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """What an attacker with write access to the store does (dropping receipts' triggers)."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS receipts_no_update")
        conn.execute(sql, params)
    conn.close()


def test_the_genuine_rows_are_covered(with_checkpoints: AuditedRun) -> None:
    assert verify_store(with_checkpoints.store).runs == [RUN_ID]


@pytest.mark.parametrize(("sql", "message"), [
    ("UPDATE site_rounds SET epsilon=0.01 WHERE round=2 AND site='hungary'",
     f"site_rounds row of run {RUN_ID} round 2 site hungary: column epsilon is 0.01"),
    ("UPDATE site_rounds SET noise_multiplier=9 WHERE round=1 AND site='cleveland'",
     "site_rounds row of .* round 1 site cleveland: column noise_multiplier"),
    ("UPDATE site_rounds SET accuracy=0.99 WHERE round=1 AND site='cleveland'",
     "site_rounds row of .* round 1 site cleveland: column accuracy is 0.99"),
    ("UPDATE rounds SET accuracy_mean=0.99 WHERE round=1",
     f"rounds row of run {RUN_ID} round 1: column accuracy_mean is 0.99"),
    ("UPDATE rounds SET status='failed', failure_reason='x' WHERE round=2",
     "rounds row of .* round 2: column status is 'failed', but the signed log says 'ok'"),
    ("UPDATE runs SET status='stopped'",
     f"runs row of run {RUN_ID}: column status is 'stopped'.*'completed'"),
    ("UPDATE runs SET stop_reason='target accuracy reached'",
     "runs row of .*: column stop_reason"),
    ("UPDATE runs SET epsilon_ceiling=5", "runs row of .*: column epsilon_ceiling is 5.0"),
    ("UPDATE runs SET rounds_planned=9", "runs row of .*: column rounds_planned is 9"),
    ("UPDATE runs SET sites_json='[\"cleveland\"]'", "runs row of .*: column sites_json"),
    ("UPDATE receipts SET epsilon=0.01 WHERE round=1 AND site='hungary'",
     f"receipts row of run {RUN_ID} round 1 site hungary: column epsilon is 0.01"),
    ("DELETE FROM site_rounds WHERE round=1 AND site='hungary'",
     "site_rounds of run .* round 1: sites .* but the signed round records"),
    ("DELETE FROM site_rounds WHERE round=2", "site_rounds of run .* round 2"),
    ("DELETE FROM rounds WHERE round=2",
     "the log signs round\\(s\\) \\[2\\], but the table holds no row"),
    ("INSERT INTO rounds SELECT run_id, 3, status, started_at, finished_at, duration_s, "
     "accuracy_mean, accuracy_weighted, loss_mean, loss_weighted, failure_reason, "
     "policy_sha256 FROM rounds WHERE round=2",
     "rounds row of run .* round 3: no signed round entry covers it"),
    ("INSERT INTO runs(run_id, started_at, status, engine, policy_sha256, policy_json, delta, "
     "epsilon_ceiling, rounds_planned, seed, sites_json, secagg_json) SELECT 'ghost', "
     "started_at, 'completed', engine, policy_sha256, policy_json, delta, epsilon_ceiling, "
     "rounds_planned, seed, sites_json, secagg_json FROM runs",
     "runs rows of run\\(s\\) ghost: no signed run-start"),
    ("DELETE FROM runs", f"the log signs run\\(s\\) {RUN_ID}, but the table holds no row"),
])
def test_an_edited_row_is_named(with_checkpoints: AuditedRun, sql: str, message: str) -> None:
    edit(with_checkpoints.store, sql)
    with pytest.raises(RowNotCovered, match=message):
        verify_store(with_checkpoints.store)


def test_a_swapped_checkpoint_is_named(with_checkpoints: AuditedRun) -> None:
    other, sha = rr.checkpoint_bytes([])
    edit(with_checkpoints.store, "UPDATE checkpoints SET model=? WHERE round=2", (other,))
    with pytest.raises(RowNotCovered, match=f"checkpoints row of run {RUN_ID} round 2: column "
                                            "model does not hash"):
        verify_store(with_checkpoints.store)
    edit(with_checkpoints.store, "UPDATE checkpoints SET sha256=? WHERE round=2", (sha,))
    with pytest.raises(RowNotCovered, match=r"checkpoints row of .* round 2: column sha256"):
        verify_store(with_checkpoints.store)
    edit(with_checkpoints.store, "DELETE FROM checkpoints WHERE round=2")
    with pytest.raises(RowNotCovered, match=r"signed rounds \[2\] have a checkpoint"):
        verify_store(with_checkpoints.store)



def test_non_finite_figures_are_signed_as_the_store_keeps_them(
    audited: AuditedRun, loaded: LoadedPolicy
) -> None:
    """A site that reported no accuracy (NaN: SQLite stores NULL) and an infinite loss."""
    with RunStore(audited.store) as store:
        log = AuditLog(store.db, key=open_home(audited.home).signing_key())
        reg = KeyRegistry.from_entries(log.entries())
        run = run_record(loaded, run_id="run-nan", rounds=1)
        audit = RunAudit(log, run)
        with store.db.transaction():
            store.start_run(run)
            audit.start()
        signed = make_receipt("hungary", 1, loaded.sha256, run_id="run-nan").sign(
            audited.site_keys["hungary"])
        judgement = FitJudgement(trained=[trained(signed, reg.active("hungary"))])  # type: ignore[arg-type]
        evals = [rr.EvalFigure(site="hungary", loss=math.inf, accuracy=math.nan,
                               num_examples=50)]
        record = rr.make_round(1, judgement=judgement, evals=evals, started_at=rr.utc_now(),
                               duration_s=1.0, policy_sha256=loaded.sha256, failure=None)
        with store.db.transaction():
            store.record_round("run-nan", record)
            audit.round(1, judgement, failures=0, status=record.status, reason=None,
                        record=record)
    verify_store(audited.store, run_id="run-nan")
    edit(audited.store, "UPDATE site_rounds SET loss=0.5 WHERE run_id='run-nan'")
    with pytest.raises(RowNotCovered, match=r"round 1 site hungary: column loss is 0\.5, but the "
                                            r"signed log says 'inf'"):
        verify_store(audited.store, run_id="run-nan")


def test_a_status_enum_is_compared_by_its_value() -> None:
    """Statuses may become enums with the same string values: signed and compared by value."""

    class Status(Enum):
        OK = "ok"

    assert value(Status.OK) == "ok" and same("ok", Status.OK) and not same("failed", Status.OK)
    assert value(math.nan) is None and value(-math.inf) == "-inf" and same(1, 1.0)
