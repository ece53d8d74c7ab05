"""The run store's file: schema v3, migration from v1 and v2, refusal of newer or foreign files,
private permissions, and nested transactions that commit once."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from consortium.errors import StoreError
from consortium.store.comparisons import comparisons
from consortium.store.database import _MIGRATIONS, SCHEMA_VERSION, Database
from consortium.store.export import export_run
from consortium.store.records import MODE_DEPLOYMENT
from consortium.store.run_store import RunStore

# The schema of version 1 (commit 2320dbf): consortium/store.py and consortium/audit_log.py.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL,
    stop_reason TEXT, engine TEXT NOT NULL, policy_sha256 TEXT NOT NULL,
    policy_json TEXT NOT NULL, delta REAL NOT NULL, epsilon_ceiling REAL NOT NULL,
    rounds_planned INTEGER NOT NULL, seed INTEGER NOT NULL, sites_json TEXT NOT NULL,
    secagg_json TEXT NOT NULL
);
CREATE TABLE rounds (
    run_id TEXT NOT NULL REFERENCES runs(run_id), round INTEGER NOT NULL, status TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT NOT NULL, duration_s REAL NOT NULL,
    accuracy_mean REAL, accuracy_weighted REAL, loss_mean REAL, loss_weighted REAL,
    failure_reason TEXT, policy_sha256 TEXT, PRIMARY KEY (run_id, round)
);
CREATE TABLE site_rounds (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, site TEXT NOT NULL, accuracy REAL, loss REAL,
    num_examples INTEGER, num_train_examples INTEGER, epsilon REAL, noise_multiplier REAL,
    sample_rate REAL, steps INTEGER, max_grad_norm REAL, accountant TEXT,
    trained INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, round, site), FOREIGN KEY (run_id, round) REFERENCES rounds(run_id, round)
);
CREATE TABLE checkpoints (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, sha256 TEXT NOT NULL, model BLOB NOT NULL,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY, run_id TEXT, kind TEXT NOT NULL, created_at TEXT NOT NULL,
    payload_json TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE receipts (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, site TEXT NOT NULL,
    receipt_json TEXT NOT NULL, signature TEXT NOT NULL, key_fingerprint TEXT NOT NULL,
    epsilon REAL NOT NULL, log_seq INTEGER NOT NULL REFERENCES audit_log(seq),
    PRIMARY KEY (run_id, round, site)
);
CREATE TABLE audit_keys (
    role TEXT NOT NULL, subject TEXT NOT NULL, public_key_pem TEXT NOT NULL,
    fingerprint TEXT NOT NULL, enrolled_at TEXT NOT NULL, PRIMARY KEY (role, subject, fingerprint)
);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs VALUES ('old-run', '2025-06-01T00:00:00', '2025-06-01T01:00:00', 'completed',
    'completed all planned rounds', 'simulation', 'ab', '{}', 1e-5, 3.0, 1, 0,
    '["a", "b"]', '{}');
INSERT INTO rounds VALUES ('old-run', 1, 'ok', 't', 't', 1.0, 0.8, 0.8, 0.4, 0.4, NULL, 'ab');
INSERT INTO site_rounds VALUES ('old-run', 1, 'a', 0.8, 0.4, 10, 30, 1.5, 1.1, 0.25, 4, 1.0,
    'rdp', 1);
INSERT INTO audit_keys VALUES ('site', 'a', 'pem', 'fp', 't');
"""


def v1_store(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.commit()
    conn.close()
    return path


def v2_store(path: Path) -> Path:
    """A store as version 2 (issues 8 and 9) left it: the v1 tables migrated, version 2."""
    v1_store(path)
    conn = sqlite3.connect(path)
    for statement in _MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.execute("UPDATE runs SET owner='host:1', example_site_policies=1")
    conn.commit()
    conn.close()
    return path


def columns(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


def schema_version(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        conn.close()


def test_a_new_store_has_schema_v5(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    db = Database(path)
    db.close()
    assert SCHEMA_VERSION == 5 and schema_version(path) == "5"
    assert {"runs", "rounds", "site_rounds", "checkpoints", "audit_log", "receipts",
            "comparisons", "comparison_results", "meta"} <= set(
        Database(path, readonly=True).table_names())
    assert {"mode", "owner", "example_site_policies", "task_sha256", "task_json",
            "data_fingerprints_json", "choice_json"} <= columns(path, "runs")
    assert {"delta", "refusal", "majority_rate"} <= columns(path, "site_rounds")


def test_a_v1_store_is_readable_read_only_and_left_unchanged(tmp_path: Path) -> None:
    path = v1_store(tmp_path / "v1.sqlite")
    with RunStore(path, readonly=True) as ro:
        run = ro.get_run("old-run")
        (rnd,) = ro.rounds("old-run")
        exported = export_run(ro)
    assert run.mode == MODE_DEPLOYMENT and run.sites == ("a", "b")
    assert rnd.sites[0].epsilon == 1.5 and rnd.sites[0].delta is None
    assert rnd.sites[0].refusal is None
    assert exported["mode"] == MODE_DEPLOYMENT
    assert exported["rounds"][0]["sites"]["a"]["refusal"] is None
    assert schema_version(path) == "1" and "mode" not in columns(path, "runs")


def test_a_v1_store_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    path = v1_store(tmp_path / "v1.sqlite")
    with RunStore(path) as store:
        assert store.db.version == SCHEMA_VERSION
        assert store.get_run("old-run").mode == MODE_DEPLOYMENT
        assert store.rounds("old-run")[0].sites[0].epsilon == 1.5
    assert schema_version(path) == "5"
    assert {"mode", "task_sha256", "task_json", "data_fingerprints_json"} <= columns(path,
                                                                                     "runs")
    assert {"delta", "refusal"} <= columns(path, "site_rounds")
    assert "audit_keys" not in Database(path, readonly=True).table_names()


def test_a_v2_store_is_readable_read_only_and_migrated_for_writing(tmp_path: Path) -> None:
    path = v2_store(tmp_path / "v2.sqlite")
    with RunStore(path, readonly=True) as ro:
        run = ro.get_run("old-run")
        assert run.task_sha256 is None and run.task_json is None and run.owner == "host:1"
        exported = export_run(ro)
        assert comparisons(ro.db) == []
    assert exported["task_sha256"] is None and exported["task"] is None
    assert exported["comparisons"] == []
    assert schema_version(path) == "2" and "task_json" not in columns(path, "runs")
    with RunStore(path) as store:
        run = store.get_run("old-run")
        assert run.example_site_policies and run.task_sha256 is None
        assert comparisons(store.db) == []
    assert schema_version(path) == "5"
    assert {"task_sha256", "task_json"} <= columns(path, "runs")
    assert {"comparisons", "comparison_results"} <= set(
        Database(path, readonly=True).table_names())


def v3_store(path: Path) -> Path:
    """A store as version 3 (issue 10, tasks) left it."""
    v2_store(path)
    conn = sqlite3.connect(path)
    for statement in _MIGRATIONS[2]:
        conn.execute(statement)
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    return path


def test_a_v3_store_is_readable_read_only_and_gains_data_fingerprints_for_writing(
        tmp_path: Path) -> None:
    path = v3_store(tmp_path / "v3.sqlite")
    with RunStore(path, readonly=True) as ro:
        assert ro.get_run("old-run").data_fingerprints is None
    assert schema_version(path) == "3" and "data_fingerprints_json" not in columns(path, "runs")
    with RunStore(path) as store:
        assert store.get_run("old-run").data_fingerprints is None
    assert schema_version(path) == "5" and "data_fingerprints_json" in columns(path, "runs")


def test_a_store_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    Database(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"newer version.*schema 99 > 5"):
            RunStore(path, readonly=readonly)
    assert schema_version(path) == "99"  # untouched


def test_a_file_that_is_not_a_run_store_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE patients (id INTEGER)")
    conn.commit()
    conn.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="not a run store"):
            Database(other, readonly=readonly)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all " * 200)
    with pytest.raises(StoreError):
        Database(junk)
    assert junk.read_bytes() == b"not a database at all " * 200


def test_store_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "runs.sqlite"
    with RunStore(path) as store:
        with store.db.transaction() as conn:
            conn.execute("INSERT INTO meta VALUES ('x', 'y')")
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for f in path.parent.iterdir():  # the store and its WAL files
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_nested_transactions_join_the_outermost_and_commit_once(tmp_path: Path) -> None:
    db = Database(tmp_path / "runs.sqlite")
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    with db.transaction() as outer:
        outer.execute("INSERT INTO meta VALUES ('a', '1')")
        with db.transaction() as inner:
            inner.execute("INSERT INTO meta VALUES ('b', '2')")
            with db.transaction():
                inner.execute("INSERT INTO meta VALUES ('c', '3')")
        assert db.conn.in_transaction
    control = [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert control == ["BEGIN IMMEDIATE", "COMMIT"]
    assert {r["key"] for r in db.query("SELECT key FROM meta")} >= {"a", "b", "c"}


def test_an_error_in_a_nested_transaction_rolls_back_everything(tmp_path: Path) -> None:
    db = Database(tmp_path / "runs.sqlite")
    with pytest.raises(RuntimeError, match="crash"), db.transaction() as conn:
        conn.execute("INSERT INTO meta VALUES ('a', '1')")
        with db.transaction() as inner:
            inner.execute("INSERT INTO meta VALUES ('b', '2')")
        raise RuntimeError("crash")
    assert not db.conn.in_transaction
    assert {r["key"] for r in db.query("SELECT key FROM meta")} == {"schema_version"}
    with pytest.raises(StoreError, match="write to run store"), db.transaction() as conn:
        conn.execute("INSERT INTO meta VALUES ('c', '1')")
        conn.execute("INSERT INTO meta VALUES ('c', '2')")  # duplicate key: sqlite3 error
    assert {r["key"] for r in db.query("SELECT key FROM meta")} == {"schema_version"}


def test_a_v4_store_gains_the_choice_and_the_majority_rate_for_writing(tmp_path: Path) -> None:
    path = v3_store(tmp_path / "v4.sqlite")
    conn = sqlite3.connect(path)
    for statement in _MIGRATIONS[3]:
        conn.execute(statement)
    conn.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with RunStore(path, readonly=True) as ro:
        assert ro.get_run("old-run").choice_json is None
        assert ro.rounds("old-run")[0].sites[0].majority_rate is None
    assert "majority_rate" not in columns(path, "site_rounds")
    with RunStore(path) as store:
        assert store.rounds("old-run")[0].sites[0].beats_majority is None
    assert schema_version(path) == "5" and "choice_json" in columns(path, "runs")
    assert "majority_rate" in columns(path, "site_rounds")
