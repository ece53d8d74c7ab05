"""Cutting the end off the audit log is detected: by the signed head kept beside the store, and
by a finished run that lacks its signed run-stop (issue 14)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium.audit.head import head_path, read_head, write_head
from consortium.audit.log import AuditLog
from consortium.audit.verify import verify_store
from consortium.errors import (
    ChainBroken,
    HeadMissing,
    LogTruncated,
    RowNotCovered,
    SignatureInvalid,
)
from consortium.home import open_home
from consortium.store.database import Database
from tests.consortium.audit_fixture import RUN_ID, AuditedRun

TRIGGERS = ("audit_log_no_update", "audit_log_no_delete", "receipts_no_update",
            "receipts_no_delete")


def tamper(path: Path, *statements: str) -> None:
    """What an attacker with write access to the store does: drop the triggers, edit."""
    conn = sqlite3.connect(path)
    for t in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()


def seq_of(path: Path, where: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT MIN(seq) FROM audit_log WHERE {where}").fetchone()[0])


def cut_last_round(path: Path) -> None:
    """Delete the last round's entries, receipts, rows and the run-stop; mark the run live."""
    first = seq_of(path, "kind='receipt' AND payload_json LIKE '%\\\"round\\\":2%'")
    tamper(path, f"DELETE FROM audit_log WHERE seq >= {first}",
           "DELETE FROM receipts WHERE round = 2", "DELETE FROM site_rounds WHERE round = 2",
           "DELETE FROM rounds WHERE round = 2",
           "UPDATE runs SET status='running', stop_reason=NULL, finished_at=NULL")


def test_the_consortium_writes_a_signed_head_after_every_commit(audited: AuditedRun) -> None:
    head = read_head(head_path(audited.store))
    with sqlite3.connect(audited.store) as conn:
        last, top = conn.execute("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC "
                                 "LIMIT 1").fetchone()
        first = conn.execute("SELECT entry_hash FROM audit_log WHERE seq=1").fetchone()[0]
    assert (head.seq, head.entry_hash, head.genesis) == (last, top, first)
    assert head_path(audited.store) == audited.home / "runs-audit-head.json"
    result = verify_store(audited.store)
    assert (result.head_seq, result.beyond_head) == (last, 0)


def test_a_rolled_back_append_leaves_the_head_where_it_was(audited: AuditedRun) -> None:
    before = read_head(head_path(audited.store))
    db = Database(audited.store)
    log = AuditLog(db, key=open_home(audited.home).signing_key())
    with pytest.raises(RuntimeError, match="crash"), db.transaction():
        log.append("note", {"x": 1})
        raise RuntimeError("crash")
    assert read_head(head_path(audited.store)) == before
    log.append("note", {"x": 2})
    assert read_head(head_path(audited.store)).seq == before.seq + 1
    db.close()


def test_cutting_the_last_round_and_the_stop_off_is_detected(audited: AuditedRun) -> None:
    cut_last_round(audited.store)
    with pytest.raises(LogTruncated, match=r"ends at seq=\d+, but its signed head .* entries "
                                           "were cut off its end"):
        verify_store(audited.store)


def test_deleting_only_the_run_stop_is_detected_with_or_without_the_head(
    audited: AuditedRun
) -> None:
    tamper(audited.store, "DELETE FROM audit_log WHERE kind='run-stop'")
    with pytest.raises(LogTruncated, match="cut off its end"):
        verify_store(audited.store)
    head_path(audited.store).unlink()  # the attacker removed the head as well
    with pytest.raises(LogTruncated, match=f"runs row of run {RUN_ID}: status 'completed', "
                                           "but the log holds no signed run-stop"):
        verify_store(audited.store, require_head=False)


def test_deleting_everything_after_the_enrolments_is_detected(audited: AuditedRun) -> None:
    start = seq_of(audited.store, "kind='run-start'")
    tamper(audited.store, f"DELETE FROM audit_log WHERE seq >= {start}",
           "DELETE FROM receipts")
    with pytest.raises(LogTruncated, match="cut off its end"):
        verify_store(audited.store)
    head_path(audited.store).unlink()
    with pytest.raises(RowNotCovered, match=f"runs rows of run.*{RUN_ID}: no signed run-start"):
        verify_store(audited.store, require_head=False)


def test_without_a_head_verification_fails_closed_unless_accepted(audited: AuditedRun,
                                                                   tmp_path: Path) -> None:
    copy = tmp_path / "copy" / "runs.sqlite"
    copy.parent.mkdir()
    shutil.copy(audited.store, copy)
    with pytest.raises(HeadMissing, match=r"no signed audit head at .*--head FILE.*--no-head"):
        verify_store(copy)
    result = verify_store(copy, require_head=False)
    assert result.head_path is None and result.runs == [RUN_ID]
    given = verify_store(copy, head=head_path(audited.store))  # the home's head, given
    assert given.head_seq == result.entries
    with pytest.raises(HeadMissing):
        verify_store(copy, head=tmp_path / "no-such-head.json", require_head=False)


def test_a_head_of_another_log_or_under_another_key_fails(audited: AuditedRun,
                                                          tmp_path: Path) -> None:
    key = open_home(audited.home).signing_key()
    path = head_path(audited.store)
    genuine = read_head(path)
    write_head(path, key, store=audited.store, genesis="ab" * 32, seq=genuine.seq,
               entry_hash=genuine.entry_hash)
    with pytest.raises(ChainBroken, match="belongs to another audit log"):
        verify_store(audited.store)
    write_head(path, Ed25519PrivateKey.generate(), store=audited.store,
               genesis=genuine.genesis, seq=genuine.seq - 3, entry_hash=genuine.entry_hash)
    with pytest.raises(SignatureInvalid, match=r"audit head .* signature does not verify"):
        verify_store(audited.store)
    write_head(path, key, store=audited.store, genesis=genuine.genesis, seq=genuine.seq - 1,
               entry_hash=genuine.entry_hash)
    with pytest.raises(ChainBroken, match="not the entry its signed head"):
        verify_store(audited.store)
    path.write_text(json.dumps({"kind": "audit-head", "seq": "x"}))
    with pytest.raises(ChainBroken, match="malformed"):
        verify_store(audited.store)


def test_entries_after_the_head_are_accepted_and_counted(audited: AuditedRun) -> None:
    """A crash between the commit and the head's write leaves the log ahead of its head."""
    path = head_path(audited.store)
    stale = path.read_bytes()
    db = Database(audited.store)
    AuditLog(db, key=open_home(audited.home).signing_key()).append("note", {})
    db.close()
    path.write_bytes(stale)
    assert verify_store(audited.store).beyond_head == 1
