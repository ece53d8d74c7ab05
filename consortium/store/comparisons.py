"""Comparisons in the run store: which runs were compared, and the per-site, per-class table.

A comparison (``consortium compare``) is one federated run and one local-only run per site,
all recorded as runs with their rounds, receipts and audit entries; this module records what
ties them together and the table of how each model did per class on each test set. A store
written before comparisons existed (schema 2, opened read-only) simply holds none.
"""

from __future__ import annotations

import json

from consortium.store.database import Database
from consortium.store.records import ComparisonCell, ComparisonRecord

_CELL_COLUMNS = ("site", "scope", "model", "class_index", "class_name", "correct", "total",
                 "site_train_count")


def record_comparison(db: Database, comparison: ComparisonRecord) -> None:
    """Write a comparison and its table in one transaction."""
    c = comparison
    with db.transaction() as conn:
        conn.execute("INSERT INTO comparisons(comparison_id, created_at, task_sha256, "
                     "federated_run_id, local_runs_json) VALUES (?,?,?,?,?)",
                     (c.comparison_id, c.created_at, c.task_sha256, c.federated_run_id,
                      json.dumps(c.local_runs, sort_keys=True)))
        conn.executemany(
            f"INSERT INTO comparison_results(comparison_id, {', '.join(_CELL_COLUMNS)}) "
            f"VALUES ({','.join('?' * (len(_CELL_COLUMNS) + 1))})",
            [(c.comparison_id, x.site, x.scope, x.model, x.class_index, x.class_name, x.correct,
              x.total, x.site_train_count) for x in c.cells])


def comparisons(db: Database, run_id: str | None = None) -> list[ComparisonRecord]:
    """Every comparison, newest first (with ``run_id``: those that include that run, as the
    federated run or as a site's local run)."""
    if "comparisons" not in db.table_names():
        return []
    rows = db.query("SELECT comparison_id, created_at, task_sha256, federated_run_id, "
                    "local_runs_json FROM comparisons ORDER BY created_at DESC")
    out = []
    for row in rows:
        local = json.loads(row["local_runs_json"])
        if run_id is not None and run_id != row["federated_run_id"] \
                and run_id not in local.values():
            continue
        cells = db.query(f"SELECT {', '.join(_CELL_COLUMNS)} FROM comparison_results WHERE "
                         "comparison_id=? ORDER BY site, scope, model, class_index",
                         (row["comparison_id"],))
        out.append(ComparisonRecord(
            comparison_id=row["comparison_id"], created_at=row["created_at"],
            task_sha256=row["task_sha256"], federated_run_id=row["federated_run_id"],
            local_runs=dict(local),
            cells=tuple(ComparisonCell(**{k: c[k] for k in _CELL_COLUMNS}) for c in cells)))
    return out
