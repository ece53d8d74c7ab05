"""Fuzzing what the store holds (bounded): any corrupted stored value, in the log or in a row
the export and the dashboard show, makes verification fail with one of its own errors, and the
export and the auditor's report fail with their own clear errors, never crash.

Each example must change what the store holds (a value SQLite stores as it was is skipped), and
then verification must fail with the error of the check that covers the corrupted value (the
chain for the log, the receipt checks for receipts, the row coverage for the other tables): with
that check switched off, the test fails."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consortium.audit.head import head_path
from consortium.audit.report import build_report
from consortium.audit.verify import verify_store
from consortium.errors import ChainBroken, ReceiptInvalid, RowNotCovered, StoreError
from consortium.home import open_home
from consortium.store.export import export_run
from consortium.store.run_store import RunStore
from tests.consortium.audit_fixture import AuditedRun, write_audited_run

#: (table, column, rows) to corrupt, and the check that must catch it.
TARGETS = [
    ("runs", "policy_json", "1=1", RowNotCovered), ("runs", "secagg_json", "1=1", RowNotCovered),
    ("runs", "sites_json", "1=1", RowNotCovered), ("runs", "status", "1=1", RowNotCovered),
    ("runs", "delta", "1=1", RowNotCovered),
    ("audit_log", "payload_json", "seq=1", ChainBroken),
    ("audit_log", "payload_json", "kind='receipt'", ChainBroken),
    ("audit_log", "payload_json", "kind='run-start'", ChainBroken),
    ("audit_log", "payload_json", "kind='run-stop'", ChainBroken),
    ("audit_log", "payload_json", "kind='round'", ChainBroken),
    ("receipts", "receipt_json", "1=1", ReceiptInvalid),
    ("receipts", "epsilon", "site='hungary'", RowNotCovered),
    ("rounds", "accuracy_mean", "round=2", RowNotCovered),
    ("rounds", "status", "round=1", RowNotCovered),
    ("site_rounds", "epsilon", "site='cleveland'", RowNotCovered),
    ("site_rounds", "accuracy", "round=1", RowNotCovered),
    ("site_rounds", "majority_rate", "site='hungary'", RowNotCovered),
    ("runs", "choice_json", "1=1", RowNotCovered),
    ("checkpoints", "model", "round=1", RowNotCovered),
    ("checkpoints", "sha256", "round=2", RowNotCovered),
    ("runs", "mode", "1=1", (RowNotCovered, StoreError)),
]
#: What the chain check says: an altered entry is caught by it, whatever else would notice.
CHAIN = r"content does not match its hash|a column holds a value of the wrong type"
TRIGGERS = ("audit_log_no_update", "receipts_no_update")
VALUES = st.text(max_size=60) | st.sampled_from(
    ["", "null", "[]", "{}", '{"a": 1}', "[" * 5000, "NaN", '"x"', "1e999", "0.01", "0",
     "running", "stopped", "ok", "failed"]) | st.floats(allow_nan=True) | st.binary(max_size=40)


@pytest.fixture(scope="module")
def genuine_run(tmp_path_factory: pytest.TempPathFactory) -> AuditedRun:
    return write_audited_run(tmp_path_factory.mktemp("genuine"), checkpoints=True)


@pytest.fixture
def genuine(genuine_run: AuditedRun) -> Path:
    return genuine_run.store


@pytest.fixture
def key(genuine_run: AuditedRun) -> Ed25519PublicKey:
    """The consortium key, pinned as the command line pins the home's."""
    return open_home(genuine_run.home).signing_key().public_key()


def corrupt(genuine: Path, tmp_path: Path, target: tuple[str, str, str, type | tuple[type, ...]],
            value: object) -> Path:
    """A copy of the genuine store (and its signed head) with one column overwritten."""
    store = tmp_path / "copy.sqlite"
    shutil.copyfile(genuine, store)
    shutil.copyfile(head_path(genuine), head_path(store))
    table, column, where, _ = target
    with sqlite3.connect(store) as conn:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        select = f"SELECT {column} FROM {table} WHERE {where} ORDER BY rowid"
        before = conn.execute(select).fetchall()
        try:
            conn.execute(f"UPDATE {table} SET {column}=? WHERE {where}", (value,))
        except sqlite3.IntegrityError:  # the schema refuses it (NaN is NULL in a NOT NULL column)
            changed = False
        else:
            changed = conn.execute(select).fetchall() != before
    conn.close()
    assume(changed)  # SQLite stored the value as it was (e.g. '0.8' in a REAL column)
    return store


def test_the_genuine_copy_verifies(genuine: Path, tmp_path: Path) -> None:
    store = tmp_path / "copy.sqlite"
    shutil.copyfile(genuine, store)
    shutil.copyfile(head_path(genuine), head_path(store))
    verify_store(store)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"{t[0]}.{t[1]}[{t[2]}]")
@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=VALUES)
def test_a_corrupted_stored_value_fails_verification_cleanly(
    genuine: Path, key: Ed25519PublicKey, tmp_path: Path,
    target: tuple[str, str, str, type | tuple[type, ...]], value: object
) -> None:
    store = corrupt(genuine, tmp_path, target, value)
    with pytest.raises(target[3], match=CHAIN if target[3] is ChainBroken else None):
        verify_store(store, consortium_key=key)
    try:
        with RunStore(store, readonly=True) as rs:
            export_run(rs)
    except StoreError:
        pass
    try:
        report = build_report(store)
    except StoreError:
        return
    assert report["verification"]["ok"] is False
