"""The audit log and its verification: chain, signatures, receipts, ε, ceilings, the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortium.audit_log import AuditLog
from consortium.audit_verifier import (
    CeilingPassed,
    ChainBroken,
    EpsilonMismatch,
    ReceiptInvalid,
    SignatureInvalid,
    verify_store,
)
from consortium.cli import app
from consortium.keys import SITE_KEY_FILE, key_from_seed, load_or_create_key, site_state_dir
from consortium.receipt import Receipt, SignedReceipt, UnknownSiteKey
from tests.consortium.audit_fixture import RUN_ID, SITES, AuditedRun, write_audited_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path: Path) -> AuditedRun:
    return write_audited_run(tmp_path)


def tamper(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """What an attacker with write access does: drop the append-only triggers, edit."""
    conn = sqlite3.connect(path)
    for t in ("audit_log_no_update", "audit_log_no_delete", "receipts_no_update",
              "receipts_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_genuine_run_verifies(run: AuditedRun) -> None:
    result = verify_store(run.store)
    assert result.runs == [RUN_ID]
    assert len(result.checks) == len(SITES) * 2
    assert set(result.site_fingerprints) == set(SITES)
    for c in result.checks:
        assert c.independent == pytest.approx(c.claimed, rel=0.01)


def test_audit_tables_are_append_only(run: AuditedRun) -> None:
    conn = sqlite3.connect(run.store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit_log SET kind='x' WHERE seq=1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM receipts")


def test_altered_log_line_is_named(run: AuditedRun) -> None:
    tamper(run.store, "UPDATE audit_log SET payload_json=replace(payload_json, 'completed', "
                      "'stopped') WHERE kind='run-stop'")
    with pytest.raises(ChainBroken, match=r"seq=\d+ \(run-stop\): content does not match"):
        verify_store(run.store)


def test_deleted_log_line_is_named(run: AuditedRun) -> None:
    tamper(run.store, "DELETE FROM audit_log WHERE seq=3")
    with pytest.raises(ChainBroken, match=r"seq=4.*expected seq 3"):
        verify_store(run.store)


def test_forged_entry_signature_is_named(run: AuditedRun) -> None:
    forged = key_from_seed(bytes(32)).sign(b"x" * 32).hex()
    tamper(run.store, "UPDATE audit_log SET signature=? WHERE seq=5", (forged,))
    with pytest.raises(SignatureInvalid, match="seq=5"):
        verify_store(run.store)


def test_rewritten_receipt_row_is_named(run: AuditedRun) -> None:
    tamper(run.store, "UPDATE receipts SET receipt_json=replace(receipt_json, '\"steps\":4', "
                      "'\"steps\":3') WHERE round=2 AND site='hungary'")
    with pytest.raises(ReceiptInvalid, match="differs from the log"):
        verify_store(run.store)


def test_understated_epsilon_is_caught_even_when_validly_signed(tmp_path: Path) -> None:
    run = write_audited_run(tmp_path)
    key = load_or_create_key(site_state_dir("cleveland", run.home) / SITE_KEY_FILE)
    with AuditLog(run.store, key=key_from_seed(bytes(range(32)))) as log:
        good = log.receipts(RUN_ID)[0].signed().receipt
    lie = Receipt(**{**good.__dict__, "run_id": "run-lie", "epsilon": good.epsilon * 0.9,
                     "lifetime_epsilon": good.epsilon * 0.9})

    from consortium.run_audit import RunAudit, RunFacts
    from policies.loader import load_policy

    loaded = load_policy()
    audit = RunAudit(run.store, RunFacts("run-lie", "simulation", loaded.sha256,
                                         loaded.canonical_json, SITES, 1), home=run.home)
    audit.start()
    lie = Receipt(**{**lie.__dict__, "policy_sha256": loaded.sha256})
    audit.round(1, [("cleveland", lie.sign(key).to_wire())], 0, "ok")
    with pytest.raises(EpsilonMismatch, match="site cleveland run run-lie round 1"):
        verify_store(run.store, run_id="run-lie")
    verify_store(run.store, run_id=RUN_ID)  # the other run is unaffected


def test_passed_ceiling_is_caught(tmp_path: Path) -> None:
    from site_node.accounting import SiteAccountant
    from tests.consortium.audit_fixture import _receipt

    run = write_audited_run(tmp_path)
    from consortium.run_audit import RunAudit, RunFacts
    from policies.loader import load_policy

    loaded = load_policy()
    audit = RunAudit(run.store, RunFacts("run-hot", "simulation", loaded.sha256,
                                         loaded.canonical_json, SITES, 1), home=run.home)
    audit.start()
    r = _receipt("long_beach", 1, SiteAccountant(accountant="rdp"), loaded.sha256)
    r = Receipt(**{**r.__dict__, "run_id": "run-hot", "epsilon_ceiling": r.epsilon * 0.5})
    key = load_or_create_key(site_state_dir("long_beach", run.home) / SITE_KEY_FILE)
    audit.round(1, [("long_beach", r.sign(key).to_wire())], 0, "ok")
    with pytest.raises(CeilingPassed, match=r"long_beach.*per-run ceiling"):
        verify_store(run.store, run_id="run-hot")


def test_unknown_site_key_is_rejected_and_logged(run: AuditedRun) -> None:
    intruder = key_from_seed(bytes([7]) * 32)
    with AuditLog(run.store, key=load_or_create_key(run.home / "consortium-key.pem")) as log:
        good = log.receipts(RUN_ID)[0].signed().receipt
        fake = Receipt(**{**good.__dict__, "site": "mayo"}).sign(intruder)
        with pytest.raises(UnknownSiteKey, match="mayo"):
            log.accept_receipt(RUN_ID, fake)
        impostor = Receipt(**{**good.__dict__, "round": 3}).sign(intruder)
        with pytest.raises(Exception, match="signature does not verify"):
            log.accept_receipt(RUN_ID, impostor)
        events = [e for e in log.entries() if e.kind == "security"]
    assert len(events) == 2 and "mayo" in events[0].payload["reason"]
    verify_store(run.store)  # rejected receipts were never stored; the chain stays valid


def test_cli_verify_exit_codes(run: AuditedRun) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--store", str(run.store), "--run", RUN_ID])
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output
    tamper(run.store, "DELETE FROM audit_log WHERE seq=2")
    bad = runner.invoke(app, ["audit", "verify", "--store", str(run.store)])
    assert bad.exit_code == 1 and "seq=3" in bad.output


def test_report_shows_every_site_and_round_and_is_self_contained(
    run: AuditedRun, tmp_path: Path
) -> None:
    res = CliRunner().invoke(app, ["audit", "report", "--store", str(run.store),
                                   "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "rep" / f"audit-{RUN_ID}.html").read_text()
    data = json.loads((tmp_path / "rep" / f"audit-{RUN_ID}.json").read_text())
    assert data["verification"]["ok"] is True
    assert {(r["site"], r["round"]) for r in data["receipts"]} == {
        (s, r) for s in SITES for r in (1, 2)}
    for site in SITES:
        assert site in html and data["fingerprints"]["sites"][site] in html
    assert data["run"]["policy_sha256"] in html and "Threat model" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_report_builder_never_imports_ml_stacks() -> None:
    code = ("import sys, consortium.audit_report, consortium.audit_html, consortium.audit_cli\n"
            "bad = [m for m in ('torch', 'flwr', 'opacus') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_signed_receipt_from_store_rebuilds(run: AuditedRun) -> None:
    with AuditLog(run.store, readonly=True) as log:
        stored = log.receipts(RUN_ID)
    assert isinstance(stored[0].signed(), SignedReceipt)
