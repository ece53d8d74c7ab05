"""A round, its receipts and its audit entries commit in one transaction, or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium.audit import registry
from consortium.audit.log import AuditLog
from consortium.audit.trail import RunAudit
from consortium.home import open_home
from consortium.run import rounds as rr
from consortium.run.attribution import FitJudgement
from consortium.store.records import RoundRecord
from consortium.store.run_store import RunStore
from policies.loader import LoadedPolicy
from tests.consortium.audit_fixture import SITES, make_receipt, run_record, trained

COUNTED = ("rounds", "site_rounds", "checkpoints", "receipts", "audit_log")


def counts(store: RunStore) -> dict[str, int]:
    return {t: int(store.db.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]) for t in COUNTED}


@pytest.fixture
def live(tmp_path: Path, loaded: LoadedPolicy, site_keys: dict[str, Ed25519PrivateKey]
         ) -> tuple[RunStore, RunAudit, FitJudgement]:
    store = RunStore(tmp_path / "runs.sqlite")
    log = AuditLog(store.db, key=open_home().signing_key())
    enrolled = {s: registry.enrol(log, s, site_keys[s].public_key(), mode="deployment")
                for s in SITES}
    run = run_record(loaded)
    store.start_run(run)
    audit = RunAudit(log, run)
    audit.start()
    judgement = FitJudgement(trained=[
        trained(make_receipt(s, 1, loaded.sha256).sign(site_keys[s]), enrolled[s])
        for s in SITES])
    return store, audit, judgement


def record(audit: RunAudit, judgement: FitJudgement) -> RoundRecord:
    return rr.make_round(1, judgement=judgement, evals=[], started_at=rr.utc_now(),
                         duration_s=1.0, policy_sha256=audit.run.policy_sha256, failure=None)


def test_a_crash_between_the_round_and_its_receipts_leaves_neither(
    live: tuple[RunStore, RunAudit, FitJudgement], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, audit, judgement = live
    before = counts(store)
    real = AuditLog.store_receipt
    stored: list[str] = []

    def crash_on_third(self: AuditLog, *args: object, **kwargs: object) -> object:
        if len(stored) == 2:
            raise OSError("disk vanished")
        stored.append("x")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AuditLog, "store_receipt", crash_on_third)
    blob, digest = rr.checkpoint_bytes([])
    with pytest.raises(OSError, match="disk vanished"), store.db.transaction():
        store.record_round(audit.run.run_id, record(audit, judgement), checkpoint=blob,
                           checkpoint_sha256=digest)
        audit.round(1, judgement, failures=0, status="ok", reason=None)
    assert len(stored) == 2  # two receipts and the round were written before the crash
    assert counts(store) == before
    assert not store.db.conn.in_transaction


def test_the_whole_round_commits_in_one_transaction(
    live: tuple[RunStore, RunAudit, FitJudgement]
) -> None:
    store, audit, judgement = live
    before = counts(store)
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    blob, digest = rr.checkpoint_bytes([])
    with store.db.transaction():
        store.record_round(audit.run.run_id, record(audit, judgement), checkpoint=blob,
                           checkpoint_sha256=digest)
        audit.round(1, judgement, failures=0, status="ok", reason=None)
    store.db.conn.set_trace_callback(None)
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE", "COMMIT"]
    after = counts(store)
    assert after["rounds"] == before["rounds"] + 1
    assert after["site_rounds"] == before["site_rounds"] + len(SITES)
    assert after["checkpoints"] == before["checkpoints"] + 1
    assert after["receipts"] == before["receipts"] + len(SITES)
    assert after["audit_log"] == before["audit_log"] + len(SITES) + 1  # receipts + round
