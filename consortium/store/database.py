"""The run store's SQLite file: one connection, one schema, nested transactions.

The run tables (:mod:`consortium.store.run_store`) and the audit tables
(:mod:`consortium.audit.log`) live in one file and share one :class:`Database`, so that a round,
its receipts and its audit entries commit in one transaction (:meth:`Database.transaction`).
The schema and its version are defined here; a store written by a newer version is refused
before anything is trained, an older one is migrated when opened for writing. The columns of the
run tables are the fields of their records (:mod:`consortium.store.schema`): a new field needs its
column here and in a migration, which ``tests/consortium/store/test_schema.py`` checks.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from consortium.errors import StoreError
from site_node import database as sqlite_file

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL,
    stop_reason TEXT, engine TEXT NOT NULL, policy_sha256 TEXT NOT NULL,
    policy_json TEXT NOT NULL, delta REAL NOT NULL, epsilon_ceiling REAL NOT NULL,
    rounds_planned INTEGER NOT NULL, seed INTEGER NOT NULL, sites_json TEXT NOT NULL,
    secagg_json TEXT NOT NULL, mode TEXT NOT NULL DEFAULT 'deployment', owner TEXT,
    example_site_policies INTEGER NOT NULL DEFAULT 0, task_sha256 TEXT, task_json TEXT,
    data_fingerprints_json TEXT, choice_json TEXT
);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL REFERENCES runs(run_id), round INTEGER NOT NULL,
    status TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
    duration_s REAL NOT NULL, accuracy_mean REAL, accuracy_weighted REAL, loss_mean REAL,
    loss_weighted REAL, failure_reason TEXT, policy_sha256 TEXT,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS site_rounds (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, site TEXT NOT NULL, accuracy REAL,
    loss REAL, num_examples INTEGER, num_train_examples INTEGER, epsilon REAL,
    noise_multiplier REAL, sample_rate REAL, steps INTEGER, max_grad_norm REAL,
    accountant TEXT, trained INTEGER NOT NULL DEFAULT 1, delta REAL, refusal TEXT,
    majority_rate REAL,
    PRIMARY KEY (run_id, round, site),
    FOREIGN KEY (run_id, round) REFERENCES rounds(run_id, round)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, sha256 TEXT NOT NULL, model BLOB NOT NULL,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY, run_id TEXT, kind TEXT NOT NULL, created_at TEXT NOT NULL,
    payload_json TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, site TEXT NOT NULL,
    receipt_json TEXT NOT NULL, signature TEXT NOT NULL, key_fingerprint TEXT NOT NULL,
    epsilon REAL NOT NULL, log_seq INTEGER NOT NULL REFERENCES audit_log(seq),
    PRIMARY KEY (run_id, round, site)
);
CREATE TABLE IF NOT EXISTS comparisons (
    comparison_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, task_sha256 TEXT NOT NULL,
    federated_run_id TEXT NOT NULL REFERENCES runs(run_id), local_runs_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS comparison_results (
    comparison_id TEXT NOT NULL REFERENCES comparisons(comparison_id), site TEXT NOT NULL,
    scope TEXT NOT NULL, model TEXT NOT NULL, class_index INTEGER NOT NULL,
    class_name TEXT NOT NULL, correct INTEGER NOT NULL, total INTEGER NOT NULL,
    site_train_count INTEGER NOT NULL,
    PRIMARY KEY (comparison_id, site, scope, model, class_index)
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_update BEFORE UPDATE ON receipts
BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_delete BEFORE DELETE ON receipts
BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;
"""

#: Statements that bring a store of version ``v`` to ``v + 1``.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'deployment'",
        "ALTER TABLE runs ADD COLUMN owner TEXT",
        "ALTER TABLE runs ADD COLUMN example_site_policies INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE site_rounds ADD COLUMN delta REAL",
        "ALTER TABLE site_rounds ADD COLUMN refusal TEXT",
        "DROP TABLE IF EXISTS audit_keys"),
    # Tasks (issue 10): the task each run trained; comparisons of local and federated models
    # (their tables are created from the schema above).
    2: ("ALTER TABLE runs ADD COLUMN task_sha256 TEXT",
        "ALTER TABLE runs ADD COLUMN task_json TEXT"),
    # What each site trained on (issue 14): the fingerprint of each site's data in a local run.
    3: ("ALTER TABLE runs ADD COLUMN data_fingerprints_json TEXT",),
    # Training settings chosen from public information (issue 16), and each site's
    # majority-class rate beside its accuracy.
    4: ("ALTER TABLE runs ADD COLUMN choice_json TEXT",
        "ALTER TABLE site_rounds ADD COLUMN majority_rate REAL"),
}


class Database:
    """One connection to a run store file.

    Parameters
    ----------
    path : Path
        The SQLite file (made absolute at once: the Flower ServerApp runs with the SuperLink's
        working directory).
    readonly : bool
        Open an existing store for reading only (dashboard, export, verification).

    Raises
    ------
    StoreError
        If the file cannot be opened, is not a run store, or was written by a newer version.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        self.readonly = readonly
        if readonly and not self.path.is_file():
            raise StoreError(f"run store not found: {self.path}")
        try:
            self.conn = sqlite_file.connect(self.path, readonly=readonly)
            if not readonly:
                self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {self.path}: {exc}") from exc
        self._transactions = sqlite_file.Transactions(
            self.conn, lambda exc: StoreError(f"write to run store {self.path} failed: {exc}"))
        self._depth = 0
        self._after_commit: dict[str, Callable[[], None]] = {}
        self.version = self._check_version()
        if not readonly:
            self._create_or_migrate()

    def _check_version(self) -> int:
        try:
            names = {r[0] for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if "meta" not in names:
                if names - {"sqlite_sequence"}:
                    raise StoreError(f"{self.path} is not a run store (no meta table)")
                return 0
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a run store: {exc}") from exc
        found = int(row[0]) if row is not None and str(row[0]).isdigit() else -1
        if found > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer version of this product "
                             f"(schema {found} > {SCHEMA_VERSION}); upgrade before using it")
        if found < 1:
            raise StoreError(f"{self.path}: unknown run store schema version {row!r}")
        return found

    def _create_or_migrate(self) -> None:
        with self.transaction():
            for version in range(self.version or SCHEMA_VERSION, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version]:
                    self.conn.execute(statement)
                log.info("run store %s migrated to schema %d", self.path, version + 1)
            for statement in _statements(_TABLES):
                self.conn.execute(statement)
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES "
                              "('schema_version', ?)", (str(SCHEMA_VERSION),))
        self.version = SCHEMA_VERSION

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction; nested uses join the outermost (all commit or none). Once the
        outermost commits, the callbacks registered with :meth:`after_commit` run."""
        if self.readonly:
            raise StoreError(f"run store {self.path} is open read-only")
        outer = self._depth == 0
        self._depth += 1
        try:
            with self._transactions() as conn:
                yield conn
        except BaseException:
            if outer:
                self._after_commit.clear()
            raise
        finally:
            self._depth -= 1
        if outer:
            callbacks, self._after_commit = self._after_commit, {}
            for callback in callbacks.values():
                callback()

    def after_commit(self, name: str, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (never if it rolls back);
        a later registration under the same ``name`` replaces an earlier one."""
        if self._depth == 0:
            callback()
        else:
            self._after_commit[name] = callback

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Run a read query; raises :class:`StoreError`."""
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read run store {self.path}: {exc}") from exc

    def table_names(self) -> list[str]:
        """Names of the store's tables."""
        rows = self.query("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        return [str(r["name"]) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _statements(script: str) -> list[str]:
    """Split the schema script into statements (triggers end with ``END;``)."""
    out, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER")
                                   or text.upper().endswith("END;")):
            out.append(text)
            current = []
    return out
