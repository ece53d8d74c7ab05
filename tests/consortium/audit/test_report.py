"""The auditor's report: who took part, ε per site and round, mode, refusals and security
events, the threat model; one self-contained HTML page with every value escaped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from consortium.audit.html import render_html
from consortium.audit.log import AuditLog
from consortium.audit.report import THREAT_MODEL, build_report, write_report
from consortium.audit.trail import RunAudit
from consortium.home import open_home
from consortium.run.attribution import FitJudgement, Rejection
from consortium.store.records import MODE_DEMO
from consortium.store.run_store import RunStore
from policies.loader import LoadedPolicy
from tests.consortium.audit_fixture import (
    RUN_ID,
    SITES,
    TASK,
    AuditedRun,
    run_record,
    write_audited_run,
    write_round,
)

ROOT = Path(__file__).resolve().parents[3]
HOSTILE = "<script>alert('x')</script>"


def test_report_shows_every_site_and_round_and_is_self_contained(
    audited: AuditedRun, tmp_path: Path
) -> None:
    html_path, json_path = write_report(build_report(audited.store), tmp_path / "rep")
    assert html_path == tmp_path / "rep" / f"audit-{RUN_ID}.html"
    html, data = html_path.read_text(), json.loads(json_path.read_text())
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert data["verification"]["ok"] is True and 'id="verification"' in html
    assert {(r["site"], r["round"]) for r in data["receipts"]} == {
        (s, r) for s in SITES for r in (1, 2)}
    for r in data["receipts"]:
        assert r["independent_epsilon"] == pytest.approx(r["epsilon"], rel=0.01)
    for site in SITES:
        assert site in html and data["fingerprints"]["sites"][site] in html
    assert data["run"]["policy_sha256"] in html and "Threat model" in html
    assert data["run"]["mode"] == "deployment" and not data["run"]["local_demo"]
    assert data["run"]["task_sha256"] == TASK.sha256 and TASK.sha256 in html
    assert data["run"]["task"]["name"] == "heart-disease" and "preprocessing" in html
    assert {r["task_sha256"] for r in data["receipts"]} == {TASK.sha256}
    assert 'id="mode"' not in html and "Local demonstration" not in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert [e["kind"] for e in data["events"]] == ["run-stop"]  # no security event


def test_report_states_local_demo_mode(tmp_path: Path) -> None:
    run = write_audited_run(tmp_path, mode=MODE_DEMO)
    report = build_report(run.store)
    html = render_html(report)
    assert report["run"]["mode"] == MODE_DEMO and report["run"]["local_demo"] is True
    assert 'id="mode"' in html and "Local demonstration." in html
    assert {k["mode"] for k in report["fingerprints"]["history"]} == {MODE_DEMO}


def hostile_run(audited: AuditedRun, loaded: LoadedPolicy) -> str:
    """A run whose recorded strings carry markup: sites, a refusal, a rejected claim, a
    failure reason (the store and the log keep what sites sent, verbatim)."""
    with RunStore(audited.store) as store:
        log = AuditLog(store.db, key=open_home(audited.home).signing_key())
        run = run_record(loaded, run_id="run-x", sites=(*SITES, HOSTILE), rounds=1)
        audit = RunAudit(log, run)
        with store.db.transaction():
            store.start_run(run)
            audit.start()
        judgement = FitJudgement(
            refusals={"hungary": f"budget {HOSTILE}"},
            rejections=[Rejection(node_id=9, claimed_site=HOSTILE,
                                  reason=f"node 9 claims {HOSTILE!r}, not a member site")])
        write_round(store, audit, 1, judgement, failure=f"reply rejected: {HOSTILE}")
    return "run-x"


def test_every_value_is_escaped(audited: AuditedRun, loaded: LoadedPolicy) -> None:
    run_id = hostile_run(audited, loaded)
    report = build_report(audited.store, run_id)
    assert HOSTILE in json.dumps(report)  # the data keeps them verbatim
    html = render_html(report)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert html.count("&lt;script&gt;") >= 4  # site list, refusal, failure, security event


def test_report_lists_security_events_and_refusals(audited: AuditedRun,
                                                   loaded: LoadedPolicy) -> None:
    run_id = hostile_run(audited, loaded)
    report = build_report(audited.store, run_id)
    v = report["verification"]
    assert v["ok"] is False and v["error_kind"] == "SecurityEventsFound"
    (event,) = v["security_events"]
    assert "not a member site" in event["reason"]
    kinds = [e["kind"] for e in report["events"]]
    assert kinds == ["security", "round-failed"]
    assert report["rounds"][0]["refused"] == {"hungary": f"budget {HOSTILE}"}
    assert report["rounds"][0]["status"] == "failed"
    html = render_html(report)
    assert "Verification FAILED" in html and "SecurityEventsFound" in html
    assert "not a member site" in html and "hungary: budget" in html


def test_report_of_a_broken_trail_says_so(audited: AuditedRun) -> None:
    import sqlite3

    conn = sqlite3.connect(audited.store)
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE seq=4")
    conn.commit()
    conn.close()
    report = build_report(audited.store)
    assert report["verification"]["ok"] is False
    assert report["verification"]["error_kind"] == "ChainBroken"
    assert "Verification FAILED" in render_html(report)


def test_threat_model_no_longer_claims_32_bit_masks(audited: AuditedRun) -> None:
    notes = " ".join(THREAT_MODEL["notes"])
    html = render_html(build_report(audited.store))
    assert "ChaCha20" in notes and "ChaCha20" in html
    assert "seeded from 32 bits" not in html
    assert "rests on it" not in html
    for sentence in notes.split(". "):  # any mention of the weak generator says it is replaced
        if "Mersenne" in sentence or "32-bit" in sentence:
            assert "replaces" in sentence, sentence


def test_report_builder_never_imports_ml_stacks() -> None:
    code = ("import sys, consortium.audit.report, consortium.audit.html, "
            "consortium.audit.verify\n"
            "bad = [m for m in ('torch', 'flwr', 'opacus') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
