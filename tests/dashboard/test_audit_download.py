"""The Audit page offers the auditor's report once the store holds the signed audit log, and
the Privacy page shows each site's lifetime budget from its signed receipts."""

from __future__ import annotations

from pathlib import Path

from tests.dashboard.page_runner import run_page
from tests.dashboard.stores import SITES


def test_audit_page_offers_the_verified_auditor_report(audited_store: Path) -> None:
    at = run_page(audited_store, "audit")  # the newest run: run-late
    assert not at.exception, [e.value for e in at.exception]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download auditor report (HTML)" not in labels  # built when asked for
    at.button(key="build-report").click().run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download auditor report (HTML)" in labels
    from dashboard.views.audit import report_html

    html = report_html(str(audited_store), "run-late")
    assert b"Verified." in html
    assert b"run-late" in html
    for site in SITES:
        assert site.encode() in html


def test_auditor_report_of_a_tampered_store_says_verification_failed(
    audited_store: Path,
) -> None:
    import sqlite3

    with sqlite3.connect(audited_store) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        changed = conn.execute(
            "UPDATE audit_log SET payload_json = replace(payload_json, '\"rounds_planned\":2', "
            "'\"rounds_planned\":3') WHERE kind='run-start' AND run_id='run-late'").rowcount
    assert changed == 1
    from dashboard.views.audit import report_html

    html = report_html(str(audited_store), "run-late")  # the store changed: built again
    assert b"Verification FAILED" in html and b"Verified." not in html


def test_privacy_page_shows_each_sites_lifetime_budget_from_receipts(audited_store: Path) -> None:
    at = run_page(audited_store, "privacy")
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Lifetime budget" for s in at.subheader)
    life = at.dataframe[-1].value
    assert list(life["round"]) == [2] * len(SITES)
    assert (life["lifetime_ceiling"] == 10.0).all()
    assert (life["lifetime_epsilon"] > 0).all()
