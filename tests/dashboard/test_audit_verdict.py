"""The Audit page shows the verdict of ``consortium audit verify`` first: verified, or FAILED
with the exact reason, or FAILED with every security event; then the mechanism from the signed
receipts. The Privacy page states the verdict too and checks its ε figures against the signed
receipts. Stores are genuine (:func:`tests.dashboard.stores.write_audited_run`), tampered with
plain SQL the way an insider with write access to the file could."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from consortium.audit.log import AuditLog
from consortium.cli import main
from consortium.errors import StoreError
from consortium.home import open_home
from consortium.store.database import Database
from dashboard import verdict_panel
from tests.cli.invoke import invoke
from tests.dashboard.page_runner import run_page, texts
from tests.dashboard.stores import SITE_NAMES, SITES

RUN = "run-late"
EVENTS = ("reply rejected: node 7 is enrolled as site 'cleveland' but its reply claims "
          "'hungary'", "reply rejected: site hungary: signature does not verify")


def _in_order(at: AppTest) -> list[tuple[str, Any]]:
    """Every element of the page in document order: (type, value)."""
    out: list[tuple[str, Any]] = []

    def walk(node: Any) -> None:
        children = getattr(node, "children", None)
        if isinstance(children, dict) and children:
            for key in sorted(children):
                walk(children[key])
        else:
            out.append((str(getattr(node, "type", "")), getattr(node, "value", None)))

    walk(at.main)
    return out


def _cli_verify(store: Path, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    outcome = invoke(main, "consortium", ["audit", "verify", "--store", str(store), "--run", RUN],
                     capsys, monkeypatch)
    return outcome.code, " ".join(outcome.output.split())


def _flat(text: str) -> str:
    return " ".join(text.split())


def _mechanism(at: AppTest) -> pd.DataFrame:
    found = [d.value for d in at.dataframe if "recomputed_epsilon" in d.value.columns]
    assert len(found) == 1
    return found[0]


def _change_receipt_epsilon(store: Path, *, also_in_log: bool) -> None:
    """Raise cleveland's round-2 ε in its stored receipt (and in the log entry holding it)."""
    with sqlite3.connect(store) as conn:
        (text,) = conn.execute("SELECT receipt_json FROM receipts WHERE run_id=? AND site=? "
                               "AND round=2", (RUN, "cleveland")).fetchone()
        eps = json.loads(text)["epsilon"]
        forged = text.replace(f'"epsilon":{eps!r}', f'"epsilon":{eps / 2!r}')
        assert forged != text
        conn.execute("DROP TRIGGER receipts_no_update")
        conn.execute("UPDATE receipts SET receipt_json=? WHERE receipt_json=?", (forged, text))
        if also_in_log:
            conn.execute("DROP TRIGGER audit_log_no_update")
            conn.execute("UPDATE audit_log SET payload_json=replace(payload_json, ?, ?)",
                         (json.dumps(text)[1:-1], json.dumps(forged)[1:-1]))


def _log_security_events(store: Path) -> None:
    """Genuine, signed security events (as the server logs a rejected reply)."""
    db = Database(store)
    try:
        log = AuditLog(db, key=open_home().signing_key())
        for rnd, reason in enumerate(EVENTS, start=1):
            log.security_event(RUN, reason, round=rnd, node_id=6 + rnd)
    finally:
        db.close()


def test_an_intact_trail_shows_verified_first_and_the_signed_mechanism(
        audited_store: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_page(audited_store, "audit")
    assert not at.exception, [e.value for e in at.exception]
    elements = _in_order(at)
    assert elements[0] == ("title", "Audit")
    assert elements[1][0] == "success" and "Audit trail verified" in elements[1][1]
    assert not at.error
    assert f"consortium audit verify --run {RUN}" in elements[1][1]
    code, out = _cli_verify(audited_store, capsys, monkeypatch)
    assert code == 0 and "verified" in out
    mech = _mechanism(at)
    assert len(mech) == 2 * len(SITES)  # two rounds, every site trained and signed
    assert list(mech["round"]) == [1] * 4 + [2] * 4
    assert list(mech["site_name"][:4]) == list(SITE_NAMES)
    assert mech["recomputed_epsilon"].notna().all()
    assert ((mech["recomputed_epsilon"] - mech["epsilon"]).abs()
            <= 0.01 * mech["epsilon"]).all()
    assert {"noise_multiplier", "sample_rate", "steps", "max_grad_norm", "accountant",
            "key_fingerprint"} <= set(mech.columns)


@pytest.mark.parametrize(("also_in_log", "kind"), [(False, "ReceiptInvalid"),
                                                   (True, "ChainBroken")])
def test_a_receipt_whose_epsilon_was_changed_fails_with_the_verifiers_reason(
        audited_store: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, also_in_log: bool, kind: str) -> None:
    _change_receipt_epsilon(audited_store, also_in_log=also_in_log)
    at = run_page(audited_store, "audit")
    assert not at.exception, [e.value for e in at.exception]
    elements = _in_order(at)
    assert elements[1][0] == "error" and "AUDIT VERIFICATION FAILED" in elements[1][1]
    assert kind in elements[1][1]
    assert not at.success
    reason = at.code[0].value
    code, out = _cli_verify(audited_store, capsys, monkeypatch)
    assert code == 1 and f"({kind})" in out
    assert _flat(reason) in out  # the very reason `consortium audit verify` gives
    assert _mechanism(at)["recomputed_epsilon"].isna().all()  # nothing vouched for


def test_security_events_fail_the_verdict_and_each_is_listed(
        audited_store: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _log_security_events(audited_store)
    at = run_page(audited_store, "audit")
    assert not at.exception, [e.value for e in at.exception]
    elements = _in_order(at)
    assert elements[1][0] == "error"
    assert "AUDIT VERIFICATION FAILED: 2 security event(s)" in elements[1][1]
    listed = at.code[0].value.splitlines()
    assert len(listed) == 2
    for line, reason in zip(listed, EVENTS, strict=True):
        assert line.startswith("audit_log entry ") and line.endswith(reason)
    code, out = _cli_verify(audited_store, capsys, monkeypatch)
    assert code == 3 and all(_flat(r) in out for r in EVENTS)


def test_the_verdict_is_cached_until_the_store_changes(
        audited_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from consortium.audit import verify

    calls: list[str | None] = []
    real = verify.verify_store

    def counting(path: Path | str, **kwargs: Any) -> verify.VerificationResult:
        calls.append(kwargs.get("run_id"))
        return real(path, **kwargs)

    monkeypatch.setattr(verify, "verify_store", counting)
    at = run_page(audited_store, "audit")
    at.run()
    at.run()
    assert "Audit trail verified" in at.success[0].value
    assert calls.count(RUN) == 1  # three runs of the page, one verification
    _log_security_events(audited_store)  # a write: verified again at the next rerun
    at.run()
    assert not at.success and "2 security event(s)" in at.error[0].value
    assert calls.count(RUN) == 2


def test_an_error_building_the_auditor_report_is_shown(
        audited_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from consortium.audit import report

    def broken(path: Path | str, run_id: str | None = None) -> dict[str, Any]:
        raise StoreError(f"run store {path}: table runs has no row for run {run_id}")

    monkeypatch.setattr(report, "build_report", broken)
    at = run_page(audited_store, "audit")
    at.button(key="build-report").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value for e in at.error]
    assert any("The auditor report could not be built: StoreError:" in e
               and f"has no row for run {RUN}" in e for e in shown), shown
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download auditor report (HTML)" not in labels


def test_a_store_that_cannot_be_read_is_not_verified(
        audited_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(path: str, run_id: str) -> Any:
        raise StoreError(f"run store {path} is locked")

    monkeypatch.setattr(verdict_panel, "load_verdict", unreadable)
    at = run_page(audited_store, "audit")
    assert not at.exception
    assert "AUDIT NOT VERIFIED" in at.error[0].value and "is locked" in at.error[0].value
    assert not at.success


# -- the Privacy page ------------------------------------------------------------------------


def test_privacy_page_states_the_verdict_and_that_every_epsilon_is_signed(
        audited_store: Path) -> None:
    at = run_page(audited_store, "privacy")
    assert not at.exception
    assert "Audit trail verified" in at.success[0].value
    assert "All 8 ε figures below equal the sites' signed receipts." in texts(at)
    assert not at.error and not at.warning


def test_privacy_page_flags_an_unsigned_epsilon_that_differs_from_the_receipt(
        audited_store: Path) -> None:
    with sqlite3.connect(audited_store) as conn:
        changed = conn.execute("UPDATE site_rounds SET epsilon = epsilon / 2 WHERE site = "
                               "'hungary' AND round = 2 AND run_id = ?", (RUN,)).rowcount
    assert changed == 1
    at = run_page(audited_store, "privacy")
    assert not at.exception
    errors = [e.value for e in at.error]
    # The verifier covers site_rounds: the verdict fails ...
    assert "AUDIT VERIFICATION FAILED" in errors[0]
    assert "RowNotCovered" in errors[0]
    # ... and the page says which figure below is not the signed one.
    [mismatch] = [e for e in errors if "differ from the sites' signed receipts" in e]
    assert "1 ε figure(s) below differ from the sites' signed receipts" in mismatch
    assert "round 2, Hungary (Budapest): the rounds table says ε = " in mismatch


def test_privacy_page_of_a_store_without_receipts_says_nothing_is_signed(
        one_run_store: Path) -> None:
    at = run_page(one_run_store, "privacy")
    assert not at.exception
    assert "AUDIT VERIFICATION FAILED" in at.error[0].value
    assert any("No ε on this page is signed" in w.value for w in at.warning)
