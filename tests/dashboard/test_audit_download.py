"""The Audit page offers the auditor's report once the store holds the signed audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_runner import run_page

from dashboard import data
from tests.consortium.audit_fixture import RUN_ID, SITES, AuditedRun, write_audited_run


@pytest.fixture
def run(tmp_path: Path) -> AuditedRun:
    """A fresh audited store, with the dashboard's caches cleared."""
    for loader in (data.load_runs, data.load_run, data.load_audit_tables):
        loader.clear()
    return write_audited_run(tmp_path)


def test_audit_page_offers_the_verified_auditor_report(run: AuditedRun) -> None:
    at = run_page(run.store, "audit")
    assert not at.exception, [e.value for e in at.exception]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download auditor report (HTML)" in labels
    from dashboard.views.audit import _report_html

    html = _report_html(str(run.store), RUN_ID, 0)
    assert html is not None and b"Verified." in html
    for site in SITES:
        assert site.encode() in html


def test_privacy_page_shows_each_sites_lifetime_budget_from_receipts(run: AuditedRun) -> None:
    at = run_page(run.store, "privacy")
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Lifetime budget" for s in at.subheader)
    life = at.dataframe[-1].value
    assert list(life["round"]) == [2] * len(SITES)
    assert (life["lifetime_ceiling"] == 10.0).all()
    assert (life["lifetime_epsilon"] > 0).all()
