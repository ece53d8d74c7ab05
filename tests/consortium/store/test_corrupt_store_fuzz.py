"""Fuzzing what the store holds (bounded): a corrupted stored value makes the export, the
verifier and the auditor's report fail with their own clear errors, never crash."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortium.audit.report import build_report
from consortium.audit.verify import verify_store
from consortium.errors import AuditVerificationError, StoreError
from consortium.store.export import export_run
from consortium.store.run_store import RunStore
from tests.consortium.audit_fixture import write_audited_run

TARGETS = [
    ("runs", "policy_json", "1=1"), ("runs", "secagg_json", "1=1"),
    ("runs", "sites_json", "1=1"), ("audit_log", "payload_json", "seq=1"),
    ("audit_log", "payload_json", "kind='receipt'"), ("audit_log", "payload_json",
                                                      "kind='run-start'"),
    ("receipts", "receipt_json", "1=1"), ("runs", "status", "1=1"), ("runs", "mode", "1=1"),
    ("rounds", "status", "1=1"),
]
TRIGGERS = ("audit_log_no_update", "receipts_no_update")


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audited_run(tmp_path_factory.mktemp("genuine")).store


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=st.sampled_from(TARGETS),
       value=st.text(max_size=60) | st.sampled_from(["", "null", "[]", "{}", '{"a": 1}',
                                                     "[" * 5000, "NaN", '"x"', "1e999"]))
def test_a_corrupted_stored_value_fails_cleanly(genuine: Path, tmp_path: Path,
                                                target: tuple[str, str, str],
                                                value: str) -> None:
    store = tmp_path / "copy.sqlite"
    shutil.copyfile(genuine, store)
    table, column, where = target
    with sqlite3.connect(store) as conn:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.execute(f"UPDATE {table} SET {column}=? WHERE {where}", (value,))
    try:
        with RunStore(store, readonly=True) as rs:
            export_run(rs)
    except StoreError:
        pass
    with contextlib.suppress(AuditVerificationError, StoreError):
        verify_store(store)
    with contextlib.suppress(StoreError):
        build_report(store)
