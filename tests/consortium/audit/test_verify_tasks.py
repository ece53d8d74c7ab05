"""The verifier and tasks: every receipt must name the run's task; the run-start entry's task
must match its hash; version-1 receipts (no task) are accepted only from runs recorded before
tasks existed, and a clear refusal names them in a run that has a task."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from consortium.audit.log import AuditLog
from consortium.audit.registry import KeyRegistry
from consortium.audit.trail import RunAudit
from consortium.audit.verify import verify_store
from consortium.errors import ChainBroken, ReceiptInvalid
from consortium.home import open_home
from consortium.run.attribution import FitJudgement
from consortium.store.records import RunRecord
from consortium.store.run_store import RunStore
from policies.loader import LoadedPolicy
from site_node.protocol.receipt import SignedReceipt
from tests.consortium.audit_fixture import (
    RUN_ID,
    TASK,
    AuditedRun,
    make_receipt,
    run_record,
    trained,
    write_round,
)


def add_run(audited: AuditedRun, run: RunRecord, receipts: list[SignedReceipt]) -> None:
    """Append a one-round run whose round stores ``receipts`` (as the workflow would)."""
    with RunStore(audited.store) as store:
        log = AuditLog(store.db, key=open_home(audited.home).signing_key())
        reg = KeyRegistry.from_entries(log.entries())
        audit = RunAudit(log, run)
        with store.db.transaction():
            store.start_run(run)
            audit.start()
        judgement_keys = {s.receipt.site: reg.active(s.receipt.site) for s in receipts}
        judgement = FitJudgement(trained=[trained(s, judgement_keys[s.receipt.site])  # type: ignore[arg-type]
                                          for s in receipts])
        write_round(store, audit, 1, judgement)


def test_the_run_start_entry_records_the_task(audited: AuditedRun) -> None:
    with RunStore(audited.store, readonly=True) as store:
        (start,) = [e for e in AuditLog(store.db).entries(RUN_ID) if e.kind == "run-start"]
    assert start.payload["task_sha256"] == TASK.sha256
    assert json.loads(start.payload["task_json"])["name"] == "heart-disease"
    verify_store(audited.store)


def test_a_receipt_for_another_task_is_caught(audited: AuditedRun, loaded: LoadedPolicy) -> None:
    other = make_receipt("hungary", 1, loaded.sha256, run_id="run-t", task_sha256="ab" * 32)
    add_run(audited, run_record(loaded, run_id="run-t", rounds=1),
            [other.sign(audited.site_keys["hungary"])])
    with pytest.raises(ReceiptInvalid, match=r"task hash abababababababab… is not the run's "
                                             r"task " + TASK.sha256[:16]):
        verify_store(audited.store, run_id="run-t")


def test_a_run_start_whose_task_does_not_match_its_hash_is_caught(
        audited: AuditedRun, loaded: LoadedPolicy) -> None:
    run = replace(run_record(loaded, run_id="run-h", rounds=1),
                  task_json=TASK.canonical_json.replace("[0,100]", "[0,120]"))
    add_run(audited, run, [])
    with pytest.raises(ChainBroken, match=r"\(run-start\): the task does not match its hash"):
        verify_store(audited.store, run_id="run-h")


def test_version_1_receipts_verify_in_a_run_recorded_before_tasks(
        audited: AuditedRun, loaded: LoadedPolicy) -> None:
    old = replace(run_record(loaded, run_id="run-old", rounds=1), task_sha256=None,
                  task_json=None)
    v1 = replace(make_receipt("hungary", 1, loaded.sha256, run_id="run-old"), version=1,
                 task_sha256="")
    add_run(audited, old, [v1.sign(audited.site_keys["hungary"])])
    result = verify_store(audited.store, run_id="run-old")
    assert result.runs == ["run-old"] and len(result.checks) == 1


def test_a_version_2_receipt_in_a_run_recorded_before_tasks_is_caught(
        audited: AuditedRun, loaded: LoadedPolicy) -> None:
    old = replace(run_record(loaded, run_id="run-old2", rounds=1), task_sha256=None,
                  task_json=None)
    add_run(audited, old, [make_receipt("hungary", 1, loaded.sha256, run_id="run-old2")
                           .sign(audited.site_keys["hungary"])])
    with pytest.raises(ReceiptInvalid, match="is not the run's task none"):
        verify_store(audited.store, run_id="run-old2")


def test_a_version_1_receipt_in_a_run_with_a_task_is_refused_clearly(
        audited: AuditedRun, loaded: LoadedPolicy) -> None:
    v1 = replace(make_receipt("hungary", 1, loaded.sha256, run_id="run-mixed"), version=1,
                 task_sha256="")
    add_run(audited, run_record(loaded, run_id="run-mixed", rounds=1),
            [v1.sign(audited.site_keys["hungary"])])
    with pytest.raises(ReceiptInvalid, match=r"a version-1 receipt names no task, but run "
                                             r"run-mixed trains task .*accepted only from runs "
                                             r"recorded before tasks existed"):
        verify_store(audited.store, run_id="run-mixed")
