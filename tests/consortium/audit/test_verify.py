"""Verification of the audit trail: chain, signatures, receipts under the key valid when they
were logged, ε, ceilings, security events; every failure a named exception class."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium.audit import accountant as ia
from consortium.audit import registry, verify
from consortium.audit.head import head_path
from consortium.audit.log import AuditLog
from consortium.audit.registry import EnrolledKey, KeyRegistry
from consortium.audit.trail import RunAudit
from consortium.audit.verify import verify_store
from consortium.errors import (
    AuditVerificationError,
    CeilingPassed,
    ChainBroken,
    EpsilonMismatch,
    ReceiptInvalid,
    SecurityEventsFound,
    SignatureInvalid,
)
from consortium.home import open_home
from consortium.run.attribution import (
    Attribution,
    FitJudgement,
    Reply,
    RoundContext,
    judge_fit,
)
from consortium.store.run_store import RunStore
from policies.loader import LoadedPolicy
from site_node.privacy import accountant as site_accountant
from site_node.protocol import wire
from site_node.protocol.keys import fingerprint
from site_node.protocol.mechanism import Mechanism
from site_node.protocol.receipt import SignedReceipt
from tests.consortium.audit_fixture import (
    RUN_ID,
    SITES,
    TASK,
    AuditedRun,
    make_receipt,
    run_record,
    site_key,
    trained,
    write_round,
)

TRIGGERS = ("audit_log_no_update", "audit_log_no_delete", "receipts_no_update",
            "receipts_no_delete")


def tamper(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """What an attacker with write access does: drop the append-only triggers, edit."""
    conn = sqlite3.connect(path)
    for t in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def another_run(audited: AuditedRun, loaded: LoadedPolicy, run_id: str,
                receipts: list[SignedReceipt]) -> None:
    """Append a one-round run whose round stores ``receipts`` (as the workflow would)."""
    with RunStore(audited.store) as store:
        log = AuditLog(store.db, key=open_home(audited.home).signing_key())
        reg = KeyRegistry.from_entries(log.entries())
        run = run_record(loaded, run_id=run_id, rounds=1)
        audit = RunAudit(log, run)
        with store.db.transaction():
            store.start_run(run)
            audit.start()
        keys = {s.receipt.site: reg.active(s.receipt.site) for s in receipts}
        judgement = FitJudgement(trained=[trained(s, keys[s.receipt.site])  # type: ignore[arg-type]
                                          for s in receipts])
        write_round(store, audit, 1, judgement)


# -- a genuine trail ------------------------------------------------------------------------


def test_genuine_run_verifies(audited: AuditedRun) -> None:
    result = verify_store(audited.store)
    assert result.runs == [RUN_ID] and result.modes == {RUN_ID: "deployment"}
    assert len(result.checks) == len(SITES) * 2
    assert result.security_events == []
    assert result.site_fingerprints == {
        s: [fingerprint(audited.site_keys[s].public_key())] for s in SITES}
    assert result.consortium_fingerprint == fingerprint(
        open_home(audited.home).signing_key().public_key())
    for c in result.checks:
        assert c.independent == pytest.approx(c.claimed, rel=ia.TOLERANCE)
    assert verify_store(audited.store, run_id=RUN_ID).runs == [RUN_ID]
    with pytest.raises(AuditVerificationError, match="no run-start entry"):
        verify_store(audited.store, run_id="no-such-run")


def test_verification_pins_the_consortium_key_when_given(audited: AuditedRun) -> None:
    own = open_home(audited.home).signing_key().public_key()
    verify_store(audited.store, consortium_key=own)
    with pytest.raises(SignatureInvalid, match="seq=1"):
        verify_store(audited.store, consortium_key=Ed25519PrivateKey.generate().public_key())


def test_a_log_rewritten_under_another_key_fails_only_when_the_key_is_pinned(
    audited: AuditedRun, tmp_path: Path, loaded: LoadedPolicy
) -> None:
    """An attacker who rewrites the whole log with a key of their own keeps it consistent;
    only the consortium key obtained out of band exposes it."""
    forged = tmp_path / "forged"
    other = open_home(forged)
    with RunStore(forged / "runs.sqlite") as store:
        log = AuditLog(store.db, key=other.signing_key())
        for s in SITES:
            registry.enrol(log, s, audited.site_keys[s].public_key(), mode="deployment")
        run = run_record(loaded)
        with store.db.transaction():
            store.start_run(run)
            RunAudit(log, run).start()
    verify_store(forged / "runs.sqlite")  # self-consistent, its signed head included
    genuine = open_home(audited.home).signing_key().public_key()
    with pytest.raises(SignatureInvalid, match="seq=1"):
        verify_store(forged / "runs.sqlite", consortium_key=genuine)


# -- tampering ------------------------------------------------------------------------------


def test_one_changed_byte_in_an_entry_breaks_the_chain(audited: AuditedRun) -> None:
    tamper(audited.store, "UPDATE audit_log SET payload_json=replace(payload_json, "
                          "'\"rejected\":0', '\"rejected\":1') WHERE seq=(SELECT MIN(seq) FROM "
                          "audit_log WHERE kind='round')")
    with pytest.raises(ChainBroken, match=r"seq=\d+ \(round\): content does not match"):
        verify_store(audited.store)


def test_altered_log_line_is_named(audited: AuditedRun) -> None:
    tamper(audited.store, "UPDATE audit_log SET payload_json=replace(payload_json, 'completed', "
                          "'stopped') WHERE kind='run-stop'")
    with pytest.raises(ChainBroken, match=r"seq=\d+ \(run-stop\): content does not match"):
        verify_store(audited.store)


def test_deleted_log_line_is_named(audited: AuditedRun) -> None:
    tamper(audited.store, "DELETE FROM audit_log WHERE seq=3")
    with pytest.raises(ChainBroken, match=r"seq=4.*expected seq 3"):
        verify_store(audited.store)


def test_forged_entry_signature_is_named(audited: AuditedRun) -> None:
    forged = site_key(99).sign(b"x" * 32).hex()
    tamper(audited.store, "UPDATE audit_log SET signature=? WHERE seq=5", (forged,))
    with pytest.raises(SignatureInvalid, match="seq=5"):
        verify_store(audited.store)


def test_rewritten_receipt_row_is_named(audited: AuditedRun) -> None:
    tamper(audited.store, "UPDATE receipts SET receipt_json=replace(receipt_json, '\"steps\":4',"
                          " '\"steps\":3') WHERE round=2 AND site='hungary'")
    with pytest.raises(ReceiptInvalid, match="differs from the log"):
        verify_store(audited.store)


def test_a_deleted_receipt_row_is_named(audited: AuditedRun) -> None:
    tamper(audited.store, "DELETE FROM receipts WHERE round=1 AND site='cleveland'")
    with pytest.raises(ReceiptInvalid, match="receipts table and the audit log disagree"):
        verify_store(audited.store)


def test_one_changed_byte_in_the_file_fails(audited: AuditedRun, tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite"
    shutil.copy(audited.store, copy)
    shutil.copy(head_path(audited.store), head_path(copy))  # its signed head too
    data = bytearray(copy.read_bytes())
    at = data.index(b'"epsilon":') + len(b'"epsilon":') + 2  # a digit of a receipt's ε
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    copy.write_bytes(bytes(data))
    with pytest.raises(AuditVerificationError) as err:
        verify_store(copy)
    assert isinstance(err.value, ChainBroken | ReceiptInvalid)


# -- receipts that are signed but wrong -----------------------------------------------------


def test_understated_epsilon_is_caught_even_when_validly_signed(
    audited: AuditedRun, loaded: LoadedPolicy
) -> None:
    good = make_receipt("cleveland", 1, loaded.sha256, run_id="run-lie")
    lie = replace(good, epsilon=good.epsilon * 0.9, lifetime_epsilon=good.epsilon * 0.9)
    another_run(audited, loaded, "run-lie", [lie.sign(audited.site_keys["cleveland"])])
    with pytest.raises(EpsilonMismatch, match="site cleveland run run-lie round 1"):
        verify_store(audited.store, run_id="run-lie")
    verify_store(audited.store, run_id=RUN_ID)  # the other run is unaffected


def test_an_honest_small_prv_epsilon_verifies(audited: AuditedRun, loaded: LoadedPolicy) -> None:
    """Opacus' PRV ε is an upper bound within 0.01: for ε < 1 more than 1% above
    dp_accounting's, and still honest."""
    m = Mechanism(noise_multiplier=3.0, sample_rate=0.2, steps=10, max_grad_norm=1.0,
                  accountant="prv")
    eps = site_accountant.epsilon([m], delta=1e-5, accountant="prv")
    r = replace(make_receipt("hungary", 1, loaded.sha256, run_id="run-prv"),
                noise_multiplier=3.0, sample_rate=0.2, steps=10, accountant="prv",
                epsilon=eps, lifetime_epsilon=eps)
    another_run(audited, loaded, "run-prv", [r.sign(audited.site_keys["hungary"])])
    (check,) = verify_store(audited.store, run_id="run-prv").checks
    assert check.claimed == eps and check.independent < eps
    lie = replace(r, run_id="run-prv-lie", epsilon=check.independent * 0.97,
                  lifetime_epsilon=check.independent * 0.97)
    another_run(audited, loaded, "run-prv-lie", [lie.sign(audited.site_keys["hungary"])])
    with pytest.raises(EpsilonMismatch, match=r"run-prv-lie.*prv.*tolerance 1% \+ 0.01"):
        verify_store(audited.store, run_id="run-prv-lie")


def test_passed_ceiling_is_caught(audited: AuditedRun, loaded: LoadedPolicy) -> None:
    r = make_receipt("long_beach", 1, loaded.sha256, run_id="run-hot")
    r = replace(r, epsilon_ceiling=r.epsilon * 0.5)
    another_run(audited, loaded, "run-hot", [r.sign(audited.site_keys["long_beach"])])
    with pytest.raises(CeilingPassed, match=r"long_beach.*per-run ceiling"):
        verify_store(audited.store, run_id="run-hot")


def test_a_site_ceiling_above_the_consortium_ceiling_is_caught(
    audited: AuditedRun, loaded: LoadedPolicy
) -> None:
    r = replace(make_receipt("hungary", 1, loaded.sha256, run_id="run-loose"),
                epsilon_ceiling=loaded.policy.epsilon_ceiling * 2)
    another_run(audited, loaded, "run-loose", [r.sign(audited.site_keys["hungary"])])
    with pytest.raises(CeilingPassed, match="above the consortium's"):
        verify_store(audited.store, run_id="run-loose")


def test_a_receipt_for_another_policy_is_caught(audited: AuditedRun,
                                               loaded: LoadedPolicy) -> None:
    r = make_receipt("hungary", 1, "cd" * 32, run_id="run-policy")
    another_run(audited, loaded, "run-policy", [r.sign(audited.site_keys["hungary"])])
    with pytest.raises(ReceiptInvalid, match="is not the run's"):
        verify_store(audited.store, run_id="run-policy")


def test_an_impostor_reply_is_rejected_logged_and_never_stored(
    audited: AuditedRun, loaded: LoadedPolicy
) -> None:
    """A reply whose receipt is signed by a key nobody enrolled: rejected, logged as a security
    event, not stored; the chain stays intact and verification names the event."""
    intruder = site_key(7)
    with RunStore(audited.store) as store:
        log = AuditLog(store.db, key=open_home(audited.home).signing_key())
        reg = KeyRegistry.from_entries(log.entries())
        run = run_record(loaded, run_id="run-imp", rounds=1)
        audit = RunAudit(log, run)
        with store.db.transaction():
            store.start_run(run)
            audit.start()
        fake = make_receipt("hungary", 1, loaded.sha256, run_id="run-imp").sign(intruder)
        reply = Reply(node_id=5, num_examples=fake.receipt.num_examples,
                      metrics={wire.SITE: "hungary", **fake.to_wire()})
        judgement = judge_fit([reply], Attribution(reg, SITES, demo=True),
                              RoundContext("run-imp", 1, loaded.sha256, TASK.sha256))
        assert judgement.trained == [] and len(judgement.rejections) == 1
        write_round(store, audit, 1, judgement, failure="reply rejected")
        assert log.receipts("run-imp") == []
    with pytest.raises(SecurityEventsFound, match="signature does not verify") as err:
        verify_store(audited.store, run_id="run-imp")
    result = err.value.result
    assert isinstance(result, verify.VerificationResult) and result.runs == ["run-imp"]
    (event,) = result.security_events
    assert event.run_id == "run-imp" and "hungary" in event.reason
    verify_store(audited.store, run_id=RUN_ID)  # the genuine run stays verified


# -- key rotation and revocation ------------------------------------------------------------


def rotation_store(tmp_path: Path, loaded: LoadedPolicy, *, late_old_key: str | None = None
                   ) -> Path:
    """Site cleveland signs round 1 with K1, rotates to K2, signs round 2 with K2. With
    ``late_old_key`` ("old" or "new"), round 2 is instead signed by K1 after the rotation and
    logged under K1's ("old") or K2's ("new") fingerprint."""
    k1, k2 = site_key(1), site_key(2)
    path = tmp_path / "rot.sqlite"
    with RunStore(path) as store:
        log = AuditLog(store.db, key=open_home().signing_key())
        e1 = registry.enrol(log, "cleveland", k1.public_key(), mode="deployment")
        run = run_record(loaded, run_id="rot")
        audit = RunAudit(log, run)
        with store.db.transaction():
            store.start_run(run)
            audit.start()
        r1 = make_receipt("cleveland", 1, loaded.sha256, run_id="rot")
        write_round(store, audit, 1, FitJudgement(trained=[trained(r1.sign(k1), e1)]))
        e2 = registry.enrol(log, "cleveland", k2.public_key(), mode="deployment")
        r2 = make_receipt("cleveland", 2, loaded.sha256, run_id="rot")
        t2 = trained(r2.sign(k2), e2)
        if late_old_key is not None:
            key: EnrolledKey = e1 if late_old_key == "old" else e2
            t2 = trained(r2.sign(k1), key)
        write_round(store, audit, 2, FitJudgement(trained=[t2]))
    return path


def test_receipts_verify_under_the_key_valid_when_logged(tmp_path: Path,
                                                         loaded: LoadedPolicy) -> None:
    path = rotation_store(tmp_path, loaded)
    result = verify_store(path)
    fp1, fp2 = (fingerprint(site_key(i).public_key()) for i in (1, 2))
    assert result.site_fingerprints == {"cleveland": [fp1, fp2]}
    assert [(c.round, c.site) for c in result.checks] == [(1, "cleveland"), (2, "cleveland")]
    log = AuditLog(RunStore(path, readonly=True).db)
    assert [r.key_fingerprint for r in log.receipts("rot")] == [fp1, fp2]


@pytest.mark.parametrize(("logged_under", "error", "why"), [
    ("old", ReceiptInvalid, "but site cleveland had key .* enrolled then"),
    ("new", SignatureInvalid, "round 2: signature does not verify"),
])
def test_a_receipt_signed_by_the_rotated_out_key_fails(
    tmp_path: Path, loaded: LoadedPolicy, logged_under: str, error: type[Exception], why: str
) -> None:
    path = rotation_store(tmp_path, loaded, late_old_key=logged_under)
    with pytest.raises(error, match=why):
        verify_store(path)


def test_a_receipt_logged_after_revocation_fails(audited: AuditedRun,
                                                 loaded: LoadedPolicy) -> None:
    with RunStore(audited.store) as store:
        log = AuditLog(store.db, key=open_home(audited.home).signing_key())
        revoked = registry.revoke(log, "hungary", "left the consortium")
        run = run_record(loaded, run_id="run-late", rounds=1)
        audit = RunAudit(log, run)
        with store.db.transaction():
            store.start_run(run)
            audit.start()
        r = make_receipt("hungary", 1, loaded.sha256, run_id="run-late")
        write_round(store, audit, 1, FitJudgement(trained=[
            trained(r.sign(audited.site_keys["hungary"]), revoked)]))
    with pytest.raises(ReceiptInvalid, match="no enrolled receipt key"):
        verify_store(audited.store, run_id="run-late")
    verify_store(audited.store, run_id=RUN_ID)  # receipts logged before the revocation hold


# -- bugs are not verification failures -----------------------------------------------------


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("a bug in the verifier")


@pytest.mark.parametrize("target", [
    (verify, "entry_hash"),
    (ia, "cumulative_epsilons"),
    (KeyRegistry, "from_entries"),
    (SignedReceipt, "from_parts"),
    (verify, "load_public_pem"),
])
def test_a_programming_error_is_not_swallowed(
    audited: AuditedRun, monkeypatch: pytest.MonkeyPatch, target: tuple[object, str]
) -> None:
    owner, name = target
    monkeypatch.setattr(owner, name, _boom)
    with pytest.raises(RuntimeError, match="a bug in the verifier"):
        verify_store(audited.store)
