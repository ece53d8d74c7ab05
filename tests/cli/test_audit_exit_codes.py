"""``consortium audit verify`` and ``report`` exit codes: 0 verified, 1 a broken record (also
a log cut off at its end, no signed head, a consortium key other than the pinned one), 3 an
intact trail that records security events (each named)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from consortium.audit.head import head_path
from consortium.audit.log import AuditLog
from consortium.cli import main
from consortium.home import HOME_ENV, open_home
from consortium.store.database import Database
from tests.cli.invoke import invoke
from tests.consortium.audit_fixture import RUN_ID, write_audited_run


def verify(store: Path, capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    outcome = invoke(main, "consortium", ["audit", "verify", "--store", str(store)], capsys,
                     monkeypatch)
    return outcome.code, outcome.output


def test_a_genuine_trail_verifies_with_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_audited_run(tmp_path)
    code, out = verify(run.store, capsys, monkeypatch)
    assert code == 0, out
    assert "verified" in out


def test_a_tampered_record_exits_1_naming_it(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_audited_run(tmp_path)
    with sqlite3.connect(run.store) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET payload_json = replace(payload_json, '2', '3') "
                     "WHERE seq = 3")
    code, out = verify(run.store, capsys, monkeypatch)
    assert code == 1, out
    assert "AUDIT VERIFICATION FAILED" in out and "seq=3" in out


def test_security_events_exit_3_and_are_each_named(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_audited_run(tmp_path)
    db = Database(run.store)
    log = AuditLog(db, key=open_home(run.home).signing_key())
    log.security_event(RUN_ID, "reply rejected: node 7 is enrolled as site 'cleveland' but "
                       "its reply claims 'hungary'", round=1, node_id=7)
    log.security_event(RUN_ID, "reply rejected: site hungary: signature does not verify",
                       round=2, node_id=8)
    db.close()
    code, out = verify(run.store, capsys, monkeypatch)
    assert code == 3, out
    assert "SECURITY EVENTS" in out
    assert "claims 'hungary'" in out and "signature does not verify" in out
    report = invoke(main, "consortium", ["audit", "report", "--store", str(run.store),
                                         "--out", str(tmp_path / "r")], capsys, monkeypatch)
    assert report.code == 3, report.output


def test_a_log_cut_after_its_last_round_exits_1(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: the last round's entries, receipts and the run-stop deleted (triggers dropped)."""
    run = write_audited_run(tmp_path)
    with sqlite3.connect(run.store) as conn:
        for trigger in ("audit_log_no_delete", "receipts_no_delete"):
            conn.execute(f"DROP TRIGGER {trigger}")
        first = conn.execute("SELECT MIN(seq) FROM audit_log WHERE kind='receipt' AND "
                             "payload_json LIKE '%\\\"round\\\":2%'").fetchone()[0]
        conn.execute("DELETE FROM audit_log WHERE seq >= ?", (first,))
        conn.execute("DELETE FROM receipts WHERE round = 2")
    code, out = verify(run.store, capsys, monkeypatch)
    assert code == 1, out
    assert "LogTruncated" in out and "cut off its end" in out


def test_without_a_head_it_exits_1_unless_no_head_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_audited_run(tmp_path)
    head_path(run.store).unlink()
    code, out = verify(run.store, capsys, monkeypatch)
    assert code == 1, out
    assert "HeadMissing" in out and "--no-head" in out
    outcome = invoke(main, "consortium", ["audit", "verify", "--store", str(run.store),
                                          "--no-head"], capsys, monkeypatch)
    assert outcome.code == 0, outcome.output
    assert "WARNING: no signed audit head was checked" in outcome.output
    report = ["audit", "report", "--store", str(run.store), "--out", str(tmp_path / "r")]
    failed = invoke(main, "consortium", report, capsys, monkeypatch)
    assert failed.code == 1 and "VERIFICATION FAILED (HeadMissing)" in failed.output
    accepted = invoke(main, "consortium", [*report, "--no-head"], capsys, monkeypatch)
    assert accepted.code == 0, accepted.output


def test_the_homes_key_is_pinned_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_audited_run(tmp_path)
    code, out = verify(run.store, capsys, monkeypatch)  # this home has no key: not pinned
    assert code == 0 and "NOT PINNED" in out, out
    open_home().signing_key()  # the consortium home now has a key of its own, another one
    code, out = verify(run.store, capsys, monkeypatch)
    assert code == 1, out
    assert "pinned to this consortium home's key" in out and "not the pinned key" in out
    monkeypatch.setenv(HOME_ENV, str(run.home))  # the home that wrote the store
    code, out = verify(run.store, capsys, monkeypatch)
    assert code == 0 and "pinned to this consortium home's key" in out, out
