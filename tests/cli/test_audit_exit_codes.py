"""``consortium audit verify`` and ``report`` exit codes: 0 verified, 1 a broken record, 3 an
intact trail that records security events (each named)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from consortium.audit.log import AuditLog
from consortium.cli import main
from consortium.home import open_home
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
