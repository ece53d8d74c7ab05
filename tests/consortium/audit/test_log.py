"""The audit log: bound to one consortium key from its first entry, signed, chained,
append-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium.audit.log import CONSORTIUM_ROLE, ENROLMENT, GENESIS, AuditLog, entry_hash
from consortium.errors import AuditLogError
from consortium.home import open_home
from consortium.store.database import Database
from site_node.protocol.keys import fingerprint, load_public_pem
from tests.consortium.audit_fixture import AuditedRun


def test_the_first_entry_enrols_the_consortium_key(tmp_path: Path) -> None:
    key = open_home().signing_key()
    db = Database(tmp_path / "runs.sqlite")
    log = AuditLog(db, key=key)
    (first,) = log.entries()
    assert (first.seq, first.kind, first.prev_hash) == (1, ENROLMENT, GENESIS)
    assert first.payload["role"] == CONSORTIUM_ROLE
    assert first.payload["fingerprint"] == fingerprint(key.public_key())
    assert fingerprint(load_public_pem(first.payload["public_key_pem"])) == fingerprint(
        key.public_key())
    AuditLog(db, key=key)  # the same key again: accepted, nothing added
    assert len(log.entries()) == 1
    entry = log.append("note", {"x": 1}, "r1")
    assert entry.prev_hash == first.entry_hash
    assert entry.entry_hash == entry_hash(2, "r1", "note", entry.created_at, '{"x":1}',
                                          first.entry_hash)
    key.public_key().verify(bytes.fromhex(entry.signature), bytes.fromhex(entry.entry_hash))


def test_another_consortium_key_is_refused(tmp_path: Path) -> None:
    db = Database(tmp_path / "runs.sqlite")
    AuditLog(db, key=open_home().signing_key())
    intruder = Ed25519PrivateKey.generate()
    theirs = fingerprint(intruder.public_key())
    with pytest.raises(AuditLogError, match=f"this home's key is {theirs}"):
        AuditLog(db, key=intruder)
    assert len(AuditLog(db).entries()) == 1


def test_appending_needs_the_key(tmp_path: Path) -> None:
    db = Database(tmp_path / "runs.sqlite")
    with pytest.raises(AuditLogError, match="needs the consortium key"):
        AuditLog(db).append("note", {})
    assert AuditLog(db).entries() == []


def test_audit_tables_are_append_only(audited: AuditedRun) -> None:
    conn = sqlite3.connect(audited.store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit_log SET kind='x' WHERE seq=1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit_log WHERE seq=2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE receipts SET epsilon=0")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM receipts")
    conn.close()


def test_stored_receipts_rebuild_and_verify(audited: AuditedRun) -> None:
    log = AuditLog(Database(audited.store, readonly=True))
    stored = log.receipts(audited.run_id)
    assert len(stored) == 8
    for row in stored:
        signed = row.signed()
        assert (signed.receipt.site, signed.receipt.round) == (row.site, row.round)
        signed.verify(audited.site_keys[row.site].public_key())
        assert row.key_fingerprint == fingerprint(audited.site_keys[row.site].public_key())
    assert log.receipts("no-such-run") == []
